"""``scale`` multiplies log-densities; ``mask`` switches them off elementwise."""

import numbers

import torch

from probpl.poutine.messenger import Messenger


class ScaleMessenger(Messenger):
    """Multiply the log-density of every site inside by ``scale`` (positive)."""

    def __init__(self, scale):
        super().__init__()
        if isinstance(scale, torch.Tensor):
            if not torch._C._get_tracing_state() and (scale <= 0).any():
                raise ValueError(f"scale must be positive, got {scale}")
        elif not isinstance(scale, numbers.Number) or scale <= 0:
            raise ValueError(f"scale must be a positive number or tensor, got {scale!r}")
        self.scale = scale

    def _process_message(self, msg):
        msg["scale"] = self.scale * msg["scale"]


class MaskMessenger(Messenger):
    """Keep log-density terms where ``mask`` is true, drop the others.

    :param mask: a bool or a bool tensor broadcastable to the sites' batch shapes.
    """

    def __init__(self, mask):
        super().__init__()
        if isinstance(mask, torch.Tensor):
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        elif not isinstance(mask, bool):
            raise ValueError(f"mask must be a bool or a bool tensor, got {type(mask).__name__}")
        self.mask = mask

    def _process_message(self, msg):
        msg["mask"] = self.mask if msg["mask"] is None else self.mask & msg["mask"]
