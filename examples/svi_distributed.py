"""Data-parallel SVI with torch.distributed: each process fits the same model on
its own shard of every minibatch, and gradients are averaged across processes.

Launch (2 processes on this machine, gloo backend on CPU, nccl on GPUs)::

    torchrun --standalone --nproc_per_node=2 examples/svi_distributed.py

With one process per GPU, pass ``--cuda``: each rank uses ``cuda:<local rank>``.
"""

import argparse
import os

import torch
import torch.distributed as torch_dist

import probpl
import probpl.distributions as dist
from probpl.infer import SVI, Trace_ELBO
from probpl.optim import Adam
from probpl.optim.distributed import DistributedOptim, shard_indices


def model(x, y, idx):
    w = probpl.sample("w", dist.Normal(torch.zeros(x.shape[1], device=x.device), 1.0).to_event(1))
    b = probpl.sample("b", dist.Normal(torch.zeros((), device=x.device), 1.0))
    with probpl.plate("data", len(x), subsample=idx):
        probpl.sample("y", dist.Normal(x[idx] @ w + b, 0.5), obs=y[idx])


def guide(x, y, idx):
    d = x.shape[1]
    w_loc = probpl.param("w_loc", torch.zeros(d, device=x.device))
    w_scale = probpl.param("w_scale", torch.full((d,), 0.1, device=x.device),
                           constraint=dist.constraints.positive)
    probpl.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    b_loc = probpl.param("b_loc", torch.zeros((), device=x.device))
    probpl.sample("b", dist.Normal(b_loc, torch.tensor(0.1, device=x.device)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()

    backend = "nccl" if args.cuda else "gloo"
    torch_dist.init_process_group(backend)
    rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if args.cuda else "cpu")

    # Every rank builds the same data set; in practice each would load its shard.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, 5, generator=gen).to(device)
    true_w = torch.arange(1.0, 6.0, device=device)
    y = x @ true_w + 2.0 + 0.5 * torch.randn(10_000, generator=gen).to(device)

    probpl.set_rng_seed(1)  # same guide draws on every rank
    svi = SVI(model, guide, DistributedOptim(Adam({"lr": 0.02})), Trace_ELBO())
    batch_gen = torch.Generator().manual_seed(2)
    for step in range(args.steps):
        idx = shard_indices(len(x), args.batch_size, generator=batch_gen, device=device)
        loss = svi.step(x, y, idx)
        if rank == 0 and step % 100 == 0:
            print(f"step {step:4d}  loss {loss:10.1f}")
    if rank == 0:
        print(f"{world} processes; w = {probpl.param('w_loc').detach().cpu().numpy().round(2)}, "
              f"b = {probpl.param('b_loc').item():.2f} (truth: w = 1..5, b = 2)")
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
