"""``Stable``: the Levy alpha-stable family in Nolan's S0 coordinates.

Sampling uses the Chambers-Mallows-Stuck construction, a differentiable
function of a uniform angle and an exponential draw, so ``rsample`` carries
gradients to all four parameters.  ``log_prob`` integrates the characteristic
function numerically (Gauss-Legendre), accurate near the bulk of the density.

References: Chambers, Mallows, Stuck (1976); Nolan, "Stable Distributions" (2020).
"""

import math

import numpy as np
import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch_distribution import TorchDistribution

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(512)


def _standard_s0(alpha, beta, v, w):
    """A standard (unit scale, zero location) S0 stable draw from ``v ~ U(-pi/2, pi/2)``
    and ``w ~ Exp(1)``."""
    near_one = (alpha - 1).abs() < 1e-3
    a = torch.where(near_one, torch.full_like(alpha, 0.5), alpha)
    zeta = -beta * torch.tan(math.pi * a / 2)
    xi = torch.atan(-zeta) / a
    x1 = ((1 + zeta * zeta) ** (0.5 / a) * torch.sin(a * (v + xi)) / torch.cos(v) ** (1 / a)
          * (torch.cos(v - a * (v + xi)) / w) ** ((1 - a) / a))
    general = x1 + zeta  # S1 -> S0 shift for unit scale
    half_pi = math.pi / 2
    b_v = half_pi + beta * v
    alpha_one = ((b_v * torch.tan(v) - beta * torch.log(half_pi * w * torch.cos(v) / b_v))
                 / half_pi)
    return torch.where(near_one, alpha_one, general)


class Stable(TorchDistribution):
    """The alpha-stable distribution.

    :param stability: ``alpha`` in (0, 2].
    :param skew: ``beta`` in [-1, 1].
    :param scale: positive scale.
    :param loc: location (S0 coordinates, so the density moves continuously in alpha).
    :param str coords: ``"S0"`` (the only coordinates implemented).
    """

    arg_constraints = {
        "stability": constraints.interval(0, 2),
        "skew": constraints.interval(-1, 1),
        "scale": constraints.positive,
        "loc": constraints.real,
    }
    support = constraints.real
    has_rsample = True

    def __init__(self, stability, skew, scale=1.0, loc=0.0, coords="S0", validate_args=None):
        if coords != "S0":
            raise NotImplementedError(f"Stable coords={coords!r}: only 'S0' is implemented")
        self.stability, self.skew, self.scale, self.loc = broadcast_all(stability, skew, scale,
                                                                        loc)
        self.coords = coords
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return Stable(*(p.expand(batch_shape) for p in (self.stability, self.skew, self.scale,
                                                         self.loc)), validate_args=False)

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        eps = torch.finfo(self.loc.dtype).eps
        half_pi = math.pi / 2
        v = self.loc.new_empty(shape).uniform_(-half_pi + eps, half_pi - eps)
        w = self.loc.new_empty(shape).exponential_().clamp(min=torch.finfo(self.loc.dtype).tiny)
        return self.loc + self.scale * _standard_s0(self.stability, self.skew, v, w)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = ((value - self.loc) / self.scale).unsqueeze(-1)
        alpha, beta = self.stability.unsqueeze(-1), self.skew.unsqueeze(-1)
        # t = u / (1 - u) maps (0, 1) onto (0, inf); dt = du / (1 - u)^2.
        u = z.new_tensor((_NODES + 1) / 2)
        du = z.new_tensor(_WEIGHTS / 2)
        t = u / (1 - u)
        jac = du / (1 - u) ** 2
        t_alpha = t**alpha
        near_one = (alpha - 1).abs() < 1e-3
        safe_alpha = torch.where(near_one, torch.full_like(alpha, 0.5), alpha)
        phase = torch.where(
            near_one,
            -beta * (2 / math.pi) * t * torch.log(t),
            beta * torch.tan(math.pi * safe_alpha / 2) * (t_alpha - t),
        )
        integrand = torch.exp(-t_alpha) * torch.cos(phase - t * z)
        density = (integrand * jac).sum(-1) / math.pi
        tiny = torch.finfo(density.dtype).tiny
        return density.clamp(min=tiny).log() - self.scale.log()

    @property
    def mean(self):
        return torch.where(self.stability > 1, self.loc, torch.full_like(self.loc, math.nan))

    @property
    def variance(self):
        var = 2 * self.scale.pow(2)
        return torch.where(self.stability == 2, var, torch.full_like(var, math.inf))
