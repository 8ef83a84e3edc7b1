"""Bad input gives clear errors; reparameterised samplers give correct
gradients; random shapes broadcast consistently (hypothesis)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import probpl.distributions as dist


@pytest.fixture(autouse=True)
def _validate():
    old = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(True)
    yield
    torch.distributions.Distribution.set_default_validate_args(old)


@pytest.mark.parametrize("make,name", [
    (lambda: dist.Normal(0.0, -1.0), "scale"),
    (lambda: dist.Bernoulli(probs=torch.tensor(1.5)), "probs"),
    (lambda: dist.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
     "covariance_matrix"),
    (lambda: dist.BetaBinomial(-1.0, 1.0, 3), "concentration1"),
    (lambda: dist.GammaPoisson(1.0, -2.0), "rate"),
    (lambda: dist.ZeroInflatedPoisson(torch.tensor(2.0), gate=torch.tensor(1.2)), "gate"),
    (lambda: dist.OrderedLogistic(torch.tensor(0.0), torch.tensor([1.0, 0.0])), "cutpoints"),
    (lambda: dist.MultivariateStudentT(-1.0, torch.zeros(2), torch.eye(2)), "df"),
    (lambda: dist.AsymmetricLaplace(0.0, 1.0, -1.0), "asymmetry"),
    (lambda: dist.TruncatedNormal(0.0, -1.0, -1.0, 1.0), "scale"),
])
def test_invalid_parameters_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("d,value", [
    (dist.Gamma(2.0, 1.0), -1.0),
    (dist.Poisson(2.0), 1.5),
    (dist.BetaBinomial(2.0, 1.0, 3.0), 4.0),
    (dist.TruncatedNormal(0.0, 1.0, -1.0, 1.0), 2.0),
    (dist.Beta(2.0, 2.0).expand([2]).to_event(1), [0.5, 1.5]),
])
def test_out_of_support_raises(d, value):
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor(value))


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"mask of shape \(4,\)"):
        dist.Normal(torch.zeros(3), 1.0).mask(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="initial_logits"):
        dist.DiscreteHMM(torch.zeros(3), torch.zeros(4, 2, 2), dist.Normal(torch.zeros(4, 2), 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_tails_stay_finite(dtype):
    lp = dist.TruncatedNormal(torch.tensor(0.0, dtype=dtype), 1.0, 8.0, 9.0).log_prob(
        torch.tensor(8.5, dtype=dtype))
    assert torch.isfinite(lp)
    lp = dist.OrderedLogistic(torch.tensor(30.0, dtype=dtype),
                              torch.tensor([-1.0, 0.0], dtype=dtype)).log_prob(torch.tensor(0))
    assert torch.isfinite(lp)
    lp = dist.SoftLaplace(torch.tensor(0.0, dtype=dtype), 1.0).log_prob(
        torch.tensor(200.0, dtype=dtype))
    assert torch.isfinite(lp)


# Pathwise gradients d/dtheta E[f(x)] against the closed form, f(x) = x^2 so
# E = var + mean^2.  Monte Carlo error is bounded with 5 standard errors
# estimated from the per-sample gradients.
@pytest.mark.parametrize("name,make,expected", [
    ("normal.scale", lambda s: dist.Normal(1.0, s), lambda s: 2 * s),
    ("gamma.concentration", lambda a: dist.Gamma(a, 2.0), lambda a: (1 + 2 * a) / 4),
    ("softlaplace.scale", lambda s: dist.SoftLaplace(0.0, s), lambda s: math.pi**2 / 2 * s),
    ("asymlaplace.scale", lambda s: dist.AsymmetricLaplace(0.0, s, 2.0),
     lambda s: 2 * s * ((2 - 0.5) ** 2 + 4 + 0.25)),
    ("truncnormal.loc", lambda m: dist.TruncatedNormal(m, 1.0, -math.inf, math.inf),
     lambda m: 2 * m),
    ("mvt.loc", lambda m: dist.MultivariateStudentT(5.0, m.expand(2), torch.eye(2).double()),
     lambda m: 4 * m),
])
def test_rsample_gradient(name, make, expected):
    theta = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    n = 20000
    x = make(theta).rsample((n,))
    f = x.pow(2).reshape(n, -1).sum(-1)
    grads = torch.autograd.grad(f.sum(), theta, retain_graph=True)[0] / n
    per_sample = torch.stack([torch.autograd.grad(f[i], theta, retain_graph=True)[0]
                              for i in range(200)])
    se = per_sample.std() / math.sqrt(n)
    assert abs(grads - expected(theta.detach())) < 5 * se + 1e-3 * abs(expected(theta.detach()))


shapes = st.lists(st.integers(1, 3), max_size=3).map(tuple)


@settings(max_examples=25, deadline=None)
@given(batch=shapes, extra=shapes, seed=st.integers(0, 2**16))
def test_hypothesis_broadcasting_and_expand(batch, extra, seed):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, generator=g, dtype=torch.float64)
    scale = torch.rand(batch, generator=g, dtype=torch.float64) + 0.1
    conc = torch.rand(batch, generator=g, dtype=torch.float64) + 0.5
    for d in [dist.Normal(loc, scale), dist.Gamma(conc, scale), dist.SoftLaplace(loc, scale),
              dist.GammaPoisson(conc, scale), dist.TruncatedNormal(loc, scale, loc - 1, loc + 2)]:
        new = extra + batch
        e = d.expand(new)
        x = e.sample()
        assert x.shape == new
        lp = e.log_prob(x)
        assert lp.shape == new and torch.isfinite(lp).all()
        # log_prob of an expanded distribution equals the base's, broadcast.
        torch.testing.assert_close(lp, d.log_prob(x))
        assert e.to_event().log_prob(x).shape == ()


@settings(max_examples=15, deadline=None)
@given(batch=shapes, k=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_hypothesis_discrete_enumeration_normalises(batch, k, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch + (k,), generator=g, dtype=torch.float64)
    for d in [dist.Categorical(logits=logits), dist.BetaBinomial(
            logits.exp()[..., 0], logits.exp()[..., 1], k), dist.Bernoulli(logits=logits[..., 0])]:
        support = d.enumerate_support()
        total = d.log_prob(support).logsumexp(0)
        torch.testing.assert_close(total, torch.zeros_like(total))
