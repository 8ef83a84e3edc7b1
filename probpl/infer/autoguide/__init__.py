"""Automatic guides: variational families built from a model's structure.

``AutoNormal`` and ``AutoDelta`` have parameters per latent site;
``AutoDiagonalNormal``, ``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal``,
``AutoLaplaceApproximation`` and the flow guides work on all latent sites packed
into one unconstrained vector. ``AutoGuideList`` combines guides, and
``AutoDiscreteParallel`` covers discrete sites summed out by enumeration.
"""

from probpl.infer.autoguide.continuous import (
    AutoContinuous,
    AutoDiagonalNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
)
from probpl.infer.autoguide.discrete import AutoDiscreteParallel
from probpl.infer.autoguide.flows import AutoIAFNormal, AutoNormalizingFlow
from probpl.infer.autoguide.guide_list import AutoCallable, AutoGuideList
from probpl.infer.autoguide.guides import AutoDelta, AutoGuide, AutoNormal
from probpl.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_generated,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)

__all__ = [
    "AutoCallable",
    "AutoContinuous",
    "AutoDelta",
    "AutoDiagonalNormal",
    "AutoDiscreteParallel",
    "AutoGuide",
    "AutoGuideList",
    "AutoIAFNormal",
    "AutoLaplaceApproximation",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
    "AutoNormalizingFlow",
    "init_to_feasible",
    "init_to_generated",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]
