"""Compound (conjugate-marginal) count distributions: ``BetaBinomial``,
``GammaPoisson`` and ``DirichletMultinomial``, with closed-form densities.
"""

import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch import Beta, Binomial, Dirichlet, Gamma, Multinomial, Poisson
from .torch_distribution import TorchDistribution


def _log_beta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _log_binomial(n, k):
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


class BetaBinomial(TorchDistribution):
    """A Binomial whose success probability is drawn from ``Beta(concentration1,
    concentration0)``, marginalised.

    :param concentration1: first Beta concentration (alpha), positive.
    :param concentration0: second Beta concentration (beta), positive.
    :param total_count: number of trials, a non-negative integer.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "total_count": constraints.nonnegative_integer,
    }
    has_enumerate_support = True

    def __init__(self, concentration1, concentration0, total_count=1, validate_args=None):
        self.concentration1, self.concentration0, self.total_count = broadcast_all(
            concentration1, concentration0, total_count
        )
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.total_count)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BetaBinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        new.total_count = self.total_count.expand(batch_shape)
        super(BetaBinomial, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()):
        probs = Beta(self.concentration1, self.concentration0).sample(sample_shape)
        return Binomial(self.total_count, probs).sample()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b, n = self.concentration1, self.concentration0, self.total_count
        return _log_binomial(n, value) + _log_beta(value + a, n - value + b) - _log_beta(a, b)

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return self.total_count * a / (a + b)

    @property
    def variance(self):
        a, b, n = self.concentration1, self.concentration0, self.total_count
        ab = a + b
        return n * a * b * (ab + n) / (ab.pow(2) * (ab + 1))

    def enumerate_support(self, expand=True):
        return _enumerate_counts(self.total_count, self.batch_shape, expand)


def _enumerate_counts(total_count, batch_shape, expand):
    n = int(total_count.max())
    if not torch.all(total_count == n):
        raise NotImplementedError("enumerate_support needs a total_count equal across the batch")
    values = torch.arange(n + 1, dtype=total_count.dtype, device=total_count.device)
    values = values.view((-1,) + (1,) * len(batch_shape))
    if expand:
        values = values.expand((-1,) + tuple(batch_shape))
    return values


class GammaPoisson(TorchDistribution):
    """A Poisson whose rate is drawn from ``Gamma(concentration, rate)``,
    marginalised (a negative binomial).

    :param concentration: Gamma shape, positive.
    :param rate: Gamma rate, positive.
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GammaPoisson, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        super(GammaPoisson, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()):
        rate = Gamma(self.concentration, self.rate).sample(sample_shape)
        return Poisson(rate).sample()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        alpha, beta = self.concentration, self.rate
        log_norm = torch.lgamma(value + alpha) - torch.lgamma(alpha) - torch.lgamma(value + 1)
        # log(beta / (1 + beta)) and log(1 / (1 + beta)) via log1p for small beta.
        return (
            log_norm
            + alpha * (beta.log() - torch.log1p(beta))
            - value * torch.log1p(beta)
        )

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def variance(self):
        return self.concentration / self.rate.pow(2) * (1 + self.rate)


class DirichletMultinomial(TorchDistribution):
    """A Multinomial whose probabilities are drawn from ``Dirichlet(concentration)``,
    marginalised.

    :param concentration: positive, shape ``batch_shape + (K,)``.
    :param total_count: number of trials, a non-negative integer.
    """

    arg_constraints = {
        "concentration": constraints.independent(constraints.positive, 1),
        "total_count": constraints.nonnegative_integer,
    }

    def __init__(self, concentration, total_count=1, is_sparse=False, validate_args=None):
        if concentration.dim() < 1:
            raise ValueError("DirichletMultinomial: concentration must have shape (..., K)")
        batch_shape = concentration.shape[:-1]
        if not isinstance(total_count, torch.Tensor):
            total_count = concentration.new_tensor(total_count)
        batch_shape = torch.broadcast_shapes(batch_shape, total_count.shape)
        self.concentration = concentration.expand(batch_shape + concentration.shape[-1:])
        self.total_count = total_count.expand(batch_shape)
        self.is_sparse = is_sparse
        super().__init__(batch_shape, concentration.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.multinomial(self.total_count)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DirichletMultinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape + self.event_shape)
        new.total_count = self.total_count.expand(batch_shape)
        new.is_sparse = self.is_sparse
        super(DirichletMultinomial, new).__init__(batch_shape, self.event_shape, False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()):
        probs = Dirichlet(self.concentration).sample(sample_shape)
        n = self.total_count.max().item()
        if not torch.all(self.total_count == n):
            raise NotImplementedError("DirichletMultinomial.sample needs a uniform total_count")
        return Multinomial(int(n), probs).sample()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        alpha = self.concentration
        alpha0 = alpha.sum(-1)
        n = self.total_count
        return (
            torch.lgamma(alpha0)
            + torch.lgamma(n + 1)
            - torch.lgamma(n + alpha0)
            + (torch.lgamma(value + alpha) - torch.lgamma(alpha) - torch.lgamma(value + 1)).sum(-1)
        )

    @property
    def mean(self):
        alpha = self.concentration
        return self.total_count.unsqueeze(-1) * alpha / alpha.sum(-1, keepdim=True)

    @property
    def variance(self):
        alpha = self.concentration
        alpha0 = alpha.sum(-1, keepdim=True)
        n = self.total_count.unsqueeze(-1)
        p = alpha / alpha0
        return n * p * (1 - p) * (n + alpha0) / (1 + alpha0)
