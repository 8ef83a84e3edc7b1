"""VAE step benchmark: an MLP VAE 784-400-20 on a batch of 256 synthetic binary
images, Trace_ELBO, Adam; the same model code for probpl and Pyro.

Beside them runs the same step written in plain PyTorch (no probabilistic
language: the ELBO by hand, fused Adam), which shows how much of the step is
arithmetic that no library can remove, and probpl's ``JitTrace_ELBO`` with
``jit_options={"compiler": "inductor"}`` (the recorded step, backward pass
included, compiled by inductor), whose compile time is reported separately
(a warm inductor cache from an earlier run shortens it)."""

import argparse
import time

import torch
from common import interleave, libraries, print_table, set_threads, time_steps
from torch import nn


class Encoder(nn.Module):
    def __init__(self, hidden, z_dim):
        super().__init__()
        self.fc = nn.Linear(784, hidden)
        self.loc = nn.Linear(hidden, z_dim)
        self.scale = nn.Linear(hidden, z_dim)

    def forward(self, x):
        h = torch.relu(self.fc(x))
        return self.loc(h), torch.nn.functional.softplus(self.scale(h)) + 1e-4


class Decoder(nn.Module):
    def __init__(self, hidden, z_dim):
        super().__init__()
        self.fc = nn.Linear(z_dim, hidden)
        self.out = nn.Linear(hidden, 784)

    def forward(self, z):
        return self.out(torch.relu(self.fc(z)))


def build(lib, data, hidden, z_dim, elbo=None, prefix="", clear=True):
    """An SVI step; ``prefix`` keeps the modules' names in the param store apart
    from those of another VAE built in the same process."""
    torch.manual_seed(0)
    if clear:
        lib.clear_param_store()
    enc = Encoder(hidden, z_dim).to(data.device)
    dec = Decoder(hidden, z_dim).to(data.device)
    dist = lib.dist

    def model(x):
        lib.module(prefix + "decoder", dec)
        with lib.plate("data", x.shape[0]):
            z = lib.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            lib.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    def guide(x):
        lib.module(prefix + "encoder", enc)
        with lib.plate("data", x.shape[0]):
            loc, scale = enc(x)
            lib.sample("z", dist.Normal(loc, scale).to_event(1))

    elbo = lib.infer.Trace_ELBO() if elbo is None else elbo
    svi = lib.infer.SVI(model, guide, lib.optim.Adam({"lr": 1e-3}), elbo)
    return lambda: svi.step(data)


def build_inductor(lib, data, hidden, z_dim):
    """probpl's recorded step compiled by inductor: ``(step, compile seconds, mode)``.
    The compile time is that of the first three steps (an eager step, the
    recording and compilation, the step checked against autograd)."""
    from probpl.infer.jit_elbo import JitTrace_ELBO

    elbo = JitTrace_ELBO(jit_options={"compiler": "inductor"})
    step = build(lib, data, hidden, z_dim, elbo, prefix="inductor.", clear=False)
    start = time.perf_counter()
    for _ in range(3):
        step()
    seconds = time.perf_counter() - start
    (entry,) = elbo._entries.values()
    return step, seconds, entry.mode


def build_plain_torch(data, hidden, z_dim):
    """The same single-sample ELBO step by hand: the floor for any library."""
    torch.manual_seed(0)
    enc = Encoder(hidden, z_dim).to(data.device)
    dec = Decoder(hidden, z_dim).to(data.device)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=data.device.type in ("cpu", "cuda"))

    def step():
        opt.zero_grad(set_to_none=True)
        loc, scale = enc(data)
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_lik = -nn.functional.binary_cross_entropy_with_logits(dec(z), data, reduction="sum")
        # log p(z) - log q(z), dropping the constants that cancel.
        log_ratio = -0.5 * (z * z).sum() + 0.5 * (eps * eps).sum() + scale.log().sum()
        loss = -(log_lik + log_ratio)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    set_threads()
    batch, hidden, z_dim = (16, 32, 4) if args.quick else (256, 400, 20)
    steps, repeats = (3, 1) if args.quick else (30, 5)
    data = (torch.rand(batch, 784) < 0.3).float()
    libs = libraries()
    workloads = {}
    for lib in libs:
        step = build(lib, data, hidden, z_dim)
        workloads[lib.name] = (lambda s=step: time_steps(s, steps))
    probpl = next(lib for lib in libs if lib.name == "probpl")
    compiled, compile_s, mode = build_inductor(probpl, data, hidden, z_dim)
    workloads["inductor"] = lambda: time_steps(compiled, steps)
    plain = build_plain_torch(data, hidden, z_dim)
    workloads["torch"] = lambda: time_steps(plain, steps)
    medians = interleave(workloads, repeats)
    ms = {k: 1e3 * v for k, v in medians.items()}
    pyro_ms = ms.get("pyro")
    print_table(f"VAE 784-{hidden}-{z_dim}, batch {batch}: time per SVI step",
                [("VAE step", ms),
                 ("VAE step, probpl JitTrace_ELBO inductor vs Pyro Trace_ELBO",
                  {"probpl": ms["inductor"], "pyro": pyro_ms})], "ms")
    print(f"JitTrace_ELBO, inductor: first three steps (compilation included) "
          f"{compile_s:.3g} s; recorded step mode {mode!r}")
    share = f" = {ms['torch'] / pyro_ms:.3f} of Pyro" if pyro_ms else ""
    print(f"the same step in plain PyTorch (no PPL, fused Adam): {ms['torch']:.4g} ms{share}")


if __name__ == "__main__":
    main()
