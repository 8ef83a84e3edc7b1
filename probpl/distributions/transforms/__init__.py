"""Transforms: torch's, re-exported, the bijections behind probpl's extra
constraints, and normalizing flows.

``biject_to(constraint)`` returns a bijection from unconstrained space onto
the constraint's set (used by MCMC and autoguides); ``transform_to`` returns a
possibly non-bijective map onto it.  Both are torch's registries, extended
here for the constraints in :mod:`probpl.distributions.constraints`.
"""

from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import *  # noqa: F401,F403
from torch.distributions.transforms import (
    ComposeTransform,
    CorrCholeskyTransform,
    ExpTransform,
    SoftplusTransform,
)
from torch.distributions.transforms import __all__ as _torch_all

from .. import constraints
from .affine_flows import (
    AffineAutoregressive,
    AffineCoupling,
    affine_autoregressive,
    affine_coupling,
)
from .basic import (
    CholeskyTransform,
    CorrMatrixCholeskyTransform,
    Normalize,
    OrderedTransform,
    SoftplusLowerCholeskyTransform,
    UnitLowerCholeskyTransform,
)
from .batchnorm_permute import BatchNorm, Permute
from .planar_radial import Planar, Radial
from .spline import Spline
from .torch_transform import ComposeTransformModule, TransformModule


def _register_both(constraint_type, factory):
    biject_to.register(constraint_type, factory)
    transform_to.register(constraint_type, factory)


_register_both(type(constraints.ordered_vector), lambda c: OrderedTransform())
_register_both(
    type(constraints.positive_ordered_vector),
    lambda c: ComposeTransform([OrderedTransform(), ExpTransform()]),
)
_register_both(
    type(constraints.corr_matrix),
    lambda c: ComposeTransform([CorrCholeskyTransform(), CorrMatrixCholeskyTransform().inv]),
)
_register_both(type(constraints.softplus_positive), lambda c: SoftplusTransform())
transform_to.register(
    type(constraints.softplus_lower_cholesky), lambda c: SoftplusLowerCholeskyTransform()
)
transform_to.register(
    type(constraints.unit_lower_cholesky), lambda c: UnitLowerCholeskyTransform()
)
transform_to.register(type(constraints.sphere), lambda c: Normalize())

__all__ = list(_torch_all) + [
    "AffineAutoregressive",
    "AffineCoupling",
    "BatchNorm",
    "Permute",
    "Planar",
    "Radial",
    "Spline",
    "affine_autoregressive",
    "affine_coupling",
    "CholeskyTransform",
    "ComposeTransformModule",
    "CorrMatrixCholeskyTransform",
    "Normalize",
    "OrderedTransform",
    "SoftplusLowerCholeskyTransform",
    "TransformModule",
    "UnitLowerCholeskyTransform",
    "biject_to",
    "transform_to",
]
