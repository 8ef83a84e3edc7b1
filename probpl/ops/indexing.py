"""``Vindex``: broadcasting advanced indexing for enumerated models.

In an enumerated model an index tensor carries enumeration dims on the left;
``x[i, j]`` in torch would place those dims in awkward positions.
``Vindex(x)[..., i, j]`` instead treats the indexed dims of ``x`` as the
rightmost ones and broadcasts every index tensor with the remaining (batch)
dims of ``x``: the result has shape ``broadcast(batch, i.shape, j.shape)``
followed by the sizes of any ``:`` slices, in order.
"""

import torch

__all__ = ["Vindex", "vindex"]


def vindex(tensor, args):
    """Index the rightmost dims of ``tensor`` with broadcasting tensors.

    :param torch.Tensor tensor: the tensor to index.
    :param tuple args: ``(Ellipsis, a_1, ..., a_n)`` (the ellipsis may be
        omitted when ``n == tensor.dim()``), each ``a_k`` an integer tensor, an
        int or ``slice(None)``.
    :returns: a tensor of shape ``broadcast(batch, indices) + slice sizes``.

    Example::

        >>> x = torch.arange(24).reshape(2, 3, 4)
        >>> i = torch.tensor([[0], [2]])   # an enumeration dim of size 2
        >>> Vindex(x)[..., i, 1].shape
        torch.Size([2, 2])
    """
    if not isinstance(args, tuple):
        args = (args,)
    if args and args[0] is Ellipsis:
        args = args[1:]
    if Ellipsis in args:
        raise NotImplementedError("Vindex supports a single leading Ellipsis only")
    n = len(args)
    if n > tensor.dim():
        raise IndexError(
            f"Vindex: {n} indices for a tensor of shape {tuple(tensor.shape)}"
        )
    batch_dim = tensor.dim() - n
    sliced = [k for k, a in enumerate(args) if isinstance(a, slice)]
    for k in sliced:
        if args[k] != slice(None):
            raise NotImplementedError("Vindex supports only full slices ':'")
    num_slices = len(sliced)
    device = tensor.device
    index = []
    for b in range(batch_dim):
        size = tensor.shape[b]
        index.append(torch.arange(size, device=device).reshape(
            (size,) + (1,) * (batch_dim - 1 - b + num_slices)))
    s = 0
    for k, a in enumerate(args):
        size = tensor.shape[batch_dim + k]
        if isinstance(a, slice):
            index.append(torch.arange(size, device=device).reshape(
                (size,) + (1,) * (num_slices - 1 - s)))
            s += 1
        else:
            a = torch.as_tensor(a, device=device)
            index.append(a.reshape(a.shape + (1,) * num_slices))
    return tensor[tuple(index)]


class Vindex:
    """``Vindex(x)[args]`` is ``vindex(x, args)``."""

    __slots__ = ("_tensor",)

    def __init__(self, tensor):
        self._tensor = tensor

    def __getitem__(self, args):
        return vindex(self._tensor, args)
