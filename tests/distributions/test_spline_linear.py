"""``Spline`` in both orders (rational-linear and rational-quadratic): round
trips, log-det-Jacobians against autograd, slopes at the knots, and
normalisation of the transformed density by quadrature."""

import pytest
import torch
import torch.nn.functional as F

import probpl.distributions as dist
from probpl.distributions import transforms as T
from probpl.distributions.transforms.spline import _MIN_DERIVATIVE, _knots

ORDERS = ["linear", "quadratic"]


def _spline(order, dim=3, count_bins=5, bound=2.0):
    torch.manual_seed(7)
    flow = T.Spline(dim, count_bins=count_bins, bound=bound, order=order).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(1.5)  # well away from the identity
    return flow


def _inputs(flow, n=400):
    x = 1.4 * flow.bound * torch.randn(n, flow.input_dim, dtype=torch.float64)
    # Also the knots themselves and the interval's ends.
    knots = _knots(flow.unnormalized_widths.detach(), flow.bound)[0].T
    return torch.cat([x, knots])


def test_order_argument():
    flow = T.Spline(2, order="linear")
    assert flow.order == "linear" and flow.unnormalized_lambdas.shape == (2, 8)
    with pytest.raises(ValueError, match="order"):
        T.Spline(2, order="cubic")


@pytest.mark.parametrize("order", ORDERS)
def test_round_trip(order):
    flow = _spline(order)
    x = _inputs(flow)
    y = flow._call(x)
    torch.testing.assert_close(flow._inverse(y), x, rtol=1e-10, atol=1e-10)
    outside = x.abs() >= flow.bound
    assert torch.equal(y[outside], x[outside])


@pytest.mark.parametrize("order", ORDERS)
def test_monotone(order):
    flow = _spline(order)
    x = torch.linspace(-3, 3, 5001, dtype=torch.float64).unsqueeze(-1).expand(-1, 3)
    assert (flow._call(x).diff(dim=0) > 0).all()


@pytest.mark.parametrize("order", ORDERS)
def test_log_det_matches_autograd(order):
    flow = _spline(order)
    x = _inputs(flow, n=200).requires_grad_()
    y = flow._call(x)
    # Element-wise map: the Jacobian is diagonal, its entries are d y_i / d x_i.
    (slope,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(flow.log_abs_det_jacobian(x, y), slope.log(), rtol=1e-9,
                               atol=1e-9)
    # The inverse direction: log|dx/dy| = -log|dy/dx| at the matching point.
    x_back, inv_log_det = flow._spline(y.detach(), inverse=True)
    torch.testing.assert_close(inv_log_det, -slope.log(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("order", ORDERS)
def test_slopes_at_knots(order):
    # The slope is continuous across each knot and equals the parameterised derivative
    # there (1 at the ends, where the spline meets the identity).
    flow = _spline(order)
    knots = _knots(flow.unnormalized_widths.detach(), flow.bound)[0].T  # (K + 1, D)
    expected = torch.cat([
        torch.ones(1, 3, dtype=torch.float64),
        (_MIN_DERIVATIVE + F.softplus(flow.unnormalized_derivatives.detach())).T,
        torch.ones(1, 3, dtype=torch.float64),
    ])
    with torch.no_grad():
        for side in (-1e-12, 1e-12):
            x = knots + side
            slope = flow.log_abs_det_jacobian(x, flow._call(x)).exp()
            torch.testing.assert_close(slope, expected, rtol=1e-6, atol=1e-8)


def test_linear_slope_continuous_at_split_points():
    flow = _spline("linear")
    with torch.no_grad():
        knots, widths = _knots(flow.unnormalized_widths, flow.bound)
        lam = 0.025 + 0.95 * torch.sigmoid(flow.unnormalized_lambdas)
        split = (knots[..., :-1] + lam * widths).T  # (K, D)
        left = flow._spline(split - 1e-12, inverse=False)
        right = flow._spline(split + 1e-12, inverse=False)
    # Slopes here reach ~1e4, so the values may differ by ~2e-8 across the gap.
    torch.testing.assert_close(left[0], right[0], rtol=0, atol=1e-7)
    torch.testing.assert_close(left[1], right[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
def test_density_normalises(order):
    flow = _spline(order, dim=1, count_bins=6)
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(1, dtype=torch.float64), 1.0),
                                     [flow])
    # Trapezoid rule on [-12, 12]: the normal's mass outside is ~1e-32, and the rule's
    # error, O(h^2) with h = 1.2e-4 on a density whose slope kinks only at knots, is
    # far below 1e-6.
    g = torch.linspace(-12, 12, 200001, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        mass = torch.trapezoid(d.log_prob(g).exp().squeeze(-1), g.squeeze(-1))
    assert abs(mass.item() - 1) < 1e-6


@pytest.mark.parametrize("order", ORDERS)
def test_parameters_get_gradients(order):
    flow = _spline(order)
    base = dist.Normal(torch.zeros(3, dtype=torch.float64), 1.0).to_event(1)
    d = dist.TransformedDistribution(base, [flow])
    x = 1.5 * torch.randn(50, 3, dtype=torch.float64)
    d.log_prob(x).sum().backward()
    names = dict(flow.named_parameters())
    assert ("unnormalized_lambdas" in names) == (order == "linear")
    for name, p in names.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("order", ORDERS)
def test_float32_round_trip(order):
    flow = _spline(order).float()
    x = 2 * torch.randn(200, 3)
    y = flow._call(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(flow._inverse(y), x, rtol=1e-4, atol=1e-4)
