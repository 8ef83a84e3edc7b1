"""``Spline``: an element-wise monotone spline flow, rational-linear or
rational-quadratic.

Inside ``[-bound, bound]`` each coordinate passes through a monotone spline
with ``count_bins`` learnable bins; outside it is the identity (the spline
meets the identity with unit slope at the ends).  Both orders share the knots,
the knot derivatives and the bin search; they differ in the curve drawn
inside a bin.

References:

1. Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows" (2019).
2. Dolatabadi, Erfani, Leckie, "Invertible Generative Modeling using Linear
   Rational Splines" (2020).
"""

import torch
import torch.nn.functional as F

from .. import constraints
from .torch_transform import TransformModule

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3
_MIN_LAMBDA = 0.025


def _knots(unnormalized, bound):
    """Knot positions ``(K + 1,)`` in ``[-bound, bound]`` and bin sizes ``(K,)``."""
    count = unnormalized.shape[-1]
    sizes = _MIN_BIN + (1 - _MIN_BIN * count) * F.softmax(unnormalized, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0)) * (2 * bound) - bound
    # Pin the ends exactly so inside/outside agree at the boundary.
    knots = torch.cat([knots[..., :1] * 0 - bound, knots[..., 1:-1], knots[..., -1:] * 0 + bound],
                      dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def _gather(params, index):
    return params.expand(index.shape[:-1] + params.shape[-1:]).gather(-1, index).squeeze(-1)


class _Bins:
    """The bin holding each input, and that bin's knots, sizes and end slopes."""

    def __init__(self, x, widths, heights, derivatives, bound, inverse):
        x_knots, w = _knots(widths, bound)
        y_knots, h = _knots(heights, bound)
        ones = derivatives.new_ones(derivatives.shape[:-1] + (1,))
        d = torch.cat([ones, _MIN_DERIVATIVE + F.softplus(derivatives), ones], dim=-1)
        self.inside = (x > -bound) & (x < bound)
        xc = x.clamp(-bound, bound).unsqueeze(-1)
        search = y_knots if inverse else x_knots
        self.index = (torch.searchsorted(
            search.expand(xc.shape[:-1] + search.shape[-1:]).contiguous(), xc.contiguous(),
            right=True) - 1).clamp(0, w.shape[-1] - 1)
        self.input = xc.squeeze(-1)
        self.x0, self.width = self.select(x_knots[..., :-1]), self.select(w)
        self.y0, self.height = self.select(y_knots[..., :-1]), self.select(h)
        self.d0, self.d1 = self.select(d[..., :-1]), self.select(d[..., 1:])
        self.slope = self.height / self.width

    def select(self, params):
        return _gather(params, self.index)

    def finish(self, x, out, log_det):
        out = torch.where(self.inside, out, x)
        return out, torch.where(self.inside, log_det, torch.zeros_like(log_det))


def rational_quadratic_spline(x, widths, heights, derivatives, bound, inverse=False):
    """Evaluate the rational-quadratic spline (or its inverse) element-wise.

    :param torch.Tensor x: inputs, shape ``(..., D)``.
    :param widths: unnormalised bin widths, ``(D, K)``.
    :param heights: unnormalised bin heights, ``(D, K)``.
    :param derivatives: unconstrained inner knot derivatives, ``(D, K - 1)``.
    :param float bound: the spline acts on ``[-bound, bound]``.
    :param bool inverse: evaluate the inverse map.
    :returns: ``(output, log_abs_det)`` both of ``x``'s shape; ``log_abs_det``
        is ``log|d output / d x|`` of the direction evaluated.
    """
    b = _Bins(x, widths, heights, derivatives, bound, inverse)
    xk, wk, yk, hk, dk, dk1, sk = b.x0, b.width, b.y0, b.height, b.d0, b.d1, b.slope
    curve = dk1 + dk - 2 * sk
    if inverse:
        dy = b.input - yk
        a = hk * (sk - dk) + dy * curve
        bb = hk * dk - dy * curve
        c = -sk * dy
        theta = (2 * c) / (-bb - torch.sqrt((bb * bb - 4 * a * c).clamp(min=0)))
        out = xk + theta * wk
    else:
        theta = (b.input - xk) / wk
        t1t = theta * (1 - theta)
        out = yk + hk * (sk * theta * theta + dk * t1t) / (sk + curve * t1t)
    t1t = theta * (1 - theta)
    denom = sk + curve * t1t
    numer = sk * sk * (dk1 * theta * theta + 2 * sk * t1t + dk * (1 - theta) ** 2)
    log_det = torch.log(numer) - 2 * torch.log(denom)
    if inverse:
        log_det = -log_det
    return b.finish(x, out, log_det)


def rational_linear_spline(x, widths, heights, derivatives, lambdas, bound, inverse=False):
    r"""Evaluate the rational-linear spline (or its inverse) element-wise.

    Each bin is split at the fraction ``lambda`` of its width into two
    rational-linear pieces, each of the form ``(w_i y_i (t_j - t) + w_j y_j (t -
    t_i)) / (w_i (t_j - t) + w_j (t - t_i))`` on ``t`` in ``[t_i, t_j]``, meeting
    at an interior point ``(lambda, y_c)``.  With ``w_a = 1`` at the left end,
    ``w_b = sqrt(d_a / d_b)`` and ``w_c = (lambda d_a + (1 - lambda) w_b d_b) /
    s`` (``s`` the bin's mean slope) make the slope ``d_a`` and ``d_b`` at the
    ends and continuous at the split, so the map is C1.

    :param torch.Tensor x: inputs, shape ``(..., D)``.
    :param widths: unnormalised bin widths, ``(D, K)``.
    :param heights: unnormalised bin heights, ``(D, K)``.
    :param derivatives: unconstrained inner knot derivatives, ``(D, K - 1)``.
    :param lambdas: unconstrained split fractions, ``(D, K)``.
    :param float bound: the spline acts on ``[-bound, bound]``.
    :param bool inverse: evaluate the inverse map.
    :returns: ``(output, log_abs_det)`` both of ``x``'s shape; ``log_abs_det``
        is ``log|d output / d x|`` of the direction evaluated.
    """
    b = _Bins(x, widths, heights, derivatives, bound, inverse)
    lam = b.select(_MIN_LAMBDA + (1 - 2 * _MIN_LAMBDA) * torch.sigmoid(lambdas))
    wb = torch.sqrt(b.d0 / b.d1)
    wc = (lam * b.d0 + (1 - lam) * wb * b.d1) / b.slope
    ya, yb = b.y0, b.y0 + b.height
    yc = ((1 - lam) * ya + lam * wb * yb) / ((1 - lam) + lam * wb)
    if inverse:
        # Invert each piece on its own range (clamped so the unused one stays finite).
        y = b.input
        y1, y2 = torch.minimum(y, yc), torch.maximum(y, yc)
        theta1 = lam * (y1 - ya) / ((y1 - ya) + wc * (yc - y1))
        theta2 = lam + (1 - lam) * wc * (y2 - yc) / (wc * (y2 - yc) + wb * (yb - y2))
        theta = torch.where(y <= yc, theta1, theta2)
    else:
        theta = (b.input - b.x0) / b.width
    t1, t2 = torch.minimum(theta, lam), torch.maximum(theta, lam)
    den1 = (lam - t1) + wc * t1
    den2 = wc * (1 - t2) + wb * (t2 - lam)
    left = theta <= lam
    if inverse:
        out = b.x0 + theta * b.width
    else:
        out = torch.where(left, (ya * (lam - t1) + wc * yc * t1) / den1,
                          (wc * yc * (1 - t2) + wb * yb * (t2 - lam)) / den2)
    # d y / d theta of each piece, then divide by the bin width for d y / d x.
    log_det = torch.where(
        left,
        torch.log(lam * wc * (yc - ya)) - 2 * torch.log(den1),
        torch.log(wb * wc * (1 - lam) * (yb - yc)) - 2 * torch.log(den2),
    ) - torch.log(b.width)
    if inverse:
        log_det = -log_det
    return b.finish(x, out, log_det)


class Spline(TransformModule):
    """An element-wise monotone rational spline on ``[-bound, bound]``.

    :param int input_dim: event size.
    :param int count_bins: number of spline bins.
    :param float bound: half-width of the interval the spline acts on.
    :param str order: ``"linear"`` (rational-linear, Dolatabadi et al. 2020;
        Pyro's default) or ``"quadratic"`` (rational-quadratic, Durkan et al.
        2019; the default here for now).

    Example::

        >>> import torch
        >>> from probpl.distributions.transforms import Spline
        >>> flow = Spline(2, count_bins=4, order="linear")
        >>> x = torch.randn(5, 2)
        >>> torch.allclose(flow.inv(flow(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, input_dim, count_bins=8, bound=3.0, order="linear"):
        super().__init__(cache_size=1)
        if order not in ("linear", "quadratic"):
            raise ValueError(f"Spline: order must be 'linear' or 'quadratic', got {order!r}")
        if count_bins < 1 or _MIN_BIN * count_bins >= 1:
            raise ValueError(f"Spline: count_bins must lie in [1, {int(1 / _MIN_BIN) - 1}], "
                             f"got {count_bins}")
        if bound <= 0:
            raise ValueError(f"Spline: bound must be positive, got {bound}")
        self.input_dim = input_dim
        self.count_bins = count_bins
        self.bound = bound
        self.order = order
        self.unnormalized_widths = torch.nn.Parameter(torch.randn(input_dim, count_bins))
        self.unnormalized_heights = torch.nn.Parameter(torch.randn(input_dim, count_bins))
        self.unnormalized_derivatives = torch.nn.Parameter(torch.randn(input_dim, count_bins - 1))
        if order == "linear":
            self.unnormalized_lambdas = torch.nn.Parameter(torch.rand(input_dim, count_bins))

    def _spline(self, x, inverse):
        params = (self.unnormalized_widths, self.unnormalized_heights,
                  self.unnormalized_derivatives)
        if self.order == "linear":
            return rational_linear_spline(x, *params, self.unnormalized_lambdas, self.bound,
                                          inverse=inverse)
        return rational_quadratic_spline(x, *params, self.bound, inverse=inverse)

    def _call(self, x):
        y, log_det = self._spline(x, inverse=False)
        self._cache_log_det = (x, y, log_det)
        return y

    def _inverse(self, y):
        x, log_det = self._spline(y, inverse=True)
        self._cache_log_det = (x, y, -log_det)
        return x

    def log_abs_det_jacobian(self, x, y):
        cached = getattr(self, "_cache_log_det", None)
        if cached is not None and cached[0] is x and cached[1] is y:
            return cached[2]
        return self._spline(x, inverse=False)[1]
