"""Bijections and flows: round trips, log-det-Jacobians against autograd,
and normalisation of flow-transformed densities by quadrature."""

import math

import pytest
import torch

import probpl.distributions as dist
from probpl.distributions import constraints
from probpl.distributions import transforms as T


def _strict_lower(m):
    n = m.shape[-1]
    i, j = torch.tril_indices(n, n, -1)
    return m[..., i, j]


# (constraint, unconstrained size, codomain coordinates used for the Jacobian)
BIJECTIONS = [
    (constraints.real, 3, None),
    (constraints.positive, 3, None),
    (constraints.greater_than(1.5), 3, None),
    (constraints.less_than(-0.5), 3, None),
    (constraints.interval(-1.0, 2.0), 3, None),
    (constraints.unit_interval, 3, None),
    (constraints.softplus_positive, 3, None),
    (constraints.real_vector, 3, None),
    (constraints.ordered_vector, 4, None),
    (constraints.positive_ordered_vector, 4, None),
    (constraints.simplex, 3, lambda y: y[..., :-1]),
    (constraints.corr_cholesky, 3, _strict_lower),
    (constraints.corr_matrix, 6, _strict_lower),
]


@pytest.mark.parametrize("constraint,size,coords", BIJECTIONS, ids=[repr(c[0]) for c in BIJECTIONS])
def test_biject_to_round_trip_and_log_det(constraint, size, coords):
    t = T.biject_to(constraint)
    x = torch.randn(size, dtype=torch.float64)
    y = t(x)
    assert constraint.check(y).all()
    torch.testing.assert_close(t.inv(y), x, rtol=1e-7, atol=1e-7)
    coords = coords or (lambda v: v.reshape(-1))
    jac = torch.autograd.functional.jacobian(lambda z: coords(t(z)), x)
    expected = torch.linalg.slogdet(jac).logabsdet
    actual = t.log_abs_det_jacobian(x, y).sum()
    torch.testing.assert_close(actual, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("constraint", [
    constraints.lower_cholesky, constraints.softplus_lower_cholesky,
    constraints.unit_lower_cholesky, constraints.positive_definite, constraints.sphere,
])
def test_transform_to_lands_in_constraint(constraint):
    x = torch.randn(4, 3, 3, dtype=torch.float64) if constraint.event_dim == 2 else torch.randn(
        4, 3, dtype=torch.float64)
    assert constraint.check(T.transform_to(constraint)(x)).all()


def _flows(dim):
    # Each flow is built and perturbed under its own seed, so adding a flow or a
    # parameter to one flow does not change the others' random values.
    makers = {
        "iaf": lambda: T.affine_autoregressive(dim, hidden_dims=[8, 8]),
        "iaf_stable": lambda: T.affine_autoregressive(dim, hidden_dims=[8], stable=True),
        "coupling": lambda: T.affine_coupling(dim, hidden_dims=[8]),
        "spline": lambda: T.Spline(dim, count_bins=5, bound=2.0),
        "permute": lambda: T.Permute(torch.arange(dim).flip(0)),
        "batchnorm": lambda: T.BatchNorm(dim).eval(),
        "planar": lambda: T.Planar(dim),
        "radial": lambda: T.Radial(dim),
    }
    flows = {}
    for name, make in makers.items():
        torch.manual_seed(1)
        f = make()
        if name == "batchnorm":
            with torch.no_grad():
                f.moving_mean.normal_()
                f.moving_variance.uniform_(0.5, 2.0)
                f.gamma.normal_()
        if isinstance(f, torch.nn.Module):
            f.double()
            with torch.no_grad():
                for p in f.parameters():
                    p.add_(0.3 * torch.randn_like(p))  # move away from the identity
        flows[name] = f
    return flows


FLOW_NAMES = ["iaf", "iaf_stable", "coupling", "spline", "permute", "batchnorm", "planar", "radial"]
INVERTIBLE = ["iaf", "iaf_stable", "coupling", "spline", "permute", "batchnorm"]


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flow_log_det_matches_autograd(name):
    flow = _flows(3)[name]
    x = 1.5 * torch.randn(3, dtype=torch.float64)
    y = flow(x)
    jac = torch.autograd.functional.jacobian(flow._call, x)
    expected = torch.linalg.slogdet(jac).logabsdet
    actual = flow.log_abs_det_jacobian(x, y).sum()
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", INVERTIBLE)
def test_flow_inverse_round_trip(name):
    flow = _flows(3)[name]
    x = 1.5 * torch.randn(10, 3, dtype=torch.float64)
    y = flow._call(x)
    torch.testing.assert_close(flow._inverse(y), x, rtol=1e-6, atol=1e-6)


# The element-wise spline is covered by the finer 1-D check below.
@pytest.mark.parametrize("name", ["iaf", "coupling", "batchnorm", "iaf_stable"])
def test_flow_density_normalises_2d(name):
    flow = _flows(2)[name]
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    d = dist.TransformedDistribution(base, [flow])
    # Midpoint rule on [-10, 10]^2; the mass outside is < 1e-6 for these flows
    # (near-identity maps of a standard normal), and the rule's error is smaller.
    n, lim = 300, 10.0
    g = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * lim - lim
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = d.log_prob(grid).exp().sum() * (2 * lim / n) ** 2
    assert abs(mass.item() - 1) < 2e-3


def test_spline_density_normalises_1d():
    flow = T.Spline(1, count_bins=6, bound=2.0).double()
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(1, dtype=torch.float64), 1.0), [flow])
    g = torch.linspace(-12, 12, 200001, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        mass = torch.trapezoid(d.log_prob(g).exp().squeeze(-1), g.squeeze(-1))
    assert abs(mass.item() - 1) < 1e-6


def test_flow_parameters_get_gradients():
    flow = T.affine_autoregressive(2).double()
    base = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    d = dist.TransformedDistribution(base, [flow])
    assert d.has_rsample
    d.rsample((5,)).pow(2).sum().backward()
    grads = [p.grad for p in flow.parameters()]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_compose_transform_module_registers_parts():
    parts = [T.Spline(2), T.Permute(torch.tensor([1, 0])), T.affine_autoregressive(2)]
    composed = T.ComposeTransformModule(parts)
    n_params = sum(p.numel() for p in composed.parameters())
    assert n_params == sum(p.numel() for f in parts if isinstance(f, torch.nn.Module)
                           for p in f.parameters())
    x = torch.randn(4, 2)
    torch.testing.assert_close(composed.inv(composed(x)), x, rtol=1e-4, atol=1e-4)


def test_corr_matrix_log_det_constant():
    # For 3x3 the Jacobian of C -> L over strict lower triangles is prod L_ii^-(n-1-i).
    L = T.biject_to(constraints.corr_cholesky)(torch.randn(3, dtype=torch.float64))
    C = L @ L.T
    t = T.CorrMatrixCholeskyTransform()
    expected = -(2 * 0 + 1 * L[1, 1].log() + 0 * L[2, 2].log())
    torch.testing.assert_close(t.log_abs_det_jacobian(C, L), expected + 0 * math.pi)
