"""``MultivariateStudentT`` with a Cholesky scale factor."""

import math

import torch
from torch.distributions.utils import lazy_property

from . import constraints
from .torch import Chi2
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


class MultivariateStudentT(TorchDistribution):
    """The multivariate Student's t: ``loc + scale_tril @ z * sqrt(df / g)`` with
    ``z ~ N(0, I)`` and ``g ~ Chi2(df)``.

    :param df: degrees of freedom, positive, shape ``batch_shape``.
    :param torch.Tensor loc: shape ``batch_shape + (D,)``.
    :param torch.Tensor scale_tril: lower-Cholesky scale, shape ``batch_shape + (D, D)``.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real_vector,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, df, loc, scale_tril, validate_args=None):
        dim = loc.size(-1)
        if scale_tril.shape[-2:] != (dim, dim):
            raise ValueError(
                f"MultivariateStudentT: scale_tril shape {tuple(scale_tril.shape)} must end in "
                f"({dim}, {dim}) to match loc shape {tuple(loc.shape)}"
            )
        if not isinstance(df, torch.Tensor):
            df = loc.new_tensor(df)
        batch_shape = torch.Size(
            broadcast_shape(df.shape, loc.shape[:-1], scale_tril.shape[:-2])
        )
        self.df = df.expand(batch_shape)
        self.loc = loc.expand(batch_shape + (dim,))
        self.scale_tril = scale_tril.expand(batch_shape + (dim, dim))
        self._chi2 = Chi2(self.df)
        super().__init__(batch_shape, torch.Size((dim,)), validate_args=validate_args)

    @lazy_property
    def covariance_matrix(self):
        # The scale matrix, not the covariance: matching the torch attribute name.
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        dim = self.event_shape[0]
        return MultivariateStudentT(
            self.df.expand(batch_shape),
            self.loc.expand(batch_shape + (dim,)),
            self.scale_tril.expand(batch_shape + (dim, dim)),
            validate_args=False,
        )

    def rsample(self, sample_shape=torch.Size()):
        shape = self.shape(sample_shape)
        z = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        g = self._chi2.rsample(sample_shape)
        y = z * torch.rsqrt(g / self.df).unsqueeze(-1)
        return self.loc + (self.scale_tril @ y.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        n = self.event_shape[0]
        diff = (value - self.loc).unsqueeze(-1)
        tril = self.scale_tril.expand(diff.shape[:-2] + (n, n))
        y = torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)
        maha = y.pow(2).sum(-1)
        half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        df = self.df
        return (
            torch.lgamma((df + n) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * n * (df.log() + math.log(math.pi))
            - half_log_det
            - 0.5 * (df + n) * torch.log1p(maha / df)
        )

    @property
    def mean(self):
        m = self.loc.clone()
        m[self.df <= 1, :] = math.nan
        return m

    @property
    def variance(self):
        m = self.scale_tril.pow(2).sum(-1) * (self.df / (self.df - 2)).unsqueeze(-1)
        m[(self.df <= 2) & (self.df > 1), :] = math.inf
        m[self.df <= 1, :] = math.nan
        return m
