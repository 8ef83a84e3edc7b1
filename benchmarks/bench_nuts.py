"""NUTS benchmark: probpl beside Pyro 1.9.2 (when installed) on the same models and data.

Prints, per workload, wall time of the whole run (warm-up + sampling), the minimum bulk
effective sample size over all scalar latent components (one shared ESS function), ESS per
second and microseconds per leapfrog step.  Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/bench_nuts.py [--workloads eight,logreg] [--pyro]
"""

import argparse
import time

import torch

from probpl.ops.stats import effective_sample_size


def eight_schools(pp, dist):
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def model(sigma, y):
        mu = pp.sample("mu", dist.Normal(0.0, 5.0))
        tau = pp.sample("tau", dist.HalfCauchy(5.0))
        with pp.plate("J", 8):
            theta_tilde = pp.sample("theta_tilde", dist.Normal(0.0, 1.0))
            pp.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)

    return model, (sigma, y), 1000, 1000


def logistic_regression(pp, dist):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 25, generator=g)
    w_true = torch.randn(25, generator=g)
    y = torch.bernoulli(torch.sigmoid(x @ w_true), generator=g)

    def model(x, y):
        w = pp.sample("w", dist.Normal(torch.zeros(25), 1.0).to_event(1))
        with pp.plate("N", x.shape[0]):
            pp.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    return model, (x, y), 500, 500


WORKLOADS = {"eight": eight_schools, "logreg": logistic_regression}


def min_ess(samples):
    # samples: name -> (chains, draws, ...); total ESS over chains, min over components
    out = []
    for v in samples.values():
        ess = effective_sample_size(v.double().reshape(v.shape[:2] + (-1,)))
        out.append(ess.min())
    return float(torch.stack(out).min())


def run_probpl(workload, num_chains, jit):
    import probpl
    import probpl.distributions as dist
    from probpl.infer.mcmc import MCMC, NUTS

    model, args, warmup, samples = WORKLOADS[workload](probpl, dist)
    probpl.set_rng_seed(0)
    kernel = NUTS(model, jit_compile=jit)
    steps = []
    mcmc = MCMC(kernel, samples, warmup, num_chains=num_chains, disable_progbar=True,
                chain_method="vectorized" if num_chains > 1 else "sequential",
                hook_fn=lambda k, p, s, i: steps.append(int(k._last_info.num_steps.max())))
    t = time.perf_counter()
    mcmc.run(*args)
    elapsed = time.perf_counter() - t
    return elapsed, min_ess(mcmc.get_samples(group_by_chain=True)), sum(steps)


def run_pyro(workload):
    import pyro
    import pyro.distributions as dist
    from pyro.infer import MCMC, NUTS

    model, args, warmup, samples = WORKLOADS[workload](pyro, dist)
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), samples, warmup, disable_progbar=True)
    t = time.perf_counter()
    mcmc.run(*args)
    elapsed = time.perf_counter() - t
    return elapsed, min_ess(mcmc.get_samples(group_by_chain=True)), None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", default="eight,logreg")
    parser.add_argument("--pyro", action="store_true", help="also run Pyro 1.9.2")
    parser.add_argument("--eager", action="store_true", help="also run without jit_compile")
    a = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for w in a.workloads.split(","):
        configs = [("probpl jit, 1 chain", lambda: run_probpl(w, 1, True)),
                   ("probpl jit, 4 vectorized", lambda: run_probpl(w, 4, True))]
        if a.eager:
            configs.append(("probpl eager, 1 chain", lambda: run_probpl(w, 1, False)))
        if a.pyro:
            configs.append(("pyro 1.9.2, 1 chain", lambda: run_pyro(w)))
        for name, fn in configs:
            elapsed, ess, leapfrogs = fn()
            per = f"{elapsed / leapfrogs * 1e6:9.0f}" if leapfrogs else "        -"
            rows.append((w, name, elapsed, ess, ess / elapsed, per))
            print(f"{w:7s} {name:26s} {elapsed:7.1f} s  min ESS {ess:7.0f}  "
                  f"{ess / elapsed:7.1f} ESS/s  us/leapfrog(batch) {per}", flush=True)


if __name__ == "__main__":
    main()
