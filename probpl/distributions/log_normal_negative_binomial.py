"""``LogNormalNegativeBinomial``: a negative binomial whose logits carry
log-normal multiplicative noise, integrated out by Gauss-Hermite quadrature.
"""

import math

import numpy as np
import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch import NegativeBinomial
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


class LogNormalNegativeBinomial(TorchDistribution):
    """``y ~ NegativeBinomial(total_count, logits=logits + s * eps)`` with
    ``eps ~ Normal(0, 1)`` marginalised.

    :param total_count: positive number of failures.
    :param logits: base log-odds.
    :param multiplicative_noise_scale: positive noise scale ``s``.
    :param int num_quad_points: Gauss-Hermite nodes used for the integral.
    """

    arg_constraints = {
        "total_count": constraints.greater_than_eq(0),
        "logits": constraints.real,
        "multiplicative_noise_scale": constraints.positive,
    }
    support = constraints.nonnegative_integer

    def __init__(self, total_count, logits, multiplicative_noise_scale, *, num_quad_points=8,
                 validate_args=None):
        if num_quad_points < 1:
            raise ValueError(f"num_quad_points must be positive, got {num_quad_points}")
        total_count, logits, noise = broadcast_all(total_count, logits, multiplicative_noise_scale)
        nodes, weights = np.polynomial.hermite.hermgauss(num_quad_points)
        # int f(s eps) N(eps) d eps = sum_i w_i / sqrt(pi) f(sqrt(2) s x_i)
        self.quad_points = logits.new_tensor(nodes * math.sqrt(2.0))
        self.log_weights = logits.new_tensor(np.log(weights) - 0.5 * math.log(math.pi))
        self.total_count, self.logits = total_count, logits
        self.multiplicative_noise_scale = noise
        self.num_quad_points = num_quad_points
        self.nb_dist = NegativeBinomial(
            total_count.unsqueeze(-1),
            logits=logits.unsqueeze(-1) + noise.unsqueeze(-1) * self.quad_points,
            validate_args=False,
        )
        batch_shape = broadcast_shape(noise.shape, self.nb_dist.batch_shape[:-1])
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return LogNormalNegativeBinomial(
            self.total_count.expand(batch_shape),
            self.logits.expand(batch_shape),
            self.multiplicative_noise_scale.expand(batch_shape),
            num_quad_points=self.num_quad_points,
            validate_args=False,
        )

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (self.log_weights + self.nb_dist.log_prob(value.unsqueeze(-1))).logsumexp(-1)

    def sample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        eps = torch.randn(shape, dtype=self.logits.dtype, device=self.logits.device)
        logits = self.logits + self.multiplicative_noise_scale * eps
        return NegativeBinomial(self.total_count, logits=logits, validate_args=False).sample()

    @property
    def mean(self):
        s2 = self.multiplicative_noise_scale.pow(2)
        return self.total_count * torch.exp(self.logits + 0.5 * s2)

    @property
    def variance(self):
        s2 = self.multiplicative_noise_scale.pow(2)
        m = self.mean
        return m + (torch.exp(s2) * (1 + 1 / self.total_count) - 1) * m.pow(2)
