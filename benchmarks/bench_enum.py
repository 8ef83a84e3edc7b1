"""TraceEnum_ELBO step time, probpl beside Pyro 1.9.2, same model code and data.

Two workloads: an enumerated Gaussian mixture (K=3, N=1000) and an HMM (3
states, T=100, 20 sequences in a plate, a ``markov`` loop), both with their
parameters in the model and an empty guide.  Runs are interleaved (a block of
probpl steps, then a block of Pyro steps, repeated) and medians reported.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_enum.py [--repeats 5] [--steps 20]``
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def make_gmm(pyro, dist, constraints, data, K=3):
    def model():
        weights = pyro.param("weights", torch.ones(K) / K, constraint=constraints.simplex)
        locs = pyro.param("locs", torch.linspace(-1, 1, K))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("data", len(data)):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(locs[z], scale), obs=data)

    return model


def make_hmm(pyro, dist, constraints, ys, S=3):
    T, B = ys.shape

    def model():
        init = pyro.param("init", torch.ones(S) / S, constraint=constraints.simplex)
        trans = pyro.param("trans", torch.full((S, S), 0.1) + 0.7 * torch.eye(S),
                           constraint=constraints.simplex)
        locs = pyro.param("locs", torch.linspace(-1, 1, S))
        with pyro.plate("seqs", B, dim=-1):
            x = None
            for t in pyro.markov(range(T)):
                p = init if x is None else trans[x]
                x = pyro.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
                pyro.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=ys[t])

    return model


def data():
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 3, (1000,), generator=g)
    gmm = torch.tensor([-3.0, 0.0, 3.0])[z] + torch.randn(1000, generator=g)
    ys = torch.randn(100, 20, generator=g) + 2 * (torch.arange(100) // 10 % 3 - 1).unsqueeze(-1)
    return gmm, ys


def backends():
    import probpl
    import probpl.distributions as pdist
    from probpl.distributions import constraints as pcon
    from probpl.infer import SVI as PSVI
    from probpl.infer.traceenum_elbo import TraceEnum_ELBO as PEnum
    from probpl.optim import Adam as PAdam

    result = {"probpl": (probpl, pdist, pcon, PSVI, PEnum, PAdam)}
    try:
        import pyro
        import pyro.distributions as dist
        from pyro.distributions import constraints
        from pyro.infer import SVI, TraceEnum_ELBO
        from pyro.optim import Adam

        result["pyro"] = (pyro, dist, constraints, SVI, TraceEnum_ELBO, Adam)
    except ImportError:
        pass
    return result


def make_svi(backend, workload, inputs):
    pyro, dist, constraints, SVI, TraceEnum_ELBO, Adam = backend
    pyro.clear_param_store()
    model = (make_gmm if workload == "gmm" else make_hmm)(pyro, dist, constraints, inputs)
    svi = SVI(model, lambda: None, Adam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=1))
    return pyro, svi


def time_steps(pyro, svi, steps):
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        svi.step()
        times.append(time.perf_counter() - t0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gmm_data, ys = data()
    impls = backends()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} x {args.steps} steps (medians, ms per step)")
    rows = []
    for workload, inputs in (("gmm", gmm_data), ("hmm", ys)):
        times = {name: [] for name in impls}
        for _ in range(args.repeats):
            for name, backend in impls.items():
                pyro, svi = make_svi(backend, workload, inputs)
                time_steps(pyro, svi, 2)  # warm-up: plan caches, first-call costs
                times[name] += time_steps(pyro, svi, args.steps)
        med = {name: 1e3 * statistics.median(t) for name, t in times.items()}
        rows.append((workload, med))
    print(f"{'workload':<36}{'probpl':>10}{'pyro':>10}{'ratio':>8}")
    labels = {"gmm": "TraceEnum GMM K=3 N=1000", "hmm": "TraceEnum HMM S=3 T=100 x 20 seqs"}
    for workload, med in rows:
        pyro_ms = med.get("pyro", float("nan"))
        print(f"{labels[workload]:<36}{med['probpl']:>10.3f}{pyro_ms:>10.3f}"
              f"{med['probpl'] / pyro_ms:>8.3f}")


if __name__ == "__main__":
    main()
