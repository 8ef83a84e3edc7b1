"""SVI step benchmark: a tiny model (3 scalar latents, 10 observations) and a
linear regression (N=10,000, D=50), each with a hand-written mean-field guide
and with AutoNormal. Three comparisons per workload and guide, each run
interleaved (A B A B ...) in chunks so both sides see the same machine load:
probpl's ``Trace_ELBO`` against Pyro's, probpl's ``JitTrace_ELBO`` against
Pyro's eager ``Trace_ELBO`` (the targets in PERFORMANCE.md), and the two
``JitTrace_ELBO`` s. Same model code and data for both libraries; times are CPU
seconds of this process per step (robust to other load on a shared machine),
medians over chunks. Peak resident memory is measured per library in a fresh
process running the same workloads.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_svi.py`` (``--quick``: tiny
sizes, a few seconds, same table).
"""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
import types
import warnings

import torch
from common import libraries, peak_rss_mib, print_table, set_threads

SIZES = {"full": (10_000, 50), "quick": (500, 5)}


def tiny(lib, quick=False):
    dist = lib.dist
    data = torch.linspace(-1, 2, 10)

    def model(x):
        a = lib.sample("a", dist.Normal(0.0, 1.0))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        s = lib.sample("s", dist.LogNormal(0.0, 1.0))
        with lib.plate("data", 10):
            lib.sample("x", dist.Normal(a + b, s), obs=x)

    def guide(x):
        for n in "abs":
            loc = lib.param(n + "_loc", torch.tensor(0.0))
            scale = lib.param(n + "_scale", torch.tensor(1.0),
                              constraint=dist.constraints.positive)
            lib.sample(n, (dist.LogNormal if n == "s" else dist.Normal)(loc, scale))

    return model, guide, (data,)


def linreg(lib, quick=False):
    dist = lib.dist
    g = torch.Generator().manual_seed(0)
    n, d = SIZES["quick" if quick else "full"]
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + 0.5 * torch.randn(n, generator=g)

    def model(x, y):
        w = lib.sample("w", dist.Normal(torch.zeros(d), 1.0).to_event(1))
        b = lib.sample("b", dist.Normal(0.0, 1.0))
        sigma = lib.sample("sigma", dist.LogNormal(0.0, 1.0))
        with lib.plate("data", n):
            lib.sample("y", dist.Normal(x @ w + b, sigma), obs=y)

    def guide(x, y):
        pos = dist.constraints.positive
        w_loc = lib.param("w_loc", torch.zeros(d))
        w_scale = lib.param("w_scale", torch.ones(d), constraint=pos)
        lib.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
        for name, family in (("b", dist.Normal), ("sigma", dist.LogNormal)):
            loc = lib.param(name + "_loc", torch.tensor(0.0))
            scale = lib.param(name + "_scale", torch.tensor(1.0), constraint=pos)
            lib.sample(name, family(loc, scale))

    return model, guide, (x, y)


WORKLOADS = {"tiny": tiny, "linreg": linreg}


def make_svi(lib, workload, guide_kind, elbo_kind, quick=False):
    """``(step, warm-up seconds)``; the warm-up is three steps (the first step
    validates, a Jit ELBO records on the second)."""
    lib.clear_param_store()
    lib.set_rng_seed(0)
    model, guide, args = workload(lib, quick)
    if guide_kind == "AutoNormal":
        guide = lib.autoguide.AutoNormal(model)
    if elbo_kind == "JitTrace_ELBO":
        elbo = lib.infer.JitTrace_ELBO(ignore_jit_warnings=True)
    else:
        elbo = lib.infer.Trace_ELBO()
    svi = lib.infer.SVI(model, guide, lib.optim.Adam({"lr": 0.01}), elbo)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices (Pyro's JIT)
        for _ in range(3):
            svi.step(*args)
    return (lambda: svi.step(*args)), time.perf_counter() - start


def measure_pair(a, b, chunk, repeats, quick):
    """Two configs ``(lib, workload, guide, elbo)`` stepped in alternating chunks;
    returns ``([median ms/step], [warm-up s])``."""
    made = [make_svi(*cfg, quick=quick) for cfg in (a, b)]
    times = [[], []]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            for (step, _), out in zip(made, times):
                t = time.process_time()
                for _ in range(chunk):
                    step()
                out.append((time.process_time() - t) / chunk * 1e3)
    return [statistics.median(t) for t in times], [w for _, w in made]


def _load(name):
    """One library's namespace (as ``common.libraries`` builds it) without
    importing the other, so the peak RSS is that library's own."""
    root = importlib.import_module(name)
    mod = {k: importlib.import_module(f"{name}.{k}")
           for k in ("distributions", "infer", "infer.autoguide", "optim")}
    return types.SimpleNamespace(
        name=name, sample=root.sample, param=root.param, plate=root.plate,
        set_rng_seed=root.set_rng_seed, clear_param_store=root.clear_param_store,
        dist=mod["distributions"], infer=mod["infer"], autoguide=mod["infer.autoguide"],
        optim=mod["optim"])


def rss_child(lib_name, quick):
    """Run every workload of one library in this (fresh) process; print peak RSS."""
    lib = _load(lib_name)
    steps = 5 if quick else 100
    for workload in WORKLOADS.values():
        for guide in ("mean-field", "AutoNormal"):
            for elbo in ("Trace_ELBO", "JitTrace_ELBO"):
                step, _ = make_svi(lib, workload, guide, elbo, quick)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range(steps):
                        step()
    print(f"RSS {_own_peak_rss_mib():.1f}")


def _own_peak_rss_mib():
    """This process's peak RSS. ``getrusage`` would report the parent's if that
    was larger (Linux carries it across fork and exec); ``VmHWM`` does not."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss(lib_names, quick):
    """``{library: peak RSS in MiB}``, each library in its own fresh process
    (run side by side, before any timing)."""
    procs = {}
    for name in lib_names:
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", name]
        cmd += ["--quick"] if quick else []
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"peak-RSS run of {name} failed (exit code {proc.returncode})")
        out[name] = float(stdout.split("RSS")[-1])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    set_threads()
    if opts.rss_child:
        rss_child(opts.rss_child, opts.quick)
        return
    libs = {lib.name: lib for lib in libraries()}
    rss = peak_rss(libs, opts.quick)
    probpl, pyro = libs["probpl"], libs.get("pyro")
    repeats = 2 if opts.quick else opts.repeats
    chunks = {"tiny": 5, "linreg": 5} if opts.quick else {"tiny": 200, "linreg": 40}
    rows, notes = [], []
    label = {"tiny": "tiny", "linreg": "linreg N=%d D=%d" % SIZES["quick" if opts.quick
                                                                   else "full"]}
    for wname, workload in WORKLOADS.items():
        for guide in ("mean-field", "AutoNormal"):
            pairs = [("Trace_ELBO", "Trace_ELBO"), ("JitTrace_ELBO", "Trace_ELBO"),
                     ("JitTrace_ELBO", "JitTrace_ELBO")]
            for ours, theirs in pairs:
                a = (probpl, workload, guide, ours)
                if pyro is None:
                    b = a
                else:
                    b = (pyro, workload, guide, theirs)
                (p, q), (wp, wq) = measure_pair(a, b, chunks[wname], repeats, opts.quick)
                name = f"{label[wname]}, {guide}, probpl {ours} / Pyro {theirs}"
                rows.append((name, {"probpl": p} if pyro is None else {"probpl": p, "pyro": q}))
                if ours == "JitTrace_ELBO" and theirs == "JitTrace_ELBO":
                    notes.append(f"{label[wname]}, {guide}: 3 warm-up steps incl. recording "
                                 f"probpl {wp:.2f} s" + ("" if pyro is None else
                                                         f", Pyro {wq:.2f} s"))
    load = os.getloadavg()[0]
    print_table(f"SVI time per step (CPU ms; load average {load:.1f}, "
                f"{torch.get_num_threads()} thread(s))", rows, "ms")
    for note in notes:
        print(note)
    print("peak RSS, same workloads in a fresh process: "
          + ", ".join(f"{name} {v:.0f} MiB" for name, v in rss.items()))


if __name__ == "__main__":
    main()
