"""SVI step benchmark: a tiny model (3 scalar latents, 10 observations) and a
linear regression (N=10,000, D=50), each with a hand-written mean-field guide
and with AutoNormal, under Trace_ELBO; probpl's compiled JitTrace_ELBO beside
Pyro's eager Trace_ELBO. Same model code and data for both libraries; runs are
interleaved in chunks and timed in CPU seconds of this process (robust to
other load on a shared machine); medians of the chunks are printed.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_svi.py``.
"""

import argparse
import statistics
import sys
import time

import torch
from common import libraries, print_table, set_threads


def tiny(lib):
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


def linreg(lib):
    dist = lib.dist
    g = torch.Generator().manual_seed(0)
    n, d = 10_000, 50
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


def make_svi(lib, workload, guide_kind, elbo_kind):
    lib.clear_param_store()
    lib.set_rng_seed(0)
    model, guide, args = workload(lib)
    if guide_kind == "AutoNormal":
        guide = lib.autoguide.AutoNormal(model)
    if elbo_kind == "JitTrace_ELBO":
        from probpl.infer.jit_elbo import JitTrace_ELBO

        elbo = JitTrace_ELBO()
    else:
        elbo = lib.infer.Trace_ELBO()
    svi = lib.infer.SVI(model, guide, lib.optim.Adam({"lr": 0.01}), elbo)
    # Warm up (the first step validates; a compiled ELBO compiles on the second).
    start = time.perf_counter()
    for _ in range(3):
        svi.step(*args)
    return lambda: svi.step(*args), time.perf_counter() - start


def measure(configs, chunk, repeats):
    """``configs``: {label: (lib, workload, guide, elbo)} -> {label: median ms/step}.
    Each library keeps its own global param store, so their SVIs coexist; the
    store is cleared per config because configs of one library share it."""
    results = {}
    for label, cfg in configs.items():
        step, warm = make_svi(*cfg)
        results[label] = (step, [], warm)
    # Interleave only configs of different libraries: the same-library ones share
    # a param store, so run those one after another.
    for _ in range(repeats):
        for label, (step, times, _) in results.items():
            t = time.process_time()
            for _ in range(chunk):
                step()
            times.append((time.process_time() - t) / chunk * 1e3)
    return {k: (statistics.median(v[1]), v[2]) for k, v in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-jit", action="store_true")
    opts = parser.parse_args()
    set_threads()
    libs = {lib.name: lib for lib in libraries()}
    rows = []
    cases = [("tiny", tiny, 200), ("linreg N=10k D=50", linreg, 40)]
    for wname, workload, chunk in cases:
        for guide_kind in ("mean-field", "AutoNormal"):
            elbos = ["Trace_ELBO"] + ([] if opts.no_jit else ["JitTrace_ELBO"])
            for elbo in elbos:
                values = {}
                for name, lib in libs.items():
                    if name == "pyro" and elbo != "Trace_ELBO":
                        continue  # Pyro's side is always its eager Trace_ELBO
                    try:
                        out = measure({name: (lib, workload, guide_kind, elbo)}, chunk,
                                      opts.repeats)
                    except Exception as e:  # a missing guide class, say
                        print(f"skip {name} {wname} {guide_kind} {elbo}: {e}", file=sys.stderr)
                        continue
                    values[name] = out[name][0]
                    if elbo == "JitTrace_ELBO":
                        print(f"  ({wname}, {guide_kind}: warm-up incl. compile "
                              f"{out[name][1]:.1f} s)", file=sys.stderr)
                if elbo == "JitTrace_ELBO" and "pyro" in libs:
                    pyro_row = dict(rows[-1][1]) if rows else {}
                    values["pyro"] = pyro_row.get("pyro")
                rows.append((f"{wname}, {guide_kind}, {elbo}", values))
    print_table("SVI time per step (CPU ms, vs Pyro's eager Trace_ELBO)", rows, "ms")


if __name__ == "__main__":
    main()
