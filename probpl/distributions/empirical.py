"""``Empirical``: a weighted set of samples treated as a distribution."""

import torch

from . import constraints
from .torch import Categorical
from .torch_distribution import TorchDistribution


class Empirical(TorchDistribution):
    """A discrete distribution on a weighted collection of samples.

    :param torch.Tensor samples: shape ``batch_shape + (num_samples,) + event_shape``.
    :param torch.Tensor log_weights: unnormalised log weights, shape
        ``batch_shape + (num_samples,)``.
    """

    arg_constraints = {}
    support = constraints.real
    has_enumerate_support = True

    def __init__(self, samples, log_weights, validate_args=None):
        self._samples = samples
        self._log_weights = log_weights
        sample_dim = log_weights.dim() - 1
        if samples.shape[: sample_dim + 1] != log_weights.shape:
            raise ValueError(
                f"Empirical: samples shape {tuple(samples.shape)} must start with the "
                f"log_weights shape {tuple(log_weights.shape)}"
            )
        self._sample_dim = sample_dim
        self._categorical = Categorical(logits=log_weights)
        batch_shape = log_weights.shape[:-1]
        event_shape = samples.shape[sample_dim + 1 :]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def sample_size(self):
        """The number of samples."""
        return self._log_weights.shape[-1]

    @property
    def log_weights(self):
        return self._log_weights

    def _normalised_log_weights(self):
        return self._log_weights - self._log_weights.logsumexp(-1, keepdim=True)

    def sample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        idx = self._categorical.sample(sample_shape)  # sample_shape + batch_shape
        samples = self._samples.expand(sample_shape + self._samples.shape)
        index = idx.reshape(idx.shape + (1,) * (1 + self.event_dim))
        index = index.expand(idx.shape + (1,) + self.event_shape)
        return samples.gather(len(sample_shape) + self._sample_dim, index).squeeze(
            len(sample_shape) + self._sample_dim
        )

    def log_prob(self, value):
        if self._validate_args and value.shape != self.batch_shape + self.event_shape:
            raise ValueError(
                f"Empirical.log_prob: value shape must be "
                f"{tuple(self.batch_shape + self.event_shape)}, got {tuple(value.shape)}"
            )
        value = value.unsqueeze(self._sample_dim)
        match = self._samples == value
        if self.event_dim:
            match = match.flatten(-self.event_dim).all(-1)
        log_w = self._normalised_log_weights()
        return torch.where(match, log_w, torch.full_like(log_w, -torch.inf)).logsumexp(-1)

    def _weighted_mean(self, x):
        w = self._normalised_log_weights().exp()
        w = w.reshape(w.shape + (1,) * self.event_dim)
        return (w * x).sum(self._sample_dim)

    @property
    def mean(self):
        if not self._samples.is_floating_point():
            raise ValueError("Empirical.mean needs floating point samples")
        return self._weighted_mean(self._samples)

    @property
    def variance(self):
        if not self._samples.is_floating_point():
            raise ValueError("Empirical.variance needs floating point samples")
        dev = self._samples - self.mean.unsqueeze(self._sample_dim)
        return self._weighted_mean(dev.pow(2))

    def enumerate_support(self, expand=True):
        # Samples move to the leftmost dim, as enumeration expects.
        values = self._samples.movedim(self._sample_dim, 0)
        if not expand:
            raise NotImplementedError("Empirical.enumerate_support needs expand=True")
        return values
