"""TraceEnum_ELBO step time, probpl beside Pyro 1.9.2, same model code and data.

Two workloads: an enumerated Gaussian mixture (K=3, N=1000) and an HMM (3
states, T=100, 20 sequences in a plate, a ``markov`` loop), both with their
parameters in the model and an empty guide.  Runs are interleaved (a block of
probpl steps, then a block of Pyro steps, repeated) and medians reported.  Step
times are process CPU time (robust to other processes on a shared machine when
torch runs one thread); ``--wall`` reports wall-clock time instead.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_enum.py [--quick] [--repeats 5] [--steps 20]``
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import interleave, libraries, print_table, set_threads  # noqa: E402


def make_gmm(lib, data, K=3):
    dist, constraints = lib.dist, lib.dist.constraints

    def model():
        weights = lib.param("weights", torch.ones(K) / K, constraint=constraints.simplex)
        locs = lib.param("locs", torch.linspace(-1, 1, K))
        scale = lib.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        with lib.plate("data", len(data)):
            z = lib.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            lib.sample("x", dist.Normal(locs[z], scale), obs=data)

    return model


def make_hmm(lib, ys, S=3):
    dist, constraints = lib.dist, lib.dist.constraints
    T, B = ys.shape

    def model():
        init = lib.param("init", torch.ones(S) / S, constraint=constraints.simplex)
        trans = lib.param("trans", torch.full((S, S), 0.1) + 0.7 * torch.eye(S),
                          constraint=constraints.simplex)
        locs = lib.param("locs", torch.linspace(-1, 1, S))
        with lib.plate("seqs", B, dim=-1):
            x = None
            for t in lib.markov(range(T)):
                p = init if x is None else trans[x]
                x = lib.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
                lib.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=ys[t])

    return model


def make_data(N, T, B):
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 3, (N,), generator=g)
    gmm = torch.tensor([-3.0, 0.0, 3.0])[z] + torch.randn(N, generator=g)
    ys = torch.randn(T, B, generator=g) + 2 * (torch.arange(T) // 10 % 3 - 1).unsqueeze(-1)
    return gmm, ys


def make_step(lib, workload, inputs):
    lib.clear_param_store()
    model = (make_gmm if workload == "gmm" else make_hmm)(lib, inputs)
    elbo = lib.infer.TraceEnum_ELBO(max_plate_nesting=1)
    svi = lib.infer.SVI(model, lambda: None, lib.optim.Adam({"lr": 0.01}), elbo)
    return svi.step


def time_block(lib, workload, inputs, steps, clock):
    """A fresh SVI (own parameter store state), two warm-up steps, then the
    median of ``steps`` timed steps in seconds."""
    step = make_step(lib, workload, inputs)
    step()
    step()
    times = []
    for _ in range(steps):
        t = clock()
        step()
        times.append(clock() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args()
    set_threads()
    if args.quick:
        N, T, B, repeats, steps = 50, 5, 4, 1, 3
    else:
        N, T, B, repeats, steps = 1000, 100, 20, 5, 20
    repeats = args.repeats or repeats
    steps = args.steps or steps
    clock = time.perf_counter if args.wall else time.process_time
    gmm, ys = make_data(N, T, B)
    libs = libraries()
    rows = []
    for workload, inputs, label in (
        ("gmm", gmm, f"TraceEnum GMM K=3 N={N}"),
        ("hmm", ys, f"TraceEnum HMM S=3 T={T} x {B} seqs (markov)"),
    ):
        blocks = {
            lib.name: (lambda lib=lib: time_block(lib, workload, inputs, steps, clock))
            for lib in libs
        }
        medians = interleave(blocks, repeats)
        rows.append((label, {k: 1e3 * v for k, v in medians.items()}))
    kind = "wall-clock" if args.wall else "CPU"
    print_table(f"TraceEnum_ELBO: {kind} time per SVI step, torch {torch.__version__}, "
                f"{torch.get_num_threads()} thread(s), {repeats} x {steps} steps", rows, "ms")


if __name__ == "__main__":
    main()
