"""Optimizers for inference: every ``torch.optim`` optimizer, wrapped so it
acts on the parameters that inference discovers."""

import torch

from probpl.optim.optim import PyroOptim, _make_wrapper

__all__ = ["PyroOptim"]

for _name in dir(torch.optim):
    _cls = getattr(torch.optim, _name)
    if isinstance(_cls, type) and issubclass(_cls, torch.optim.Optimizer) and _cls is not \
            torch.optim.Optimizer:
        globals()[_name] = _make_wrapper(_cls)
        __all__.append(_name)
del _name, _cls
