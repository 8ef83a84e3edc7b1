"""Shared pieces of the benchmark scripts: loading probpl and (when installed)
Pyro under one interface, interleaved timing, and the printed table."""

import importlib
import os
import resource
import statistics
import time
import types

import torch


def libraries():
    """``[(name, namespace)]`` for probpl and, if importable, Pyro; each namespace
    has ``sample, param, plate, module, dist, poutine, infer, optim, set_rng_seed``."""
    libs = []
    for name in ("probpl", "pyro"):
        try:
            root = importlib.import_module(name)
        except ImportError:
            continue
        ns = types.SimpleNamespace(
            name=name,
            root=root,
            sample=root.sample,
            param=root.param,
            plate=root.plate,
            module=root.module,
            markov=root.markov,
            set_rng_seed=root.set_rng_seed,
            clear_param_store=root.clear_param_store,
            dist=importlib.import_module(name + ".distributions"),
            poutine=importlib.import_module(name + ".poutine"),
            infer=importlib.import_module(name + ".infer"),
            autoguide=importlib.import_module(name + ".infer.autoguide"),
            optim=importlib.import_module(name + ".optim"),
        )
        libs.append(ns)
    return libs


def set_threads():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def time_steps(step, num_steps, warmup=5):
    """Median seconds per call of ``step()`` over ``num_steps`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(num_steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleave(workloads, repeats):
    """Run ``{label: fn}`` round-robin ``repeats`` times (A B A B ...), each ``fn()``
    returning a number; return ``{label: median}``."""
    results = {label: [] for label in workloads}
    for _ in range(repeats):
        for label, fn in workloads.items():
            results[label].append(fn())
    return {label: statistics.median(v) for label, v in results.items()}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(title, rows, unit, lower_is_better=True):
    """``rows``: ``[(workload, {lib: value})]``; prints values and probpl/Pyro ratio."""
    print(f"### {title}")
    print(f"| workload | probpl ({unit}) | Pyro ({unit}) | probpl / Pyro |")
    print("|---|---|---|---|")
    for workload, values in rows:
        p = values.get("probpl")
        q = values.get("pyro")
        ratio = f"{p / q:.3f}" if p is not None and q else "—"
        fmt = (lambda v: "—" if v is None else f"{v:.4g}")
        print(f"| {workload} | {fmt(p)} | {fmt(q)} | {ratio} |")
    note = "lower is better" if lower_is_better else "higher is better"
    print(f"({note}; peak RSS of this process {peak_rss_mib():.0f} MiB)")
