"""Laplace-like distributions: ``AsymmetricLaplace`` and ``SoftLaplace``."""

import math

import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch_distribution import TorchDistribution


class _LocScale(TorchDistribution):
    """Shared construction and ``expand`` for location-scale families."""

    _params = ("loc", "scale")

    def __init__(self, *args, validate_args=None):
        values = broadcast_all(*args)
        for name, value in zip(self._params, values):
            setattr(self, name, value)
        super().__init__(values[0].shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(type(self), _instance)
        for name in self._params:
            setattr(new, name, getattr(self, name).expand(batch_shape))
        TorchDistribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class AsymmetricLaplace(_LocScale):
    """A Laplace with different scales left and right of ``loc``: the left scale
    is ``scale * asymmetry`` and the right scale ``scale / asymmetry``.

    :param loc: the mode.
    :param scale: positive overall scale.
    :param asymmetry: positive; 1 gives the symmetric Laplace.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "asymmetry": constraints.positive,
    }
    support = constraints.real
    has_rsample = True
    _params = ("loc", "scale", "asymmetry")

    def __init__(self, loc, scale, asymmetry, *, validate_args=None):
        super().__init__(loc, scale, asymmetry, validate_args=validate_args)

    @property
    def left_scale(self):
        return self.scale * self.asymmetry

    @property
    def right_scale(self):
        return self.scale / self.asymmetry

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        left, right = self.left_scale, self.right_scale
        z = value - self.loc
        return -z.abs() / torch.where(z < 0, left, right) - torch.log(left + right)

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        u, v = self.loc.new_empty((2,) + shape).exponential_()
        return self.loc - self.left_scale * u + self.right_scale * v

    def cdf(self, value):
        left, right = self.left_scale, self.right_scale
        z = value - self.loc
        total = left + right
        below = left / total * torch.exp(z.clamp(max=0) / left)
        above = 1 - right / total * torch.exp(-z.clamp(min=0) / right)
        return torch.where(z < 0, below, above)

    @property
    def mean(self):
        return self.loc + self.right_scale - self.left_scale

    @property
    def variance(self):
        left, right = self.left_scale, self.right_scale
        return left.pow(2) + right.pow(2)


class SoftLaplace(_LocScale):
    """A smooth, log-concave Laplace-like density: ``1 / (pi * scale * cosh(z))``
    with ``z = (x - loc) / scale`` (the hyperbolic secant distribution).

    :param loc: location.
    :param scale: positive scale.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, *, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        # log cosh(z) = logaddexp(z, -z) - log 2, stable for large |z|.
        return math.log(2 / math.pi) - self.scale.log() - torch.logaddexp(z, -z)

    def cdf(self, value):
        z = (value - self.loc) / self.scale
        return torch.atan(torch.exp(z)) * (2 / math.pi)

    def icdf(self, value):
        return self.loc + self.scale * torch.log(torch.tan(value * (math.pi / 2)))

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        finfo = torch.finfo(self.loc.dtype)
        u = self.loc.new_empty(shape).uniform_(finfo.tiny, 1 - finfo.eps)
        return self.icdf(u)

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return (math.pi / 2 * self.scale).pow(2)
