"""NUTS on a mixture whose discrete assignments are summed out by enumeration,
checked against a grid posterior; discrete posteriors recovered by infer_discrete."""

import math

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.infer import MCMC, NUTS, config_enumerate, infer_discrete
from probpl.infer.mcmc.util import initialize_model
from probpl.ops.stats import effective_sample_size
from probpl.poutine import condition

WEIGHTS = torch.tensor([0.7, 0.3], dtype=torch.float64)
OTHER_LOC = -2.0


def make_data(n=40):
    g = torch.Generator().manual_seed(0)
    z = torch.bernoulli(torch.full((n,), 0.3, dtype=torch.float64), generator=g).long()
    locs = torch.tensor([1.5, OTHER_LOC], dtype=torch.float64)
    return locs[z] + torch.randn(n, generator=g, dtype=torch.float64)


@config_enumerate
def model(data):
    mu = probpl.sample("mu", dist.Normal(torch.tensor(0.0, dtype=data.dtype), 5.0))
    locs = torch.stack([mu, mu.new_tensor(OTHER_LOC)])
    with probpl.plate("data", len(data)):
        z = probpl.sample("z", dist.Categorical(WEIGHTS))
        probpl.sample("x", dist.Normal(locs[z], 1.0), obs=data)


def log_joint(mu, data):
    """Brute force: log p(mu) + sum_i log sum_k w_k N(x_i; loc_k, 1), for a grid of mu."""
    mu = mu.reshape(-1, 1)
    prior = dist.Normal(0.0, 5.0).log_prob(mu).squeeze(-1)
    comp0 = WEIGHTS[0].log() + dist.Normal(mu, 1.0).log_prob(data)
    comp1 = WEIGHTS[1].log() + dist.Normal(OTHER_LOC, 1.0).log_prob(data).expand_as(comp0)
    return prior + torch.logaddexp(comp0, comp1).sum(-1)


def test_enumerated_potential_equals_brute_force():
    data = make_data()
    _, potential_fn, _, _ = initialize_model(model, (data,))
    for mu in (-1.0, 0.3, 2.0):
        pe = potential_fn({"mu": torch.tensor(mu, dtype=torch.float64)})
        expected = -log_joint(torch.tensor([mu], dtype=torch.float64), data)
        # float64; the contraction's shifted exp/log leaves ~1e-10 relative error
        assert pe.item() == pytest.approx(expected.item(), rel=1e-8)


def test_nuts_on_enumerated_mixture_matches_grid_posterior():
    data = make_data()
    grid = torch.linspace(-4, 6, 20001, dtype=torch.float64)
    logp = log_joint(grid, data)
    w = (logp - logp.logsumexp(0)).exp()
    post_mean = (w * grid).sum().item()
    post_sd = math.sqrt((w * (grid - post_mean) ** 2).sum().item())

    mcmc = MCMC(NUTS(model), num_samples=400, warmup_steps=300, disable_progbar=True)
    mcmc.run(data)
    mu = mcmc.get_samples()["mu"]
    ess = effective_sample_size(mu.reshape(1, -1)).item()
    # the sample mean is within 5 Monte Carlo standard errors of the exact mean
    assert abs(mu.mean().item() - post_mean) < 5 * post_sd / math.sqrt(ess)
    assert mu.std().item() == pytest.approx(post_sd, rel=0.2)


def test_infer_discrete_map_after_mcmc_equals_brute_force_argmax():
    data = make_data()
    mu = torch.tensor(1.4, dtype=torch.float64)
    conditioned = condition(model, data={"mu": mu})
    decoded = infer_discrete(conditioned, first_available_dim=-2, temperature=0)
    tr = probpl.poutine.trace(decoded).get_trace(data)
    z = tr.nodes["z"]["value"]
    score0 = WEIGHTS[0].log() + dist.Normal(mu, 1.0).log_prob(data)
    score1 = WEIGHTS[1].log() + dist.Normal(OTHER_LOC, 1.0).log_prob(data)
    assert torch.equal(z.reshape(-1), (score1 > score0).long())
