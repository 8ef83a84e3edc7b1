"""VAE step benchmark: an MLP VAE 784-400-20 on a batch of 256 synthetic binary
images, Trace_ELBO, Adam; the same model code for probpl and Pyro.

Beside them runs the same step written in plain PyTorch (no probabilistic
language: the ELBO by hand, fused Adam), which shows how much of the step is
arithmetic that no library can remove."""

import argparse

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


def build(lib, data, hidden, z_dim):
    torch.manual_seed(0)
    lib.clear_param_store()
    enc = Encoder(hidden, z_dim).to(data.device)
    dec = Decoder(hidden, z_dim).to(data.device)
    dist = lib.dist

    def model(x):
        lib.module("decoder", dec)
        with lib.plate("data", x.shape[0]):
            z = lib.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            lib.sample("x", dist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    def guide(x):
        lib.module("encoder", enc)
        with lib.plate("data", x.shape[0]):
            loc, scale = enc(x)
            lib.sample("z", dist.Normal(loc, scale).to_event(1))

    svi = lib.infer.SVI(model, guide, lib.optim.Adam({"lr": 1e-3}), lib.infer.Trace_ELBO())
    return lambda: svi.step(data)


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
    plain = build_plain_torch(data, hidden, z_dim)
    workloads["torch"] = lambda: time_steps(plain, steps)
    medians = interleave(workloads, repeats)
    ms = {k: 1e3 * v for k, v in medians.items()}
    print_table(f"VAE 784-{hidden}-{z_dim}, batch {batch}: time per SVI step",
                [("VAE step", ms)], "ms")
    pyro_ms = ms.get("pyro")
    share = f" = {ms['torch'] / pyro_ms:.3f} of Pyro" if pyro_ms else ""
    print(f"the same step in plain PyTorch (no PPL, fused Adam): {ms['torch']:.4g} ms{share}")


if __name__ == "__main__":
    main()
