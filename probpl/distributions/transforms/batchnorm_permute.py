"""Volume bookkeeping flows: ``BatchNorm`` (affine normalisation by batch
statistics) and ``Permute`` (reorder coordinates, volume preserving).
"""

import torch

from .. import constraints
from .torch_transform import TransformModule


class BatchNorm(TransformModule):
    """Batch normalisation as a bijection.

    The inverse direction (data to base space, as in density estimation)
    normalises ``y`` by its batch statistics in training mode, updating
    running averages, and by the running averages in eval mode:
    ``x = (y - mean) / sqrt(var + epsilon) * gamma + beta``.  The forward
    direction undoes it with the same statistics.

    :param int input_dim: event size.
    :param float momentum: weight of the newest batch in the running averages.
    :param float epsilon: added to the variance.

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP" (2017).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1

    def __init__(self, input_dim, momentum=0.1, epsilon=1e-5):
        super().__init__(cache_size=1)
        self.input_dim = input_dim
        self.gamma = torch.nn.Parameter(torch.ones(input_dim))
        self.beta = torch.nn.Parameter(torch.zeros(input_dim))
        self.momentum = momentum
        self.epsilon = epsilon
        self.register_buffer("moving_mean", torch.zeros(input_dim))
        self.register_buffer("moving_variance", torch.ones(input_dim))

    @property
    def constrained_gamma(self):
        # Keep the scale positive so the map stays monotone.
        return torch.nn.functional.softplus(self.gamma) + 1e-6

    def _stats(self, y=None):
        if self.training and y is not None:
            flat = y.reshape(-1, self.input_dim)
            mean, var = flat.mean(0), flat.var(0, unbiased=False)
            with torch.no_grad():
                self.moving_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.moving_variance.mul_(1 - self.momentum).add_(self.momentum * var)
            self._batch_stats = (mean, var)
            return mean, var
        if self.training and getattr(self, "_batch_stats", None) is not None:
            return self._batch_stats
        return self.moving_mean, self.moving_variance

    def _call(self, x):
        mean, var = self._stats()
        return (x - self.beta) / self.constrained_gamma * torch.sqrt(var + self.epsilon) + mean

    def _inverse(self, y):
        mean, var = self._stats(y)
        return (y - mean) / torch.sqrt(var + self.epsilon) * self.constrained_gamma + self.beta

    def log_abs_det_jacobian(self, x, y):
        _, var = self._stats()
        log_det = 0.5 * torch.log(var + self.epsilon) - torch.log(self.constrained_gamma)
        return log_det.sum(-1).expand(x.shape[:-1])


class Permute(torch.distributions.transforms.Transform):
    """Reorder coordinates along ``dim``: ``y = x[..., permutation]``.

    :param torch.LongTensor permutation: a permutation of ``range(n)``.
    :param int dim: the (negative) event dim to permute.
    """

    bijective = True
    volume_preserving = True

    def __init__(self, permutation, *, dim=-1, cache_size=1):
        super().__init__(cache_size=cache_size)
        if dim >= 0:
            raise ValueError(f"Permute: dim must be negative, got {dim}")
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        if not torch.equal(permutation.sort().values, torch.arange(len(permutation))):
            raise ValueError(f"Permute: {permutation.tolist()} is not a permutation")
        self.permutation = permutation
        self.dim = dim
        self.inv_permutation = torch.empty_like(permutation)
        self.inv_permutation[permutation] = torch.arange(len(permutation))

    @constraints.dependent_property(is_discrete=False)
    def domain(self):
        return constraints.independent(constraints.real, -self.dim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self):
        return constraints.independent(constraints.real, -self.dim)

    def _call(self, x):
        return x.index_select(self.dim, self.permutation.to(x.device))

    def _inverse(self, y):
        return y.index_select(self.dim, self.inv_permutation.to(y.device))

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[: x.dim() + self.dim])

    def with_cache(self, cache_size=1):
        if cache_size == self._cache_size:
            return self
        return Permute(self.permutation, dim=self.dim, cache_size=cache_size)
