"""Optimizers for inference: every ``torch.optim`` optimizer and learning-rate
scheduler, wrapped so it acts on the parameters that inference discovers, plus
:class:`ClippedAdam`."""

import torch

from probpl.optim.clipped_adam import ClippedAdam as _ClippedAdamTorch
from probpl.optim.lr_scheduler import PyroLRScheduler, _make_scheduler_wrapper, scheduler_classes
from probpl.optim.optim import PyroOptim, _make_wrapper

__all__ = ["PyroLRScheduler", "PyroOptim"]

for _name in dir(torch.optim):
    _cls = getattr(torch.optim, _name)
    if isinstance(_cls, type) and issubclass(_cls, torch.optim.Optimizer) and _cls is not \
            torch.optim.Optimizer:
        globals()[_name] = _make_wrapper(_cls)
        __all__.append(_name)

ClippedAdam = _make_wrapper(_ClippedAdamTorch)
__all__.append("ClippedAdam")

for _name, _cls in scheduler_classes().items():
    if _name not in globals():
        globals()[_name] = _make_scheduler_wrapper(_cls)
        __all__.append(_name)
del _name, _cls
