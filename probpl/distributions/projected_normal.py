"""``ProjectedNormal``: the direction of a normal vector, a distribution on the
unit sphere.
"""

import math

import torch
import torch.nn.functional as F

from . import constraints
from .torch_distribution import TorchDistribution


def _log_radial_integral(t, order):
    """``log of int_0^inf r**order exp(-(r - t)**2 / 2) dr`` for each ``t``.

    Uses ``I_n = t I_{n-1} + (n - 1) I_{n-2}`` with ``I_0 = sqrt(2 pi) Phi(t)`` and
    ``I_1 = exp(-t**2 / 2) + t I_0``, carried relative to ``I_0`` so that large
    negative ``t`` does not underflow.
    """
    log_i0 = 0.5 * math.log(2 * math.pi) + torch.special.log_ndtr(t)
    if order == 0:
        return log_i0
    # ratio_n = I_n / I_0; ratio_1 = t + exp(-t^2/2) / I_0.
    inv_mills = torch.exp(-0.5 * t * t - log_i0)
    prev, cur = torch.ones_like(t), t + inv_mills
    for n in range(2, order + 1):
        prev, cur = cur, t * cur + (n - 1) * prev
    return log_i0 + cur.log()


class ProjectedNormal(TorchDistribution):
    """The law of ``x / |x|`` for ``x ~ Normal(concentration, I)``.

    :param torch.Tensor concentration: shape ``batch_shape + (D,)``; its
        direction is the mode and its norm the concentration.
    """

    arg_constraints = {"concentration": constraints.real_vector}
    support = constraints.sphere
    has_rsample = True

    def __init__(self, concentration, *, validate_args=None):
        if concentration.dim() < 1:
            raise ValueError("ProjectedNormal: concentration must have shape (..., D)")
        self.concentration = concentration
        super().__init__(concentration.shape[:-1], concentration.shape[-1:], validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return ProjectedNormal(
            self.concentration.expand(batch_shape + self.event_shape), validate_args=False
        )

    @property
    def mean(self):
        # The mode; the mean of a sphere-valued variable lies inside the ball.
        return F.normalize(self.concentration, dim=-1)

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        x = self.concentration + torch.randn(
            shape, dtype=self.concentration.dtype, device=self.concentration.device
        )
        return F.normalize(x, dim=-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        dim = self.event_shape[0]
        t = (value * self.concentration).sum(-1)
        sq = self.concentration.pow(2).sum(-1)
        return (
            -0.5 * dim * math.log(2 * math.pi)
            - 0.5 * (sq - t * t)
            + _log_radial_integral(t, dim - 1)
        )
