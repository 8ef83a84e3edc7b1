"""Run every benchmark script in this folder, one after another, and print
their tables. Each ``bench_*.py`` runs probpl and, when ``pyro-ppl`` is
installed, Pyro on the same model and data, interleaved, and prints its own
table of medians and ratios.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/run_all.py            # full sizes
    OMP_NUM_THREADS=1 python benchmarks/run_all.py --quick    # tiny sizes (smoke test)
    OMP_NUM_THREADS=1 python benchmarks/run_all.py svi nuts   # only some scripts
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def scripts(selected, quick):
    found = sorted(HERE.glob("bench_*.py"))
    if selected:
        return [p for p in found if any(s in p.stem for s in selected)]
    if not quick and not torch.cuda.is_available():
        # The GPU workloads are sized for a GPU; on a CPU only their --quick form runs.
        found = [p for p in found if p.stem != "bench_gpu"]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="substrings of script names to run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    args = parser.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    print(f"# {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    failed = []
    for script in scripts(args.only, args.quick):
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"\n## {script.name}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(cmd, env=env)
        print(f"({time.perf_counter() - start:.1f} s)", flush=True)
        if result.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
