"""``SineBivariateVonMises``: the normaliser against quadrature, the sampler
against the density by chi-square tests, shapes, dtypes and argument checks."""

import math

import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as sp
import torch

import probpl.distributions as dist
from probpl.distributions.sine_bivariate_von_mises import _envelope, _marginal_log_density

# (phi_loc, psi_loc, phi_concentration, psi_concentration, correlation)
PARAMS = [
    (0.3, -1.0, 1.0, 2.0, 0.5),  # mildly concentrated, unimodal
    (2.9, -3.0, 10.0, 4.0, -5.0),  # negative correlation, mass across the +-pi seam
    (0.0, 1.0, 3.0, 3.0, 5.0),  # bimodal: rho^2 > k1 k2
    (-1.0, 0.5, 2.0, 2.0, 10.0),  # strongly bimodal
    (1.0, 2.0, 0.01, 0.02, 0.0),  # nearly uniform, independent
    (0.5, 0.5, 60.0, 40.0, 30.0),  # concentrated
]


def _make(params, dtype=torch.float64):
    return dist.SineBivariateVonMises(*[torch.tensor(p, dtype=dtype) for p in params])


def _grid(n):
    # Midpoint rule on the torus: spectrally accurate for smooth periodic integrands.
    g = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * math.pi - math.pi
    return torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)


@pytest.mark.parametrize("params", PARAMS + [(0.0, 0.0, 400.0, 300.0, 200.0)])
def test_density_integrates_to_one(params):
    d = _make(params)
    n = 1200 if params[2] > 100 else 400
    mass = d.log_prob(_grid(n)).exp().sum() * (2 * math.pi / n) ** 2
    assert abs(mass.item() - 1) < 1e-9


@pytest.mark.parametrize("k1,k2,rho", [(1.0, 2.0, 0.5), (3.0, 3.0, 5.0), (100.0, 50.0, 60.0),
                                       (5000.0, 2000.0, 100.0), (8000.0, 9000.0, -8000.0)])
def test_normalizer_matches_marginal_quadrature(k1, k2, rho):
    # C = 2 pi * integral of exp(k1 cos phi) I0(sqrt(k2^2 + rho^2 sin^2 phi)) over phi:
    # an independent route (psi integrated in closed form) that reaches large k.
    phi = np.linspace(-np.pi, np.pi, 400001)[:-1]
    z = np.sqrt(k2**2 + rho**2 * np.sin(phi) ** 2)
    log_f = k1 * np.cos(phi) + np.log(sc.ive(0, z)) + z
    top = log_f.max()
    expected = 2 * np.log(2 * np.pi) + top + np.log(np.mean(np.exp(log_f - top)))
    d = _make((0.0, 0.0, k1, k2, rho))
    np.testing.assert_allclose(d.norm_const.item(), expected, rtol=1e-12)


def test_normalizer_gradient_matches_finite_differences():
    params = torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64, requires_grad=True)
    d = dist.SineBivariateVonMises(torch.tensor(0.0, dtype=torch.float64), 0.0, *params)
    (grad,) = torch.autograd.grad(d.norm_const, params)
    eps = 1e-6
    for i in range(3):
        hi, lo = params.detach().clone(), params.detach().clone()
        hi[i] += eps
        lo[i] -= eps
        fd = (_make((0.0, 0.0, *hi.tolist())).norm_const
              - _make((0.0, 0.0, *lo.tolist())).norm_const) / (2 * eps)
        np.testing.assert_allclose(grad[i].item(), fd.item(), rtol=1e-6)


@pytest.mark.parametrize("params", PARAMS)
def test_envelope_bounds_marginal(params):
    # The rejection sampler is exact only if q(s) <= c - lam s on all of [0, 1].
    k1, k2, rho = (torch.tensor(p, dtype=torch.float64) for p in params[2:])
    c, lam = _envelope(k1, k2, rho)
    s = torch.linspace(0, 1, 10001, dtype=torch.float64)
    q = _marginal_log_density(s, k1, k2, rho)[0]
    assert (q <= c - lam * s + 1e-12).all()


NUM_SAMPLES = 20000
# Each chi-square test fails falsely with probability 1e-4.
ALPHA = 1e-4


@pytest.mark.parametrize("params", PARAMS)
def test_sampler_matches_density_chi_square(params):
    d = _make(params)
    x = d.sample((NUM_SAMPLES,))
    assert x.shape == (NUM_SAMPLES, 2)
    assert ((x >= -math.pi) & (x < math.pi)).all()
    # Cell probabilities of a 12 x 12 partition of the torus by a fine midpoint rule
    # (each cell gets 50 x 50 points; error far below the chi-square resolution).
    bins, sub = 12, 50
    dens = d.log_prob(_grid(bins * sub)).exp() * (2 * math.pi / (bins * sub)) ** 2
    probs = dens.reshape(bins, sub, bins, sub).sum((1, 3)).reshape(-1)
    cell = ((x + math.pi) / (2 * math.pi) * bins).long().clamp(0, bins - 1)
    counts = torch.bincount(cell[:, 0] * bins + cell[:, 1], minlength=bins * bins).double()
    expected = probs * NUM_SAMPLES
    # Pool cells expected to hold fewer than 5 draws, so the chi-square law applies.
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum().item()
    dof = int(keep.sum()) - 1
    assert sp.chi2(dof).sf(stat) > ALPHA, (stat, dof)


def test_batched_sampler_per_element():
    # A batch mixing very different parameters: each element keeps its own law.
    cols = list(zip(PARAMS[0], PARAMS[3]))
    d = dist.SineBivariateVonMises(*[torch.tensor(c, dtype=torch.float64) for c in cols])
    x = d.sample((4000,))
    assert x.shape == (4000, 2, 2)
    for j, params in enumerate([PARAMS[0], PARAMS[3]]):
        # The circular mean of phi - phi_loc: the sample resultant's error is ~ 1/sqrt(N),
        # so 6/sqrt(N) fails falsely with probability < 1e-8.
        single = _make(params)
        g = _grid(400)
        w = single.log_prob(g).exp() * (2 * math.pi / 400) ** 2
        expected = (w * torch.cos(g[..., 0])).sum()
        actual = torch.cos(x[:, j, 0]).mean()
        assert abs(actual - expected) < 6 / math.sqrt(4000)


def test_shapes_expand_and_periodicity():
    d = dist.SineBivariateVonMises(
        torch.zeros(3, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
        torch.tensor(2.0, dtype=torch.float64), 3.0 * torch.ones(4, dtype=torch.float64),
        weighted_correlation=torch.tensor(0.5, dtype=torch.float64))
    assert d.batch_shape == (3, 4) and d.event_shape == (2,)
    x = d.sample((5,))
    assert x.shape == (5, 3, 4, 2)
    lp = d.log_prob(x)
    assert lp.shape == (5, 3, 4)
    torch.testing.assert_close(d.log_prob(x + 2 * math.pi), lp)
    torch.testing.assert_close(d.correlation, 0.5 * torch.sqrt(2.0 * d.psi_concentration))
    e = d.expand((2, 3, 4))
    assert type(e) is dist.SineBivariateVonMises
    assert e.batch_shape == (2, 3, 4) and e.sample((7,)).shape == (7, 2, 3, 4, 2)
    torch.testing.assert_close(e.log_prob(x.unsqueeze(1)), lp.unsqueeze(1).expand(5, 2, 3, 4))
    torch.testing.assert_close(d.mean, torch.zeros(3, 4, 2, dtype=torch.float64))


def test_float32():
    d32 = _make(PARAMS[1], dtype=torch.float32)
    x = d32.sample((1000,))
    assert x.dtype == torch.float32
    lp = d32.log_prob(x)
    assert torch.isfinite(lp).all()
    np.testing.assert_allclose(lp.double().numpy(), _make(PARAMS[1]).log_prob(x.double()).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_log_prob_gradients_flow():
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in PARAMS[2]]
    d = dist.SineBivariateVonMises(*params)
    d.log_prob(d.sample((10,))).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad) for p in params)


@pytest.mark.parametrize("kwargs,match", [
    ({"correlation": 0.5, "weighted_correlation": 0.5}, "exactly one"),
    ({}, "exactly one"),
    ({"weighted_correlation": 1.5}, "weighted_correlation"),
    ({"correlation": 0.5, "phi_concentration": -1.0}, "phi_concentration"),
    ({"correlation": 0.5, "psi_concentration": 0.0}, "psi_concentration"),
    ({"correlation": float("nan")}, "correlation"),
])
def test_bad_parameters_raise(kwargs, match):
    args = {"phi_loc": 0.0, "psi_loc": 0.0, "phi_concentration": 1.0, "psi_concentration": 1.0}
    args.update(kwargs)
    args = {k: torch.tensor(v) for k, v in args.items()}
    with pytest.raises(ValueError, match=match):
        dist.SineBivariateVonMises(**args)
