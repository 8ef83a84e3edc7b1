"""Affine normalizing flows: ``AffineAutoregressive`` (inverse autoregressive
flow on a MADE network) and ``AffineCoupling`` (RealNVP-style coupling).

Both are :class:`TransformModule` s so their networks train with SVI.
"""

import torch

from .. import constraints
from .torch_transform import TransformModule


def _clamp_log_scale(log_scale, lo, hi):
    # A clamp whose gradient does not vanish outside the range would let
    # the scale run away; clamping keeps exp(log_scale) in a safe range.
    return log_scale.clamp(min=lo, max=hi)


class AffineAutoregressive(TransformModule):
    """``y = loc(x) + exp(log_scale(x)) * x`` with ``(loc, log_scale)`` from an
    autoregressive network, so the Jacobian is triangular.

    The forward direction is one network pass (fast sampling); the inverse
    needs ``input_dim`` passes.  With ``stable=True`` the update is the gated
    ``y = sigmoid(s) * x + (1 - sigmoid(s)) * loc``, which trains more stably.

    :param autoregressive_nn: a network returning ``(loc, log_scale)`` of the input's shape.
    :param float log_scale_min_clip: lower clamp for ``log_scale``.
    :param float log_scale_max_clip: upper clamp for ``log_scale``.
    :param float sigmoid_bias: added to the gate pre-activation when ``stable``.
    :param bool stable: use the gated update.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1
    autoregressive = True

    def __init__(self, autoregressive_nn, log_scale_min_clip=-5.0, log_scale_max_clip=3.0,
                 sigmoid_bias=2.0, stable=False):
        super().__init__(cache_size=1)
        self.arn = autoregressive_nn
        self.log_scale_min_clip = log_scale_min_clip
        self.log_scale_max_clip = log_scale_max_clip
        self.sigmoid_bias = sigmoid_bias
        self.stable = stable

    def _params(self, x):
        """The per-coordinate ``(shift, scale, log_scale)`` of the update at ``x``."""
        loc, s = self.arn(x)
        if self.stable:
            gate_logit = s + self.sigmoid_bias
            scale = torch.sigmoid(gate_logit)
            log_scale = torch.nn.functional.logsigmoid(gate_logit)
            return (1 - scale) * loc, scale, log_scale
        log_scale = _clamp_log_scale(s, self.log_scale_min_clip, self.log_scale_max_clip)
        return loc, torch.exp(log_scale), log_scale

    def _call(self, x):
        shift, scale, _ = self._params(x)
        return shift + scale * x

    def _inverse(self, y):
        # Coordinate k of x is determined once the coordinates before it in the
        # network's order are known, so fill them in that order.
        x = torch.zeros_like(y)
        for idx in self.arn.get_permutation().tolist():
            shift, scale, _ = self._params(x)
            x_idx = (y[..., idx] - shift[..., idx]) / scale[..., idx]
            x = x.clone()
            x[..., idx] = x_idx
        return x

    def log_abs_det_jacobian(self, x, y):
        _, _, log_scale = self._params(x)
        return log_scale.sum(-1)


def affine_autoregressive(input_dim, hidden_dims=None, **kwargs):
    """An :class:`AffineAutoregressive` flow on a fresh :class:`AutoRegressiveNN`.

    :param int input_dim: the event size.
    :param list hidden_dims: hidden sizes (default ``[3 * input_dim + 1]``).
    :returns: the flow.
    """
    from ...nn.auto_reg_nn import AutoRegressiveNN  # deferred: probpl.nn imports this package

    if hidden_dims is None:
        hidden_dims = [3 * input_dim + 1]
    return AffineAutoregressive(AutoRegressiveNN(input_dim, hidden_dims), **kwargs)


class AffineCoupling(TransformModule):
    """Split ``x = (x1, x2)`` at ``split_dim``; ``y1 = x1`` and
    ``y2 = loc(x1) + exp(log_scale(x1)) * x2``.  Forward and inverse each take
    one network pass.

    :param int split_dim: size of the unchanged block ``x1``.
    :param hypernet: a network mapping ``x1`` to ``(loc, log_scale)`` of ``x2``'s shape.
    :param float log_scale_min_clip: lower clamp for ``log_scale``.
    :param float log_scale_max_clip: upper clamp for ``log_scale``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, split_dim, hypernet, log_scale_min_clip=-5.0, log_scale_max_clip=3.0):
        super().__init__(cache_size=1)
        self.split_dim = split_dim
        self.nn = hypernet
        self.log_scale_min_clip = log_scale_min_clip
        self.log_scale_max_clip = log_scale_max_clip

    def _params(self, x1):
        loc, log_scale = self.nn(x1)
        return loc, _clamp_log_scale(log_scale, self.log_scale_min_clip, self.log_scale_max_clip)

    def _call(self, x):
        x1, x2 = x[..., : self.split_dim], x[..., self.split_dim :]
        loc, log_scale = self._params(x1)
        return torch.cat([x1, loc + torch.exp(log_scale) * x2], dim=-1)

    def _inverse(self, y):
        y1, y2 = y[..., : self.split_dim], y[..., self.split_dim :]
        loc, log_scale = self._params(y1)
        return torch.cat([y1, (y2 - loc) * torch.exp(-log_scale)], dim=-1)

    def log_abs_det_jacobian(self, x, y):
        _, log_scale = self._params(x[..., : self.split_dim])
        return log_scale.sum(-1)


def affine_coupling(input_dim, hidden_dims=None, split_dim=None, **kwargs):
    """An :class:`AffineCoupling` flow on a fresh :class:`DenseNN`.

    :param int input_dim: the event size (at least 2).
    :param list hidden_dims: hidden sizes (default ``[10 * input_dim]``).
    :param int split_dim: size of the unchanged block (default ``input_dim // 2``).
    :returns: the flow.
    """
    if input_dim < 2:
        raise ValueError(f"affine_coupling needs input_dim >= 2, got {input_dim}")
    from ...nn.auto_reg_nn import DenseNN  # deferred: probpl.nn imports this package

    if split_dim is None:
        split_dim = input_dim // 2
    if hidden_dims is None:
        hidden_dims = [10 * input_dim]
    rest = input_dim - split_dim
    hypernet = DenseNN(split_dim, hidden_dims, param_dims=[rest, rest])
    return AffineCoupling(split_dim, hypernet, **kwargs)
