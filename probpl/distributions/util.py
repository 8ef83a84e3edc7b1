"""Small shape and masking utilities shared by the distributions library.

Everything here is pure tensor bookkeeping: broadcasting shapes, summing
leading or trailing dims, and the cheap "is this tensor trivially 0/1" tests
that let hot paths skip needless arithmetic.
"""

import functools
import numbers

import torch


def broadcast_shape(*shapes, strict=False):
    """Broadcast shapes right-aligned, as numpy does.

    :param shapes: shapes (tuples or ``torch.Size``) to broadcast.
    :param bool strict: if True, only allow size-1 dims to broadcast (as
        :func:`torch.broadcast_shapes`); if False, also allow a missing dim.
    :returns: the broadcast shape.
    :rtype: tuple
    :raises ValueError: naming the shapes when they do not broadcast.
    """
    reversed_shape = []
    for shape in shapes:
        for i, size in enumerate(reversed(shape)):
            if i >= len(reversed_shape):
                reversed_shape.append(size)
            elif reversed_shape[i] == 1 and not strict:
                reversed_shape[i] = size
            elif reversed_shape[i] != size and (size != 1 or strict):
                raise ValueError(
                    "shape mismatch: objects cannot be broadcast to a single shape: {}".format(
                        " vs ".join(map(str, shapes))
                    )
                )
    return tuple(reversed(reversed_shape))


def expanded(t, shape):
    """``t`` viewed at ``shape`` (itself when it already has that shape)."""
    return t if t.shape == shape else t.expand(shape)


@functools.lru_cache(maxsize=4096)  # a loop expands alike; failures are not cached
def check_expand(old, new):
    """Raise unless a batch shape ``old`` can be expanded to ``new``."""
    n = len(old)
    if len(new) < n or any(o != 1 and o != s for o, s in zip(old, new[len(new) - n:])):
        raise RuntimeError(
            f"cannot expand a distribution with batch_shape {tuple(old)} to batch_shape "
            f"{tuple(new)}"
        )


def sum_rightmost(value, dim):
    """Sum out the ``dim`` rightmost dims of ``value``.

    :param value: a tensor (or number, returned unchanged).
    :param int dim: how many rightmost dims to sum; a negative ``dim`` keeps
        ``-dim`` leftmost dims and sums the rest.
    :returns: the reduced tensor.
    """
    if isinstance(value, numbers.Number):
        return value
    if dim < 0:
        dim += value.dim()
    if dim == 0:
        return value
    if dim > value.dim():
        raise ValueError(
            f"sum_rightmost: cannot sum {dim} dims of a tensor of shape {tuple(value.shape)}"
        )
    return value.reshape(value.shape[: value.dim() - dim] + (-1,)).sum(-1)


def sum_leftmost(value, dim):
    """Sum out the ``dim`` leftmost dims of ``value``.

    :param value: a tensor (or number, returned unchanged).
    :param int dim: how many leftmost dims to sum; a negative ``dim`` keeps
        ``-dim`` rightmost dims and sums the rest.
    :returns: the reduced tensor.
    """
    if isinstance(value, numbers.Number):
        return value
    if dim < 0:
        dim += value.dim()
    if dim == 0:
        return value
    if dim > value.dim():
        raise ValueError(
            f"sum_leftmost: cannot sum {dim} dims of a tensor of shape {tuple(value.shape)}"
        )
    return value.reshape((-1,) + value.shape[dim:]).sum(0)


def is_identically_zero(x):
    """True when ``x`` is known to be zero without reading tensor data.

    Only Python numbers are inspected: looking inside a tensor would force a
    device sync, which is exactly what this cheap test avoids.
    """
    return isinstance(x, numbers.Number) and x == 0


def is_identically_one(x):
    """True when ``x`` is the Python number 1 (tensors are never inspected)."""
    return isinstance(x, numbers.Number) and x == 1


def scale_and_mask(tensor, scale=1.0, mask=None):
    """Scale ``tensor`` and zero it where ``mask`` is False.

    Masked entries become exactly zero (also in gradients) even if ``tensor``
    holds NaN or infinity there, which is why :func:`torch.where` is used
    instead of multiplication.

    :param tensor: a tensor or number.
    :param scale: a number or tensor broadcastable to ``tensor``.
    :param mask: None, a bool, or a bool tensor broadcastable to ``tensor``.
    :returns: the scaled and masked value.
    """
    if mask is None or mask is True:
        return tensor if is_identically_one(scale) else tensor * scale
    if is_identically_zero(tensor):
        return tensor
    if mask is False:
        if isinstance(tensor, torch.Tensor):
            return torch.zeros_like(tensor)
        return 0.0
    if not isinstance(tensor, torch.Tensor):
        tensor = mask.new_tensor(tensor, dtype=torch.get_default_dtype())
    if not is_identically_one(scale):
        tensor = tensor * scale
    return torch.where(mask, tensor, tensor.new_zeros(()))


def broadcast_all(*values):
    """Broadcast tensors and numbers to a common shape, numbers following the tensors' dtype.

    :returns: a tuple of tensors.
    """
    return torch.distributions.utils.broadcast_all(*values)


def clamp_probs(probs):
    """Clamp probabilities into the open unit interval, respecting dtype."""
    eps = torch.finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def logits_to_probs(logits, is_binary=False):
    """Convert logits to probabilities (sigmoid if binary else softmax)."""
    return torch.distributions.utils.logits_to_probs(logits, is_binary=is_binary)


def probs_to_logits(probs, is_binary=False):
    """Convert probabilities to logits (clamped, so 0 and 1 stay finite)."""
    return torch.distributions.utils.probs_to_logits(probs, is_binary=is_binary)


def copy_docs_from(source_class):
    """Decorator copying a missing docstring from ``source_class``'s same-named member."""

    def decorator(destin):
        if destin.__doc__ is None:
            source = getattr(source_class, destin.__name__, None)
            if source is not None:
                try:
                    destin.__doc__ = source.__doc__
                except AttributeError:
                    pass
        return destin

    return decorator


def enable_validation(is_validate):
    """Turn argument and support validation of all distributions on or off.

    :param bool is_validate: the new setting.
    """
    torch.distributions.Distribution.set_default_validate_args(is_validate)


def is_validation_enabled():
    """Whether distributions validate their arguments by default."""
    return torch.distributions.Distribution._validate_args
