"""``Delta``: a point mass, used for MAP guides and deterministic sites."""

import numbers

import torch

from . import constraints
from .torch_distribution import TorchDistribution
from .util import sum_rightmost


class Delta(TorchDistribution):
    """A point mass at ``v``, optionally carrying a ``log_density`` (for example
    the log-Jacobian of a change of variables).

    :param torch.Tensor v: the location; its rightmost ``event_dim`` dims form
        the event shape.
    :param log_density: a number or tensor of the batch shape added to
        ``log_prob``.
    :param int event_dim: how many rightmost dims of ``v`` are event dims.
    """

    has_rsample = True
    arg_constraints = {"v": constraints.dependent, "log_density": constraints.real}

    def __init__(self, v, log_density=0.0, event_dim=0, validate_args=None):
        if event_dim > v.dim():
            raise ValueError(
                f"Delta: event_dim={event_dim} exceeds v.dim()={v.dim()} (v shape {tuple(v.shape)})"
            )
        batch_dim = v.dim() - event_dim
        batch_shape = v.shape[:batch_dim]
        event_shape = v.shape[batch_dim:]
        if isinstance(log_density, numbers.Number):
            log_density = torch.full(batch_shape, log_density, dtype=v.dtype, device=v.device)
        elif validate_args and log_density.shape != batch_shape:
            raise ValueError(
                f"Delta: log_density shape {tuple(log_density.shape)} must equal "
                f"the batch shape {tuple(batch_shape)}"
            )
        self.v = v
        self.log_density = log_density
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(constraints.real, self.event_dim)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Delta, _instance)
        batch_shape = torch.Size(batch_shape)
        new.v = self.v.expand(batch_shape + self.event_shape)
        new.log_density = self.log_density.expand(batch_shape)
        super(Delta, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.v.shape
        return self.v.expand(shape)

    def log_prob(self, x):
        v = self.v.expand(self.shape())
        log_prob = (x == v).type_as(v).log()
        log_prob = sum_rightmost(log_prob, self.event_dim)
        return log_prob + self.log_density

    @property
    def mean(self):
        return self.v

    @property
    def variance(self):
        return torch.zeros_like(self.v)

    def entropy(self):
        return torch.zeros_like(self.log_density)
