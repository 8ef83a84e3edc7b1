"""Execute the tutorial notebooks and report how long each one takes.

Usage::

    python tutorial/run_all.py                 # full run of every notebook, outputs discarded
    python tutorial/run_all.py --smoke         # quick run (PROBPL_TUTORIAL_SMOKE=1)
    python tutorial/run_all.py --write         # full run, outputs stored in the notebooks
    python tutorial/run_all.py 01 03 --write   # only notebooks whose names start with 01 or 03

Each notebook runs in a fresh ``python3`` kernel whose working directory is
``tutorial/``, with ``OMP_NUM_THREADS=1`` so that timings on a shared machine
mean something. Notebooks run one after another; the exit status is non-zero
when any of them raises.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def notebooks(prefixes=()):
    """The tutorial notebooks, sorted by name, optionally filtered by name prefix."""
    paths = sorted(HERE.glob("*.ipynb"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(s) for s in prefixes)]
    return paths


def kernel_env(smoke):
    """The environment the notebook kernel starts with."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["PYTHONHASHSEED"] = "0"
    # Progress bars write carriage-return noise into stored outputs.
    env["TQDM_DISABLE"] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if smoke:
        env["PROBPL_TUTORIAL_SMOKE"] = "1"
    else:
        env.pop("PROBPL_TUTORIAL_SMOKE", None)
    return env


def execute(path, smoke=False, timeout=600):
    """Run the notebook at ``path`` and return the executed notebook node.

    The file itself is not modified.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # keeps stored notebooks free of timestamps
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute(env=kernel_env(smoke), cwd=str(HERE))
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks starting with these")
    parser.add_argument("--smoke", action="store_true", help="quick run with few steps")
    parser.add_argument("--write", action="store_true", help="store outputs in the notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    if args.write and args.smoke:
        parser.error("--write stores full-run outputs; do not combine it with --smoke")

    failed = []
    for path in notebooks(args.prefixes):
        start = time.perf_counter()
        try:
            nb = execute(path, smoke=args.smoke, timeout=args.timeout)
        except Exception as e:  # report and carry on with the next notebook
            failed.append(path.name)
            print(f"{path.name:45s} FAILED after {time.perf_counter() - start:6.1f}s\n{e}")
            continue
        elapsed = time.perf_counter() - start
        if args.write:
            nbformat.write(nb, path)
        size = path.stat().st_size / 1024
        print(f"{path.name:45s} {elapsed:6.1f}s  {size:6.0f} KB", flush=True)
    if failed:
        print("failed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
