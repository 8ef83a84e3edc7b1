"""Flagship demo: Bayesian linear regression fitted end to end.

Synthetic data from a known line with noise; the model is written once and
fitted by stochastic variational inference. The printed summary compares the
posterior with the truth.

Run with ``make demo`` (or ``python examples/demo.py``).
"""

import time

import torch

import probpl
import probpl.distributions as dist
from probpl.infer import SVI, Trace_ELBO
from probpl.optim import Adam

TRUE_SLOPE, TRUE_INTERCEPT, TRUE_NOISE = 2.5, -1.0, 0.5


def make_data(n=200):
    x = torch.linspace(-2, 2, n)
    y = TRUE_INTERCEPT + TRUE_SLOPE * x + TRUE_NOISE * torch.randn(n)
    return x, y


def model(x, y=None):
    intercept = probpl.sample("intercept", dist.Normal(0.0, 10.0))
    slope = probpl.sample("slope", dist.Normal(0.0, 10.0))
    noise = probpl.sample("noise", dist.HalfNormal(5.0))
    with probpl.plate("data", len(x)):
        return probpl.sample("y", dist.Normal(intercept + slope * x, noise), obs=y)


def guide(x, y=None):
    for name in ("intercept", "slope"):
        loc = probpl.param(f"{name}_loc", torch.tensor(0.0))
        scale = probpl.param(f"{name}_scale", torch.tensor(1.0),
                             constraint=dist.constraints.positive)
        probpl.sample(name, dist.Normal(loc, scale))
    loc = probpl.param("noise_loc", torch.tensor(0.0))
    scale = probpl.param("noise_scale", torch.tensor(0.5), constraint=dist.constraints.positive)
    probpl.sample("noise", dist.LogNormal(loc, scale))


def main():
    probpl.set_rng_seed(0)
    x, y = make_data()
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    start = time.perf_counter()
    losses = svi.run(1500, x, y, progress_bar=False)
    elapsed = time.perf_counter() - start
    store = probpl.get_param_store()
    print(f"SVI: 1500 steps in {elapsed:.2f} s ({1e3 * elapsed / 1500:.2f} ms/step), "
          f"final loss {losses[-1]:.1f}")
    print(f"{'parameter':<10} {'truth':>8} {'posterior mean':>15} {'posterior sd':>13}")
    for name, truth in (("intercept", TRUE_INTERCEPT), ("slope", TRUE_SLOPE)):
        print(f"{name:<10} {truth:>8.3f} {store[name + '_loc'].item():>15.3f} "
              f"{store[name + '_scale'].item():>13.3f}")
    noise_median = store["noise_loc"].exp().item()
    print(f"{'noise':<10} {TRUE_NOISE:>8.3f} {noise_median:>15.3f} {'(median)':>13}")


if __name__ == "__main__":
    main()
