"""probpl: probabilistic programming with Pyro's API on PyTorch.

Models are Python functions that call :func:`sample` and :func:`param`;
effect handlers in :mod:`probpl.poutine` interpret them, and the inference
engines in :mod:`probpl.infer` are built on those handlers.
"""

from probpl import distributions, poutine
from probpl.params import ParamStoreDict
from probpl.poutine.runtime import get_plates
from probpl.primitives import (
    clear_param_store,
    deterministic,
    factor,
    get_param_store,
    markov,
    module,
    param,
    plate,
    plate_stack,
    sample,
    subsample,
)
from probpl.util import enable_validation, is_validation_enabled, set_rng_seed, validation_enabled

__version__ = "0.1.0"

__all__ = [
    "ParamStoreDict", "clear_param_store", "deterministic", "distributions", "enable_validation",
    "factor", "get_param_store", "get_plates", "is_validation_enabled", "markov", "module",
    "param", "plate", "plate_stack", "poutine", "sample", "set_rng_seed", "subsample",
    "validation_enabled",
]
