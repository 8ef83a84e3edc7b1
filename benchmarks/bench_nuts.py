"""NUTS benchmark: probpl beside Pyro 1.9.2 (when installed) on the same models and data.

Each run happens in a fresh process, so one-time costs such as compilation and lazy
imports count (``--quick`` runs in-process).  Runs of probpl and Pyro alternate, and the
figure of merit is the minimum effective sample size over all scalar latent components
(one shared function, :func:`probpl.ops.stats.effective_sample_size`; total over chains)
divided by the wall time of the whole ``MCMC.run`` (warm-up included).  The first table
reports medians over repeats and the probpl / Pyro ratio, the second the scaling of
vectorized chains on logistic regression.  Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/bench_nuts.py [--repeats 3] [--quick] [--skip-main]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

FULL = {"eight": (1000, 1000), "logreg": (500, 500)}
QUICK = {"eight": (40, 40), "logreg": (30, 30)}
QUICK_DATA = 500  # logistic regression rows in quick mode


def eight_schools(pp, dist):
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def model(sigma, y):
        mu = pp.sample("mu", dist.Normal(0.0, 5.0))
        tau = pp.sample("tau", dist.HalfCauchy(5.0))
        with pp.plate("J", 8):
            theta_tilde = pp.sample("theta_tilde", dist.Normal(0.0, 1.0))
            pp.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)

    return model, (sigma, y)


def logistic_regression(pp, dist, n=5000, d=25):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    w_true = torch.randn(d, generator=g)
    y = torch.bernoulli(torch.sigmoid(x @ w_true), generator=g)

    def model(x, y):
        w = pp.sample("w", dist.Normal(torch.zeros(d), 1.0).to_event(1))
        with pp.plate("N", x.shape[0]):
            pp.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    return model, (x, y)


WORKLOADS = {"eight": eight_schools, "logreg": logistic_regression}


def min_ess(samples):
    # samples: name -> (chains, draws, ...); total ESS over chains, min over components
    from probpl.ops.stats import effective_sample_size

    out = []
    for v in samples.values():
        ess = effective_sample_size(v.double().reshape(v.shape[:2] + (-1,)))
        out.append(ess.min())
    # a chain that never moved has no effective samples (its ESS estimate is NaN)
    return float(torch.stack(out).nan_to_num(0.0).min())


def run_one(lib, workload, num_chains, seed, quick):
    """One timed ``MCMC.run`` in this process; returns a dict of figures."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warmup, samples = (QUICK if quick else FULL)[workload]
    counter = [0]
    if lib == "probpl":
        import probpl as pp
        import probpl.distributions as dist
        from probpl.infer.mcmc import MCMC, NUTS

        def hook(kernel, params, stage, i):
            runner = getattr(kernel, "_runner", None)
            if runner is not None:
                # vectorized chains that each build their own trees: batched steps so far
                counter[0] = runner.num_passes
            else:
                counter[0] += int(kernel._last_info.num_steps.max())
    else:
        import pyro as pp
        import pyro.distributions as dist
        from pyro.infer import MCMC, NUTS
        from pyro.ops import integrator

        grad = integrator.potential_grad

        def counting_grad(*args, **kwargs):
            counter[0] += 1
            return grad(*args, **kwargs)

        integrator.potential_grad = counting_grad
        hook = None
    model, args = WORKLOADS[workload](pp, dist)
    if quick and workload == "logreg":
        model, args = logistic_regression(pp, dist, n=QUICK_DATA)
    pp.set_rng_seed(seed)
    kwargs = {"chain_method": "vectorized"} if num_chains > 1 else {}
    mcmc = MCMC(NUTS(model), samples, warmup, num_chains=num_chains, disable_progbar=True,
                hook_fn=hook, **kwargs)
    start = time.perf_counter()
    mcmc.run(*args)
    elapsed = time.perf_counter() - start
    ess = min_ess(mcmc.get_samples(group_by_chain=True))
    return {"time": elapsed, "ess": ess, "ess_per_s": ess / elapsed, "leapfrogs": counter[0]}


def spawn(lib, workload, num_chains, seed, quick):
    if quick:  # a smoke test: skip the start-up of a fresh process per run
        return run_one(lib, workload, num_chains, seed, quick)
    cmd = [sys.executable, __file__, "--one", lib, workload, str(num_chains), str(seed)]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def per_leapfrog(runs):
    return statistics.median(x["time"] / max(x["leapfrogs"], 1) * 1e6 for x in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--no-pyro", action="store_true", help="skip Pyro")
    parser.add_argument("--skip-main", action="store_true",
                        help="only the vectorized scaling table")
    parser.add_argument("--scaling", default="1,4,16,64",
                        help="chain counts of the vectorized logistic regression table")
    parser.add_argument("--one", nargs=4, metavar=("LIB", "WORKLOAD", "CHAINS", "SEED"),
                        help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.one:
        lib, workload, chains, seed = a.one
        print(json.dumps(run_one(lib, workload, int(chains), int(seed), a.quick)))
        return
    try:
        import pyro  # noqa: F401

        have_pyro = not a.no_pyro
    except ImportError:
        have_pyro = False
    load = os.getloadavg()[0]
    print(f"# NUTS, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {load:.2f}, {a.repeats} repeat(s), "
          f"{'quick sizes' if a.quick else 'full sizes'}")
    configs = [("eight schools, 1 chain", "eight", 1),
               ("eight schools, 4 vectorized", "eight", 4),
               ("logistic regression, 1 chain", "logreg", 1)]
    if a.skip_main:
        configs = []
    pyro_configs = {"eight": [], "logreg": []}
    runs = {label: [] for label, _, _ in configs}
    for rep in range(a.repeats):
        seed = rep
        for label, workload, chains in configs:
            runs[label].append(spawn("probpl", workload, chains, seed, a.quick))
            if have_pyro and chains == 1:
                pyro_configs[workload].append(spawn("pyro", workload, 1, seed, a.quick))
    if configs:
        print_main_table(configs, runs, pyro_configs)
    print()
    scaling_table(a)


def print_main_table(configs, runs, pyro_configs):
    print("| workload | probpl s | probpl min ESS | probpl ESS/s | probpl us/leapfrog "
          "| Pyro s | Pyro min ESS | Pyro ESS/s | Pyro us/leapfrog "
          "| ESS/s ratio (vs Pyro 1 chain) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, workload, chains in configs:
        r = runs[label]
        p = pyro_configs[workload]
        cells = [f"{median_of(r, 'time'):.2f}", f"{median_of(r, 'ess'):.0f}",
                 f"{median_of(r, 'ess_per_s'):.1f}",
                 f"{per_leapfrog(r):.0f}"]
        if p:
            cells += [f"{median_of(p, 'time'):.2f}", f"{median_of(p, 'ess'):.0f}",
                      f"{median_of(p, 'ess_per_s'):.1f}",
                      f"{per_leapfrog(p):.0f}",
                      f"{median_of(r, 'ess_per_s') / median_of(p, 'ess_per_s'):.2f}x"]
        else:
            cells += ["—"] * 5
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print("(us/leapfrog: wall time of the whole run per batched leapfrog step; chains in one "
          "batch share a step)")


def scaling_table(a):
    print("| vectorized chains, logistic regression | s | total min ESS | total ESS/s "
          "| ESS/s per chain |")
    print("|---|---|---|---|---|")
    scaling = [int(c) for c in a.scaling.split(",")]
    if a.quick:
        scaling = [c for c in scaling if c <= 4]
    for chains in scaling:
        r = [spawn("probpl", "logreg", chains, rep, a.quick) for rep in range(a.repeats)]
        e = median_of(r, "ess_per_s")
        print(f"| {chains} | {median_of(r, 'time'):.2f} | {median_of(r, 'ess'):.0f} | "
              f"{e:.1f} | {e / chains:.1f} |", flush=True)
    print(f"(probpl; load average at the end {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
