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
