"""Trivial and improper distributions: ``Unit`` (behind ``factor`` statements)
and ``ImproperUniform`` (a flat density over a constraint's set).
"""

import torch

from . import constraints
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


class Unit(TorchDistribution):
    """An unnormalised distribution over the unit type: a single value with no data.

    Its samples are empty tensors (event shape ``(0,)``) and its ``log_prob`` is
    ``log_factor``; ``probpl.factor`` is a sample site with this distribution.

    :param log_factor: the log weight, a number or tensor of the batch shape.
    :param bool has_rsample: override whether the site counts as reparameterised.
    """

    arg_constraints = {"log_factor": constraints.real}
    support = constraints.real

    def __init__(self, log_factor, *, has_rsample=None, validate_args=None):
        if not isinstance(log_factor, torch.Tensor):
            log_factor = torch.as_tensor(log_factor, dtype=torch.get_default_dtype())
        self.log_factor = log_factor
        if has_rsample is not None:
            self.has_rsample = has_rsample
        super().__init__(log_factor.shape, torch.Size((0,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(Unit, _instance)
        new.log_factor = self.log_factor.expand(batch_shape)
        if "has_rsample" in self.__dict__:
            new.has_rsample = self.has_rsample
        super(Unit, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()):
        return self.log_factor.new_empty(self.shape(sample_shape))

    def rsample(self, sample_shape=torch.Size()):
        return self.log_factor.new_empty(self.shape(sample_shape))

    def log_prob(self, value):
        return self.log_factor.expand(broadcast_shape(self.batch_shape, value.shape[:-1]))


class ImproperUniform(TorchDistribution):
    """A flat (improper) density over the set of ``support``.

    ``log_prob`` is zero everywhere; there is no sampler.  Useful as a prior
    that only declares a site's support, e.g. for MCMC initialised elsewhere.

    :param support: the constraint the values satisfy.
    :param batch_shape: the batch shape.
    :param event_shape: the event shape.
    """

    arg_constraints = {}

    def __init__(self, support, batch_shape, event_shape, validate_args=None):
        if not isinstance(support, constraints.Constraint):
            raise TypeError(f"ImproperUniform: support must be a Constraint, got {support!r}")
        self._support = support
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args)

    @constraints.dependent_property
    def support(self):
        return self._support

    def expand(self, batch_shape, _instance=None):
        return ImproperUniform(self._support, batch_shape, self.event_shape)

    def log_prob(self, value):
        shape = broadcast_shape(self.batch_shape, value.shape[: value.dim() - self.event_dim])
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        return torch.zeros((), dtype=dtype, device=value.device).expand(shape)

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("ImproperUniform has no sampler; initialise this site instead")
