"""Bijections behind the extra constraints: ordered vectors, correlation and
Cholesky-factor matrices, unit-norm vectors.

Each transform declares ``domain``/``codomain`` constraints and, when it is a
bijection, ``log_abs_det_jacobian`` with respect to the free coordinates of
its domain and codomain.
"""

import torch
import torch.nn.functional as F
from torch.distributions.transforms import Transform

from .. import constraints


class OrderedTransform(Transform):
    """Map a real vector to a strictly increasing one: ``y_0 = x_0``,
    ``y_i = y_{i-1} + exp(x_i)``.
    """

    domain = constraints.real_vector
    codomain = constraints.ordered_vector
    bijective = True
    sign = +1

    def __eq__(self, other):
        return isinstance(other, OrderedTransform)

    def _call(self, x):
        z = torch.cat([x[..., :1], x[..., 1:].exp()], dim=-1)
        return torch.cumsum(z, dim=-1)

    def _inverse(self, y):
        return torch.cat([y[..., :1], (y[..., 1:] - y[..., :-1]).log()], dim=-1)

    def log_abs_det_jacobian(self, x, y):
        return x[..., 1:].sum(-1)


class CholeskyTransform(Transform):
    """Map a positive-definite matrix to its lower Cholesky factor."""

    domain = constraints.positive_definite
    codomain = constraints.lower_cholesky
    bijective = True

    def __eq__(self, other):
        return isinstance(other, CholeskyTransform)

    def _call(self, x):
        return torch.linalg.cholesky(x)

    def _inverse(self, y):
        return y @ y.transpose(-1, -2)

    def log_abs_det_jacobian(self, x, y):
        # d(LL^T)/dL over the lower triangle has determinant 2^n prod L_ii^(n-i+1).
        n = y.shape[-1]
        order = torch.arange(n, 0, -1, dtype=y.dtype, device=y.device)
        diag = y.diagonal(dim1=-2, dim2=-1)
        return -(n * torch.log(y.new_tensor(2.0)) + (order * diag.log()).sum(-1))


class CorrMatrixCholeskyTransform(CholeskyTransform):
    """Map a correlation matrix to its Cholesky factor (unit-norm rows).

    The Jacobian is taken over the strictly lower triangles of both matrices.
    """

    domain = constraints.corr_matrix
    codomain = constraints.corr_cholesky

    def __eq__(self, other):
        return isinstance(other, CorrMatrixCholeskyTransform)

    def log_abs_det_jacobian(self, x, y):
        # The map L -> L L^T scales volume by prod_i L_ii^(n-1-i), 0-based.
        n = y.shape[-1]
        order = torch.arange(n - 1, -1, -1, dtype=y.dtype, device=y.device)
        diag = y.diagonal(dim1=-2, dim2=-1)
        return -(order * diag.log()).sum(-1)


class SoftplusLowerCholeskyTransform(Transform):
    """Map a square matrix to a lower-triangular one with softplus-positive diagonal.

    Entries above the diagonal are ignored, so this is not a bijection.
    """

    domain = constraints.independent(constraints.real, 2)
    codomain = constraints.softplus_lower_cholesky

    def __eq__(self, other):
        return isinstance(other, SoftplusLowerCholeskyTransform)

    def _call(self, x):
        diag = F.softplus(x.diagonal(dim1=-2, dim2=-1))
        return x.tril(-1) + diag.diag_embed()

    def _inverse(self, y):
        diag = y.diagonal(dim1=-2, dim2=-1)
        return y.tril(-1) + (diag + torch.log(-torch.expm1(-diag))).diag_embed()


class UnitLowerCholeskyTransform(Transform):
    """Map a square matrix to a lower-triangular one with unit diagonal."""

    domain = constraints.independent(constraints.real, 2)
    codomain = constraints.unit_lower_cholesky

    def __eq__(self, other):
        return isinstance(other, UnitLowerCholeskyTransform)

    def _call(self, x):
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return x.tril(-1) + eye

    def _inverse(self, y):
        return y.tril(-1)


class Normalize(Transform):
    """Project a nonzero vector onto the unit sphere (not a bijection)."""

    domain = constraints.real_vector
    codomain = constraints.sphere

    def __init__(self, p=2, cache_size=0):
        super().__init__(cache_size=cache_size)
        self.p = p

    def __eq__(self, other):
        return isinstance(other, Normalize) and other.p == self.p

    def _call(self, x):
        return F.normalize(x, p=self.p, dim=-1)

    def _inverse(self, y):
        return y
