"""Neural networks in models and guides: ``PyroModule`` (modules whose
attributes can be params or random variables) and the autoregressive and dense
networks used by normalizing flows."""

from probpl.nn.auto_reg_nn import (
    AutoRegressiveNN,
    ConditionalAutoRegressiveNN,
    ConditionalDenseNN,
    DenseNN,
    MaskedLinear,
)
from probpl.nn.module import (
    PyroModule,
    PyroModuleList,
    PyroParam,
    PyroSample,
    clear,
    pyro_method,
    to_pyro_module_,
)

__all__ = [
    "AutoRegressiveNN", "ConditionalAutoRegressiveNN", "ConditionalDenseNN", "DenseNN",
    "MaskedLinear", "PyroModule", "PyroModuleList", "PyroParam", "PyroSample", "clear",
    "pyro_method", "to_pyro_module_",
]
