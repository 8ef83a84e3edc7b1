"""Zero-inflated count distributions: a point mass at zero mixed with a base
distribution, with the mixture weight (``gate``) given as a probability or
as logits.  Densities are computed in log space.
"""

import torch
import torch.nn.functional as F
from torch.distributions.utils import broadcast_all, lazy_property

from . import constraints
from .torch import NegativeBinomial, Poisson
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


class ZeroInflatedDistribution(TorchDistribution):
    """``base_dist`` with extra mass at zero: ``p(0) = gate + (1 - gate) base(0)``.

    Give exactly one of ``gate`` (probability of the extra zero) and
    ``gate_logits``.

    :param base_dist: a distribution with ``event_shape == ()``.
    :param gate: probability in [0, 1].
    :param gate_logits: log-odds of the gate.
    """

    arg_constraints = {
        "gate": constraints.unit_interval,
        "gate_logits": constraints.real,
    }

    def __init__(self, base_dist, *, gate=None, gate_logits=None, validate_args=None):
        if (gate is None) == (gate_logits is None):
            raise ValueError(
                f"{type(self).__name__}: give exactly one of gate or gate_logits"
            )
        if base_dist.event_shape:
            raise ValueError(
                f"{type(self).__name__}: base_dist must be univariate, got event_shape "
                f"{tuple(base_dist.event_shape)}"
            )
        gate_param = gate if gate is not None else gate_logits
        if not isinstance(gate_param, torch.Tensor):
            gate_param = torch.as_tensor(gate_param, dtype=torch.get_default_dtype())
        batch_shape = torch.Size(broadcast_shape(gate_param.shape, base_dist.batch_shape))
        if gate is not None:
            self.gate = gate_param.expand(batch_shape)
        else:
            self.gate_logits = gate_param.expand(batch_shape)
        if base_dist.batch_shape != batch_shape:
            base_dist = base_dist.expand(batch_shape)
        self.base_dist = base_dist
        super().__init__(batch_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    @lazy_property
    def gate(self):
        return torch.sigmoid(self.gate_logits)

    @lazy_property
    def gate_logits(self):
        return torch.logit(self.gate)

    def _log_gates(self):
        if "gate_logits" in self.__dict__:
            logits = self.gate_logits
            return -F.softplus(-logits), -F.softplus(logits)
        gate = self.gate
        return gate.log(), torch.log1p(-gate)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        log_gate, log_not_gate = self._log_gates()
        base_lp = self.base_dist.log_prob(value) + log_not_gate
        zero_lp = torch.logaddexp(log_gate.expand_as(base_lp), base_lp)
        return torch.where(value == 0, zero_lp, base_lp)

    def sample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        with torch.no_grad():
            zero = torch.bernoulli(self.gate.expand(shape))
            value = self.base_dist.sample(sample_shape)
            return torch.where(zero.bool(), torch.zeros_like(value), value)

    @property
    def mean(self):
        return (1 - self.gate) * self.base_dist.mean

    @property
    def variance(self):
        base_m2 = self.base_dist.variance + self.base_dist.mean.pow(2)
        return (1 - self.gate) * base_m2 - self.mean.pow(2)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        gate_kwargs = self._gate_kwargs(batch_shape)
        new = ZeroInflatedDistribution(
            self.base_dist.expand(batch_shape), validate_args=False, **gate_kwargs
        )
        return new

    def _gate_kwargs(self, batch_shape):
        if "gate_logits" in self.__dict__:
            return {"gate_logits": self.gate_logits.expand(batch_shape)}
        return {"gate": self.gate.expand(batch_shape)}


class ZeroInflatedPoisson(ZeroInflatedDistribution):
    """A zero-inflated Poisson.

    :param rate: Poisson rate, positive.
    :param gate: probability of the extra zero.
    :param gate_logits: log-odds of the extra zero.
    """

    arg_constraints = {
        "rate": constraints.positive,
        "gate": constraints.unit_interval,
        "gate_logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(self, rate, *, gate=None, gate_logits=None, validate_args=None):
        gate_param = gate if gate is not None else gate_logits
        if gate_param is not None:
            rate, gate_param = broadcast_all(rate, gate_param)
        base = Poisson(rate, validate_args=False)
        self.rate = base.rate
        super().__init__(
            base,
            gate=gate_param if gate is not None else None,
            gate_logits=gate_param if gate_logits is not None else None,
            validate_args=validate_args,
        )

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return ZeroInflatedPoisson(
            self.rate.expand(batch_shape), validate_args=False, **self._gate_kwargs(batch_shape)
        )


class ZeroInflatedNegativeBinomial(ZeroInflatedDistribution):
    """A zero-inflated negative binomial.

    :param total_count: positive number of failures until stopping.
    :param probs: success probability (give this or ``logits``).
    :param logits: success log-odds.
    :param gate: probability of the extra zero.
    :param gate_logits: log-odds of the extra zero.
    """

    arg_constraints = {
        "total_count": constraints.greater_than_eq(0),
        "probs": constraints.half_open_interval(0.0, 1.0),
        "logits": constraints.real,
        "gate": constraints.unit_interval,
        "gate_logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(
        self, total_count, *, probs=None, logits=None, gate=None, gate_logits=None,
        validate_args=None,
    ):
        base = NegativeBinomial(total_count, probs=probs, logits=logits, validate_args=False)
        self.total_count = base.total_count
        if probs is not None:
            self.probs = base.probs
        else:
            self.logits = base.logits
        super().__init__(base, gate=gate, gate_logits=gate_logits, validate_args=validate_args)

    @lazy_property
    def probs(self):
        return self.base_dist.probs

    @lazy_property
    def logits(self):
        return self.base_dist.logits

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if "probs" in self.__dict__:
            count_kwargs = {"probs": self.probs.expand(batch_shape)}
        else:
            count_kwargs = {"logits": self.logits.expand(batch_shape)}
        return ZeroInflatedNegativeBinomial(
            self.total_count.expand(batch_shape),
            validate_args=False,
            **count_kwargs,
            **self._gate_kwargs(batch_shape),
        )
