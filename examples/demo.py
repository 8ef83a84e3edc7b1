"""Flagship demo: Bayesian linear regression fitted end to end, two ways.

Synthetic data from a known line with noise; the model is written once, then
fitted by stochastic variational inference (an ``AutoNormal`` guide) and by
NUTS (four vectorized chains). The printed summary compares both posteriors
with the truth and shows the sampler's diagnostics.

Run with ``make demo`` (or ``python examples/demo.py``).
"""

import time

import torch

import probpl
import probpl.distributions as dist
from probpl.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from probpl.infer.autoguide import AutoNormal
from probpl.optim import Adam

TRUTH = {"intercept": -1.0, "slope": 2.5, "noise": 0.5}


def make_data(n=200):
    x = torch.linspace(-2, 2, n)
    y = TRUTH["intercept"] + TRUTH["slope"] * x + TRUTH["noise"] * torch.randn(n)
    return x, y


def model(x, y=None):
    intercept = probpl.sample("intercept", dist.Normal(0.0, 10.0))
    slope = probpl.sample("slope", dist.Normal(0.0, 10.0))
    noise = probpl.sample("noise", dist.HalfNormal(5.0))
    with probpl.plate("data", len(x)):
        return probpl.sample("y", dist.Normal(intercept + slope * x, noise), obs=y)


def fit_svi(x, y, num_steps=1500):
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.03}), Trace_ELBO())
    start = time.perf_counter()
    losses = svi.run(num_steps, x, y, progress_bar=False)
    elapsed = time.perf_counter() - start
    print(f"SVI (AutoNormal): {num_steps} steps in {elapsed:.2f} s "
          f"({1e3 * elapsed / num_steps:.2f} ms/step), final loss {losses[-1]:.1f}")
    predictive = Predictive(model, guide=guide, num_samples=2000, return_sites=list(TRUTH))
    return predictive(x)


def fit_nuts(x, y):
    mcmc = MCMC(NUTS(model), num_samples=500, warmup_steps=500, num_chains=4,
                chain_method="vectorized", disable_progbar=True)
    start = time.perf_counter()
    mcmc.run(x, y)
    print(f"NUTS: 4 vectorized chains x (500 warm-up + 500 samples) in "
          f"{time.perf_counter() - start:.2f} s")
    mcmc.summary()
    return mcmc.get_samples()


def main():
    probpl.set_rng_seed(0)
    x, y = make_data()
    svi_samples = fit_svi(x, y)
    nuts_samples = fit_nuts(x, y)
    print(f"{'latent':<10} {'truth':>7} {'SVI mean':>9} {'SVI sd':>7} {'NUTS mean':>10} "
          f"{'NUTS sd':>8}")
    for name, truth in TRUTH.items():
        s, n = svi_samples[name], nuts_samples[name]
        print(f"{name:<10} {truth:>7.3f} {s.mean():>9.3f} {s.std():>7.3f} {n.mean():>10.3f} "
              f"{n.std():>8.3f}")


if __name__ == "__main__":
    main()
