"""``TruncatedNormal``: a normal restricted to ``[low, high]``.

Probabilities are handled in log space and right-tail intervals are reflected
into the left tail, so far-out truncations keep their precision.
"""

import math

import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch_distribution import TorchDistribution

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_diff_exp(a, b):
    """``log(exp(a) - exp(b))`` for ``a >= b``."""
    return a + torch.log(-torch.expm1(b - a))


class TruncatedNormal(TorchDistribution):
    """A normal with mean ``loc`` and standard deviation ``scale`` conditioned on
    ``low <= x <= high`` (either bound may be infinite).

    :param loc: location of the untruncated normal.
    :param scale: positive scale of the untruncated normal.
    :param low: lower bound.
    :param high: upper bound, greater than ``low``.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.dependent(is_discrete=False, event_dim=0),
        "high": constraints.dependent(is_discrete=False, event_dim=0),
    }
    has_rsample = True

    def __init__(self, loc, scale, low=-math.inf, high=math.inf, validate_args=None):
        self.loc, self.scale, self.low, self.high = broadcast_all(loc, scale, low, high)
        super().__init__(self.loc.shape, validate_args=validate_args)
        if self._validate_args and not torch.all(self.low < self.high):
            raise ValueError(
                f"TruncatedNormal: expected low < high, got low={self.low} and high={self.high}"
            )

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return TruncatedNormal(
            *(p.expand(batch_shape) for p in (self.loc, self.scale, self.low, self.high)),
            validate_args=False,
        )

    def _standard_bounds(self):
        return (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale

    def _log_mass(self):
        """``log(Phi(beta) - Phi(alpha))``, reflecting right-tail intervals."""
        alpha, beta = self._standard_bounds()
        flip = alpha > 0
        a = torch.where(flip, -beta, alpha)
        b = torch.where(flip, -alpha, beta)
        return _log_diff_exp(torch.special.log_ndtr(b), torch.special.log_ndtr(a))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        return -0.5 * z * z - _LOG_SQRT_2PI - self.scale.log() - self._log_mass()

    def cdf(self, value):
        alpha, _ = self._standard_bounds()
        z = (value - self.loc) / self.scale
        log_num = _log_diff_exp(
            torch.special.log_ndtr(torch.maximum(z, alpha)), torch.special.log_ndtr(alpha)
        )
        return torch.exp(log_num - self._log_mass()).clamp(0, 1)

    def icdf(self, value):
        alpha, beta = self._standard_bounds()
        flip = alpha > 0
        a = torch.where(flip, -beta, alpha)
        b = torch.where(flip, -alpha, beta)
        u = torch.where(flip, 1 - value, value)
        phi_a, phi_b = torch.special.ndtr(a), torch.special.ndtr(b)
        z = torch.special.ndtri(phi_a + u * (phi_b - phi_a))
        z = torch.where(flip, -z, z)
        z = torch.minimum(torch.maximum(z, alpha), beta)
        return self.loc + self.scale * z

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        finfo = torch.finfo(self.loc.dtype)
        u = self.loc.new_empty(shape).uniform_(finfo.tiny, 1 - finfo.eps)
        return self.icdf(u)

    def _pdf_terms(self):
        alpha, beta = self._standard_bounds()
        log_z = self._log_mass()
        phi_a = torch.exp(-0.5 * alpha * alpha - _LOG_SQRT_2PI - log_z)
        phi_b = torch.exp(-0.5 * beta * beta - _LOG_SQRT_2PI - log_z)
        # alpha * phi(alpha) vanishes at an infinite bound (0 * inf would be NaN).
        a_phi_a = torch.where(torch.isfinite(alpha), alpha * phi_a, torch.zeros_like(phi_a))
        b_phi_b = torch.where(torch.isfinite(beta), beta * phi_b, torch.zeros_like(phi_b))
        return phi_a, phi_b, a_phi_a, b_phi_b

    @property
    def mean(self):
        phi_a, phi_b, _, _ = self._pdf_terms()
        return self.loc + self.scale * (phi_a - phi_b)

    @property
    def variance(self):
        phi_a, phi_b, a_phi_a, b_phi_b = self._pdf_terms()
        return self.scale.pow(2) * (1 + a_phi_a - b_phi_b - (phi_a - phi_b).pow(2))
