"""Small helpers that inference code (and Pyro programs) import from
``probpl.infer.util``."""

import torch

from probpl.util import is_validation_enabled


def torch_item(x):
    """A Python number from a 0-dim tensor (or the number itself)."""
    return x.item() if isinstance(x, torch.Tensor) else x


def torch_backward(x, retain_graph=None):
    """Backpropagate from ``x`` if it is a tensor that requires grad."""
    if isinstance(x, torch.Tensor) and x.requires_grad:
        x.backward(retain_graph=retain_graph)


try:  # the call that torch.autograd.backward ends in
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - a torch without it takes the public path
    _engine_run_backward = None


def scalar_backward(loss, retain_graph=None):
    """``loss.backward(retain_graph=retain_graph)`` for a 0-dim loss.

    For a plain floating-point tensor (no subclass, no functorch transform
    active) it calls the autograd engine as ``torch.autograd.backward`` would,
    without that function's general argument handling (some ten microseconds, a
    noticeable share of an SVI step on a small model); anything else takes
    the public path."""
    if (
        _engine_run_backward is None
        or type(loss) is not torch.Tensor
        or loss.dim() != 0
        or not loss.dtype.is_floating_point
        or torch._C._are_functorch_transforms_active()
    ):
        loss.backward(retain_graph=retain_graph)
        return
    _engine_run_backward(
        (loss,),
        (torch.ones_like(loss),),
        bool(retain_graph),
        False,
        (),
        allow_unreachable=True,
        accumulate_grad=True,
    )


def zero_grads(tensors):
    """Drop the gradients of ``tensors``."""
    for p in tensors:
        p.grad = None


def get_plate_stacks(trace):
    """``{site name: the site's enclosing vectorised plate frames}`` for sample sites."""
    return {
        name: [f for f in site["cond_indep_stack"] if f.vectorized]
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
    }


__all__ = ["get_plate_stacks", "is_validation_enabled", "torch_backward", "torch_item",
           "zero_grads"]
