"""probpl's distributions library: every ``torch.distributions`` distribution
with Pyro's behaviours (``expand``, ``to_event``, ``mask``, ``__call__``,
``score_parts``), the extra distributions Pyro programs use, constraints,
transforms and normalizing flows, and the KL registry.

This package never imports the effect-handler stack.
"""

from torch.distributions import Distribution

from . import constraints, kl, transforms
from .conjugate import BetaBinomial, DirichletMultinomial, GammaPoisson
from .delta import Delta
from .empirical import Empirical
from .folded import FoldedDistribution
from .gaussian_hmm import GaussianHMM
from .hmm import DiscreteHMM
from .kl import kl_divergence, register_kl
from .laplace import AsymmetricLaplace, SoftLaplace
from .lkj import LKJ
from .log_normal_negative_binomial import LogNormalNegativeBinomial
from .mixture import MaskedMixture, MixtureOfDiagNormals
from .multivariate_studentt import MultivariateStudentT
from .ordered_logistic import OrderedLogistic
from .projected_normal import ProjectedNormal
from .rejector import Rejector
from .score_parts import ScoreParts
from .sine_bivariate_von_mises import SineBivariateVonMises
from .stable import Stable
from .torch import *  # noqa: F401,F403
from .torch import __all__ as _torch_all
from .torch_distribution import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    TorchDistribution,
    TorchDistributionMixin,
)
from .transforms import biject_to, transform_to
from .truncated_normal import TruncatedNormal
from .unit import ImproperUniform, Unit
from .util import enable_validation, is_validation_enabled
from .zero_inflated import (
    ZeroInflatedDistribution,
    ZeroInflatedNegativeBinomial,
    ZeroInflatedPoisson,
)

__all__ = [
    "AsymmetricLaplace",
    "BetaBinomial",
    "DirichletMultinomial",
    "DiscreteHMM",
    "Empirical",
    "FoldedDistribution",
    "GammaPoisson",
    "GaussianHMM",
    "ImproperUniform",
    "LKJ",
    "LogNormalNegativeBinomial",
    "MaskedMixture",
    "MixtureOfDiagNormals",
    "MultivariateStudentT",
    "OrderedLogistic",
    "ProjectedNormal",
    "Rejector",
    "SineBivariateVonMises",
    "SoftLaplace",
    "Stable",
    "TruncatedNormal",
    "Unit",
    "ZeroInflatedDistribution",
    "ZeroInflatedNegativeBinomial",
    "ZeroInflatedPoisson",
    "Delta",
    "Distribution",
    "ExpandedDistribution",
    "Independent",
    "MaskedDistribution",
    "ScoreParts",
    "TorchDistribution",
    "TorchDistributionMixin",
    "biject_to",
    "constraints",
    "enable_validation",
    "is_validation_enabled",
    "kl",
    "kl_divergence",
    "register_kl",
    "transform_to",
    "transforms",
]
__all__ += [name for name in _torch_all if name not in __all__]
