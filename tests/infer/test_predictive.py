"""Predictive and log_likelihood against closed-form posterior predictive moments."""

import math

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.infer.importance import EmpiricalMarginal, Importance
from probpl.infer.predictive import Predictive, log_likelihood


def model(y=None):
    m = probpl.sample("m", dist.Normal(0.0, 1.0))
    with probpl.plate("data", 3):
        return probpl.sample("y", dist.Normal(m, 1.0), obs=y)


# Observations and the exact posterior N(mu, s^2) of m.
Y = torch.tensor([1.0, 2.0, 3.0])
MU, S2 = Y.sum().item() / 4, 1 / 4


def exact_posterior_samples(n):
    return {"m": MU + math.sqrt(S2) * torch.randn(n)}


@pytest.mark.parametrize("parallel,batch_size", [(False, None), (True, None), (True, 700)])
def test_posterior_predictive_moments(parallel, batch_size):
    # y_new ~ N(mu, 1 + s^2) per element; with 4000 draws the sample mean's sd is
    # 0.018, so 0.08 is above 4 sd; the variance 1.25 has sd ~0.028, bound 0.12.
    n = 4000 if parallel else 1000
    out = Predictive(model, exact_posterior_samples(n), parallel=parallel,
                     batch_size=batch_size)()
    assert set(out) == {"y"} and out["y"].shape == (n, 3)
    tol = 0.08 if parallel else 0.16
    assert (out["y"].mean(0) - MU).abs().max() < tol
    assert (out["y"].var(0) - (1 + S2)).abs().max() < 1.5 * tol


def test_guide_predictive_and_return_sites():
    def guide(y=None):
        probpl.sample("m", dist.Normal(MU, math.sqrt(S2)))

    out = Predictive(model, guide=guide, num_samples=2000, parallel=True,
                     return_sites=("m", "y", "_RETURN"))()
    assert out["m"].shape == (2000,) and out["y"].shape == (2000, 3)
    assert abs(out["m"].mean().item() - MU) < 0.06  # sd of the mean: 0.011
    seq = Predictive(model, guide=guide, num_samples=50, return_sites=("m",))()
    assert seq["m"].shape == (50,)


def test_predictive_errors():
    with pytest.raises(ValueError, match="num_samples=5"):
        Predictive(model, {"m": torch.zeros(3)}, num_samples=5)
    with pytest.raises(ValueError, match="not sample sites"):
        Predictive(model, {"m": torch.zeros(3)}, return_sites=("nope",))()


@pytest.mark.parametrize("parallel", [False, True])
def test_log_likelihood_exact(parallel):
    samples = {"m": torch.tensor([0.0, 1.0, -0.5, 2.0])}
    ll = log_likelihood(model, samples, Y, parallel=parallel)
    expected = dist.Normal(samples["m"][:, None], 1.0).log_prob(Y)
    assert ll["y"].shape == (4, 3)
    assert torch.allclose(ll["y"], expected)


def test_importance_log_evidence_and_ess():
    # Evidence of one observation y = 1 under m ~ N(0, 1), y ~ N(m, 1): N(1 | 0, 2).
    def one(y):
        m = probpl.sample("m", dist.Normal(0.0, 1.0))
        probpl.sample("y", dist.Normal(m, 1.0), obs=y)

    def guide(y):
        probpl.sample("m", dist.Normal(0.5, math.sqrt(0.5)))  # the exact posterior

    post = Importance(one, guide, num_samples=200).run(torch.tensor(1.0))
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(torch.tensor(1.0)).item()
    # An exact-posterior proposal has constant weights: exact evidence, full ESS.
    assert post.log_evidence() == pytest.approx(exact, abs=1e-5)
    assert post.get_ESS().item() == pytest.approx(200, rel=1e-4)
    marginal = EmpiricalMarginal(post, "m")
    assert abs(marginal.mean.item() - 0.5) < 0.25  # sd of the mean: 0.05


def test_deterministic_sites_in_posterior_samples_are_recomputed_and_returned():
    def model(x):
        m = probpl.sample("m", dist.Normal(0.0, 1.0))
        probpl.deterministic("twice", 2 * m)
        with probpl.plate("data", len(x)):
            return probpl.sample("y", dist.Normal(m * x, 1.0))

    draws = {"m": torch.tensor([1.0, -1.0]), "twice": torch.tensor([5.0, 5.0])}
    out = Predictive(model, draws)(torch.ones(3))
    assert set(out) == {"twice", "y"}
    assert torch.equal(out["twice"], torch.tensor([2.0, -2.0]))
