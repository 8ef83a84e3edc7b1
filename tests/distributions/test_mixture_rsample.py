"""``MixtureOfDiagNormals.rsample``: the Rosenblatt transform it differentiates,
exact pathwise derivatives in one dimension, and Monte Carlo gradients of
expectations against their closed forms."""

import math

import numpy as np
import pytest
import scipy.stats as sp
import torch

import probpl.distributions as dist

LOCS = [[0.0, 1.0, -0.5], [2.0, -1.0, 0.5], [-1.5, 0.0, 1.0]]
SCALES = [[1.0, 0.5, 0.8], [0.3, 2.0, 0.6], [0.7, 0.4, 1.5]]
LOGITS = [0.2, -0.4, 0.5]


def _params(dtype=torch.float64):
    return [torch.tensor(p, dtype=dtype) for p in (LOCS, SCALES, LOGITS)]


def test_rosenblatt_jacobian_matches_autograd():
    d = dist.MixtureOfDiagNormals(*_params())
    x = d.sample((4,))
    _, jacobian = d._rosenblatt(x)
    for i in range(4):
        expected = torch.autograd.functional.jacobian(lambda v: d._rosenblatt(v)[0], x[i])
        torch.testing.assert_close(jacobian[i], expected, rtol=1e-10, atol=1e-12)


def test_rosenblatt_transform_is_uniform():
    # F maps draws to independent uniforms exactly when it is the right conditional CDF.
    # One-sample KS per coordinate at level 1e-4 each (3e-4 overall).
    d = dist.MixtureOfDiagNormals(*_params())
    u = d._rosenblatt(d.sample((5000,)))[0]
    for j in range(3):
        assert sp.kstest(u[:, j].numpy(), "uniform").pvalue > 1e-4


def test_rsample_value_is_the_ancestral_draw():
    d = dist.MixtureOfDiagNormals(*_params())
    torch.manual_seed(3)
    x = d.sample((100,))
    torch.manual_seed(3)
    y = d.rsample((100,))
    assert torch.equal(x, y)


def test_one_dimensional_pathwise_derivatives_exact():
    # In 1-D, holding u = F(x) fixed: dx/dloc_k = r_k(x) and dx/dscale_k = r_k(x) z_k,
    # with r_k the posterior responsibility and z_k = (x - loc_k) / scale_k.
    locs = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([[0.5], [1.0], [0.3]], dtype=torch.float64, requires_grad=True)
    logits = torch.tensor([0.1, -0.3, 0.4], dtype=torch.float64, requires_grad=True)
    d = dist.MixtureOfDiagNormals(locs, scales, logits)
    x = d.rsample()
    grads = torch.autograd.grad(x.sum(), [locs, scales, logits])
    xv = x.detach()
    log_r = (logits.detach().log_softmax(-1)
             + torch.distributions.Normal(locs.detach()[:, 0], scales.detach()[:, 0]).log_prob(xv))
    r = log_r.softmax(-1)
    torch.testing.assert_close(grads[0][:, 0], r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1][:, 0], r * (xv - locs.detach()[:, 0])
                               / scales.detach()[:, 0], rtol=1e-10, atol=1e-12)
    # dx/dlogit_k = -(w_k Phi_k(x) - w_k F(x)) / p(x) for the softmax weights w.
    w = logits.detach().softmax(-1)
    normal = torch.distributions.Normal(locs.detach()[:, 0], scales.detach()[:, 0])
    cdf, pdf = (w * normal.cdf(xv)).sum(), (w * normal.log_prob(xv).exp()).sum()
    torch.testing.assert_close(grads[2], -w * (normal.cdf(xv) - cdf) / pdf, rtol=1e-9,
                               atol=1e-12)


def _closed_form(locs, scales, logits, t):
    w = logits.softmax(-1)
    cos_part = (w * torch.cos(locs @ t) * torch.exp(-0.5 * (scales.pow(2) @ t.pow(2)))).sum()
    square_part = (w * (locs.pow(2) + scales.pow(2)).sum(-1)).sum()
    cross_part = (w * locs[:, 0] * locs[:, 1]).sum()
    return cos_part + square_part + cross_part


def _f(x, t):
    return torch.cos(x @ t) + x.pow(2).sum(-1) + x[..., 0] * x[..., 1]


def test_gradient_of_expectation_matches_closed_form():
    N = 20000
    t = torch.tensor([0.7, -1.1, 0.4], dtype=torch.float64)
    params = [p.requires_grad_() for p in _params()]
    expected = torch.autograd.grad(_closed_form(*params, t), params)
    # Per-draw gradients: give every draw its own copy of the parameters.
    copies = [p.detach().expand((N,) + p.shape).clone().requires_grad_() for p in params]
    x = dist.MixtureOfDiagNormals(*copies).rsample()
    assert x.shape == (N, 3)
    _f(x, t).sum().backward()
    for copy, exp in zip(copies, expected):
        g = copy.grad
        assert torch.isfinite(g).all()
        # 5 standard errors: each of the 21 comparisons fails falsely with p < 1e-6.
        se = g.std(0) / math.sqrt(N)
        assert ((g.mean(0) - exp).abs() <= 5 * se + 1e-12).all(), (g.mean(0), exp, se)


def test_gradient_matches_finite_differences_of_expectation():
    # The same check for E[max(x)] (no closed form): central differences of the exact
    # expectation computed by quadrature, which Gauss-Hermite makes cheap here in 2-D.
    locs = torch.tensor([[0.0, 1.0], [1.5, -0.5]], dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.5], [0.4, 1.2]], dtype=torch.float64)
    logits = torch.tensor([0.3, -0.2], dtype=torch.float64)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    nodes = torch.tensor(nodes, dtype=torch.float64)
    weights = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)

    def expectation(locs, scales, logits):
        a = locs[:, None, None, 0] + scales[:, None, None, 0] * nodes[:, None]
        b = locs[:, None, None, 1] + scales[:, None, None, 1] * nodes[None, :]
        inner = (torch.maximum(a, b) * weights[:, None] * weights[None, :]).sum((-1, -2))
        return (logits.softmax(-1) * inner).sum()

    eps = 1e-5
    params = [locs, scales, logits]
    fd = []
    for i, p in enumerate(params):
        g = torch.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            hi = [q.clone() for q in params]
            lo = [q.clone() for q in params]
            hi[i][idx] += eps
            lo[i][idx] -= eps
            g[idx] = (expectation(*hi) - expectation(*lo)) / (2 * eps)
        fd.append(g)
    N = 20000
    copies = [p.expand((N,) + p.shape).clone().requires_grad_() for p in params]
    x = dist.MixtureOfDiagNormals(*copies).rsample()
    x.max(-1).values.sum().backward()
    for copy, exp in zip(copies, fd):
        g = copy.grad
        se = g.std(0) / math.sqrt(N)
        assert ((g.mean(0) - exp).abs() <= 5 * se + 1e-9).all(), (g.mean(0), exp, se)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_rsample_shapes_and_finite_gradients(dtype):
    locs, scales, logits = _params(dtype)
    locs = (locs + torch.randn(4, 1, 3, 3, dtype=dtype)).requires_grad_()
    scales = scales.expand(4, 1, 3, 3).clone().requires_grad_()
    logits = logits.clone().requires_grad_()
    d = dist.MixtureOfDiagNormals(locs, scales, logits)
    assert d.has_rsample and d.batch_shape == (4, 1)
    x = d.rsample((5,))
    assert x.shape == (5, 4, 1, 3) and x.dtype == dtype
    x.pow(2).sum().backward()
    for p in (locs, scales, logits):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert d.expand((2, 4, 3)).rsample().shape == (2, 4, 3, 3)
