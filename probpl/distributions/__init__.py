"""probpl's distributions library: every ``torch.distributions`` distribution
with Pyro's behaviours (``expand``, ``to_event``, ``mask``, ``__call__``,
``score_parts``), the extra distributions Pyro programs use, constraints,
transforms and normalizing flows, and the KL registry.

This package never imports the effect-handler stack.
"""

from torch.distributions import Distribution

from . import constraints, kl, transforms
from .delta import Delta
from .kl import kl_divergence, register_kl
from .score_parts import ScoreParts
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
from .util import enable_validation, is_validation_enabled

__all__ = [
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
