"""Data-parallel SVI over ``torch.distributed``.

Each process (rank) runs the same model and guide on its own shard of a
subsampled plate; :class:`DistributedOptim` averages the gradients of all
parameters across ranks before every step, so all ranks hold identical
parameters throughout. With shards drawn by :func:`shard_indices`, and each
rank's plate scaling its log-density by ``size / local_batch``, the averaged
gradient equals the gradient of single-process SVI on the union of the shards.

Launch one process per device with ``torchrun``; see ``examples/svi_distributed.py``.
"""

import torch
import torch.distributed as torch_dist


def shard_indices(size, batch_size, rank=None, world_size=None, generator=None, device=None):
    """This rank's part of one global random minibatch of ``batch_size`` indices.

    Every rank must pass a ``generator`` seeded identically (e.g. with the step
    number) so they agree on the global minibatch; each then takes a disjoint
    contiguous slice of it.

    :param int size: size of the data set (the plate's ``size``).
    :param int batch_size: global minibatch size, divisible by ``world_size``.
    :returns: a 1-D tensor of ``batch_size // world_size`` indices.
    """
    rank = torch_dist.get_rank() if rank is None else rank
    world_size = torch_dist.get_world_size() if world_size is None else world_size
    if batch_size % world_size:
        raise ValueError(
            f"shard_indices: batch_size {batch_size} is not divisible by world_size {world_size}"
        )
    perm = torch.randperm(size, generator=generator)[:batch_size]
    local = batch_size // world_size
    return perm[rank * local: (rank + 1) * local].to(device)


class DistributedOptim:
    """Wrap a :mod:`probpl.optim` optimizer so that gradients are averaged over
    all ranks of ``process_group`` (one all-reduce per step over a flat buffer).

    :param optim: e.g. ``probpl.optim.Adam({"lr": 0.01})``.
    :param process_group: the ``torch.distributed`` group (default: the world).
    """

    def __init__(self, optim, process_group=None):
        if not torch_dist.is_available() or not torch_dist.is_initialized():
            raise RuntimeError(
                "DistributedOptim needs an initialised torch.distributed process group; "
                "call torch.distributed.init_process_group first (torchrun sets the environment)"
            )
        self.optim = optim
        self.process_group = process_group

    def __call__(self, params, *args, **kwargs):
        from probpl.params import _PYRO_PARAM_STORE

        # Every rank must reduce the same tensors in the same order: sort by name.
        named = sorted(
            ((_PYRO_PARAM_STORE.param_name(p) or "", p) for p in params if p.grad is not None),
            key=lambda item: item[0],
        )
        grads = [p.grad for _, p in named]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM, group=self.process_group)
            flat /= torch_dist.get_world_size(self.process_group)
            offset = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[offset: offset + n].view_as(g))
                offset += n
        self.optim([p for _, p in named], *args, **kwargs)

    def get_state(self):
        return self.optim.get_state()

    def set_state(self, state):
        self.optim.set_state(state)
