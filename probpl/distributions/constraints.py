"""Constraints: torch's, re-exported, plus the extras Pyro programs use.

A constraint says which values are valid for a parameter or a sample;
:mod:`probpl.distributions.transforms` maps each one to a bijection from
unconstrained space (``biject_to``).
"""

import torch
from torch.distributions.constraints import *  # noqa: F401,F403
from torch.distributions.constraints import (
    Constraint,
    corr_cholesky,
    lower_cholesky,
    positive,
)
from torch.distributions.constraints import __all__ as _torch_all


class _Integer(Constraint):
    """Any integer-valued number (stored in a float or int tensor)."""

    is_discrete = True

    def check(self, value):
        return value % 1 == 0


class _Sphere(Constraint):
    """Unit-norm vectors in the rightmost dim."""

    event_dim = 1
    reltol = 10.0  # tolerance in units of the dtype's eps, scaled by dimension

    def check(self, value):
        eps = torch.finfo(value.dtype).eps
        norm = torch.linalg.vector_norm(value, dim=-1)
        return (norm - 1).abs() < eps**0.5 * self.reltol * max(value.shape[-1], 1) ** 0.5


class _CorrMatrix(Constraint):
    """Symmetric positive-definite matrices with unit diagonal."""

    event_dim = 2

    def check(self, value):
        tol = torch.finfo(value.dtype).eps ** 0.5 * 10
        unit_diag = (value.diagonal(dim1=-2, dim2=-1) - 1).abs().le(tol).all(-1)
        return unit_diag & positive_definite.check(value)  # noqa: F405


class _OrderedVector(Constraint):
    """Vectors whose entries strictly increase along the rightmost dim."""

    event_dim = 1

    def check(self, value):
        if value.shape[-1] < 2:
            return torch.ones_like(value[..., 0], dtype=torch.bool)
        return (value[..., 1:] > value[..., :-1]).all(-1)


class _PositiveOrderedVector(_OrderedVector):
    """Strictly increasing vectors of positive entries."""

    def check(self, value):
        return super().check(value) & (value > 0).all(-1)


class _SoftplusPositive(type(positive)):
    """Positive reals, mapped from unconstrained space by softplus instead of exp."""

    def __init__(self):
        super().__init__(lower_bound=0.0)


class _SoftplusLowerCholesky(type(lower_cholesky)):
    """Lower-triangular matrices with positive diagonal, via softplus on the diagonal."""


class _UnitLowerCholesky(Constraint):
    """Lower-triangular matrices with unit diagonal."""

    event_dim = 2

    def check(self, value):
        lower = (value.tril() == value).flatten(-2).all(-1)
        unit = (value.diagonal(dim1=-2, dim2=-1) == 1).all(-1)
        return lower & unit


corr_matrix = _CorrMatrix()
integer = _Integer()
ordered_vector = _OrderedVector()
positive_ordered_vector = _PositiveOrderedVector()
sphere = _Sphere()
softplus_positive = _SoftplusPositive()
softplus_lower_cholesky = _SoftplusLowerCholesky()
unit_lower_cholesky = _UnitLowerCholesky()
corr_cholesky_constraint = corr_cholesky  # older Pyro name

__all__ = list(_torch_all) + [
    "corr_cholesky_constraint",
    "corr_matrix",
    "integer",
    "ordered_vector",
    "positive_ordered_vector",
    "softplus_lower_cholesky",
    "softplus_positive",
    "sphere",
    "unit_lower_cholesky",
]
