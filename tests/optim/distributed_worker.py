"""Worker for test_distributed.py: one rank of a 2-process gloo group that takes
one DistributedOptim step with SGD(lr=1) and saves the resulting parameters."""

import sys

import torch
import torch.distributed as torch_dist

import probpl
import probpl.distributions as dist
from probpl.infer import SVI, Trace_ELBO
from probpl.optim import SGD
from probpl.optim.distributed import DistributedOptim, shard_indices


def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + torch.randn(
        40, generator=gen, dtype=torch.float64
    )
    return x, y


def model(x, y, idx):
    w = probpl.sample("w", dist.Normal(torch.zeros(3, dtype=x.dtype), 1.0).to_event(1))
    with probpl.plate("data", len(x), subsample=idx):
        probpl.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])


def guide(x, y, idx):
    loc = probpl.param("loc", torch.full((3,), 0.1, dtype=x.dtype))
    scale = probpl.param("scale", torch.full((3,), 0.5, dtype=x.dtype),
                         constraint=dist.constraints.positive)
    probpl.sample("w", dist.Normal(loc, scale).to_event(1))


def main(rank, world, port, out):
    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    x, y = data()
    idx = shard_indices(len(x), 20, generator=torch.Generator().manual_seed(3))
    probpl.set_rng_seed(7)
    svi = SVI(model, guide, DistributedOptim(SGD({"lr": 1.0})), Trace_ELBO())
    svi.step(x, y, idx)
    if rank == 0:
        torch.save({k: v.detach() for k, v in probpl.get_param_store().named_parameters()}, out)
    torch_dist.barrier()
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
