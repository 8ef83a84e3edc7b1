"""``Spline``: an element-wise monotonic rational-quadratic spline flow.

Inside ``[-bound, bound]`` each coordinate passes through a monotone spline
with ``count_bins`` learnable knots; outside it is the identity (the spline
meets the identity with unit slope at the ends).

References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows" (2019).
"""

import torch
import torch.nn.functional as F

from .. import constraints
from .torch_transform import TransformModule

_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3


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


def rational_quadratic_spline(x, widths, heights, derivatives, bound, inverse=False):
    """Evaluate the spline (or its inverse) element-wise.

    :param torch.Tensor x: inputs, shape ``(..., D)``.
    :param widths: unnormalised bin widths, ``(D, K)``.
    :param heights: unnormalised bin heights, ``(D, K)``.
    :param derivatives: unconstrained inner knot derivatives, ``(D, K - 1)``.
    :param float bound: the spline acts on ``[-bound, bound]``.
    :param bool inverse: evaluate the inverse map.
    :returns: ``(output, log_abs_det)`` both of ``x``'s shape; ``log_abs_det``
        is ``log|d output / d x|`` of the direction evaluated.
    """
    x_knots, w = _knots(widths, bound)
    y_knots, h = _knots(heights, bound)
    ones = derivatives.new_ones(derivatives.shape[:-1] + (1,))
    d = torch.cat([ones, _MIN_DERIVATIVE + F.softplus(derivatives), ones], dim=-1)

    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound).unsqueeze(-1)
    search = y_knots if inverse else x_knots
    index = (torch.searchsorted(search.expand(xc.shape[:-1] + search.shape[-1:]).contiguous(),
                                xc.contiguous(), right=True) - 1).clamp(0, w.shape[-1] - 1)
    xk, wk = _gather(x_knots[..., :-1], index), _gather(w, index)
    yk, hk = _gather(y_knots[..., :-1], index), _gather(h, index)
    dk, dk1 = _gather(d[..., :-1], index), _gather(d[..., 1:], index)
    sk = hk / wk
    xc = xc.squeeze(-1)
    curve = dk1 + dk - 2 * sk
    if inverse:
        dy = xc - yk
        a = hk * (sk - dk) + dy * curve
        b = hk * dk - dy * curve
        c = -sk * dy
        theta = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp(min=0)))
        out = xk + theta * wk
    else:
        theta = (xc - xk) / wk
        t1t = theta * (1 - theta)
        out = yk + hk * (sk * theta * theta + dk * t1t) / (sk + curve * t1t)
    t1t = theta * (1 - theta)
    denom = sk + curve * t1t
    numer = sk * sk * (dk1 * theta * theta + 2 * sk * t1t + dk * (1 - theta) ** 2)
    log_det = torch.log(numer) - 2 * torch.log(denom)
    if inverse:
        log_det = -log_det
    out = torch.where(inside, out, x)
    log_det = torch.where(inside, log_det, torch.zeros_like(log_det))
    return out, log_det


class Spline(TransformModule):
    """An element-wise monotone rational-quadratic spline on ``[-bound, bound]``.

    :param int input_dim: event size.
    :param int count_bins: number of spline bins.
    :param float bound: half-width of the interval the spline acts on.
    :param str order: ``"quadratic"`` (the only order implemented).
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, input_dim, count_bins=8, bound=3.0, order="quadratic"):
        super().__init__(cache_size=1)
        if order != "quadratic":
            raise NotImplementedError(f"Spline order {order!r}: only 'quadratic' is implemented")
        self.input_dim = input_dim
        self.count_bins = count_bins
        self.bound = bound
        self.unnormalized_widths = torch.nn.Parameter(torch.randn(input_dim, count_bins))
        self.unnormalized_heights = torch.nn.Parameter(torch.randn(input_dim, count_bins))
        self.unnormalized_derivatives = torch.nn.Parameter(torch.randn(input_dim, count_bins - 1))

    def _spline(self, x, inverse):
        return rational_quadratic_spline(
            x, self.unnormalized_widths, self.unnormalized_heights,
            self.unnormalized_derivatives, self.bound, inverse=inverse,
        )

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
