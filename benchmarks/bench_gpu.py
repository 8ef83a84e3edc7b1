"""GPU benchmark (one command, prints a table): SVI on a large linear regression,
the VAE step, and NUTS on logistic regression with 1 vs many vectorized chains,
probpl beside Pyro where Pyro can run the workload.

    python benchmarks/bench_gpu.py            # on the first CUDA device
    python benchmarks/bench_gpu.py --quick    # tiny sizes; falls back to the CPU

Without a GPU it runs on the CPU (use --quick there).
"""

import argparse
import time

import torch
from bench_vae import build as build_vae
from common import libraries, print_table, time_steps

from probpl.ops.stats import effective_sample_size


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def svi_regression(lib, n, d, device, steps):
    lib.clear_param_store()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen).to(device)
    y = (x @ torch.randn(d, generator=gen).to(device)) + 0.1 * torch.randn(n, generator=gen).to(
        device
    )
    dist = lib.dist

    def model(x, y):
        w = lib.sample("w", dist.Normal(x.new_zeros(d), 1.0).to_event(1))
        sigma = lib.sample("sigma", dist.LogNormal(x.new_zeros(()), 1.0))
        with lib.plate("data", n):
            lib.sample("y", dist.Normal(x @ w, sigma), obs=y)

    guide = lib.autoguide.AutoNormal(model)
    svi = lib.infer.SVI(model, guide, lib.optim.Adam({"lr": 0.01}), lib.infer.Trace_ELBO())

    def step():
        svi.step(x, y)
        sync(device)

    return time_steps(step, steps)


def nuts_logistic(lib, n, d, chains, warmup, samples, device):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=gen).to(device)
    logits = x @ torch.randn(d, generator=gen).to(device)
    y = torch.distributions.Bernoulli(logits=logits).sample().to(device)
    dist = lib.dist

    def model(x, y):
        w = lib.sample("w", dist.Normal(x.new_zeros(d), 1.0).to_event(1))
        with lib.plate("data", n):
            lib.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    kwargs = {"chain_method": "vectorized"} if chains > 1 else {}
    mcmc = lib.infer.MCMC(lib.infer.NUTS(model), num_samples=samples, warmup_steps=warmup,
                          num_chains=chains, disable_progbar=True, **kwargs)
    sync(device)
    start = time.perf_counter()
    mcmc.run(x, y)
    sync(device)
    elapsed = time.perf_counter() - start
    w = mcmc.get_samples(group_by_chain=True)["w"].detach().cpu()
    ess = sum(float(effective_sample_size(w[c:c + 1]).min()) for c in range(w.shape[0]))
    return ess / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# device: {name}")
    q = args.quick
    n_reg, n_log, d_log = (1000, 200, 5) if q else (1_000_000, 5000, 25)
    chains_many = 8 if q else 1024
    warm, samp = (60, 60) if q else (200, 200)
    rows = []
    libs = libraries()
    svi_times, vae_times, nuts1, nuts_many = {}, {}, {}, {}
    for lib in libs:
        svi_times[lib.name] = 1e3 * svi_regression(lib, n_reg, 50, device, 3 if q else 50)
        data = (torch.rand(16 if q else 256, 784, device=device) < 0.3).float()
        step = build_vae(lib, data, 32 if q else 400, 4 if q else 20)
        vae_times[lib.name] = 1e3 * time_steps(lambda: (step(), sync(device)), 3 if q else 50)
        nuts1[lib.name] = nuts_logistic(lib, n_log, d_log, 1, warm, samp, device)
        if lib.name == "probpl":
            nuts_many[lib.name] = nuts_logistic(lib, n_log, d_log, chains_many, warm, samp, device)
    rows = [
        (f"SVI regression N={n_reg} D=50, AutoNormal (ms/step)", svi_times),
        ("VAE step (ms)", vae_times),
    ]
    print_table(f"GPU benchmark on {name}: time per step", rows, "ms")
    print_table(
        "NUTS logistic regression: total bulk ESS per second (whole run)",
        [("1 chain", nuts1), (f"{chains_many} vectorized chains (Pyro: 1 chain)",
                              {"probpl": nuts_many.get("probpl"), "pyro": nuts1.get("pyro")})],
        "ESS/s", lower_is_better=False,
    )


if __name__ == "__main__":
    main()
