"""Sequential enumeration of guide sites in TraceEnum_ELBO, against brute force."""

import itertools

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.distributions import constraints
from probpl.infer import TraceEnum_ELBO, config_enumerate

DATA = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
LOCS = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)


def model(data):
    z = probpl.sample("z", dist.Categorical(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)))
    b = probpl.sample("b", dist.Bernoulli(torch.tensor(0.4, dtype=torch.float64)))
    with probpl.plate("data", len(data)):
        probpl.sample("x", dist.Normal(LOCS[z] + b, 1.0), obs=data)


def make_guide(kind):
    infer = {"enumerate": kind} if kind else {}

    def guide(data):
        qz = probpl.param("qz", torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64),
                          constraint=constraints.simplex)
        qb = probpl.param("qb", torch.tensor([[0.3], [0.6], [0.5]], dtype=torch.float64),
                          constraint=constraints.unit_interval)
        z = probpl.sample("z", dist.Categorical(qz), infer=infer)
        # b's guide depends on the value of z.
        probpl.sample("b", dist.Bernoulli(qb[z].squeeze(-1)), infer=infer)
    return guide


def brute_force_loss():
    qz = probpl.param("qz")
    qb = probpl.param("qb")
    pz = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    total = 0.0
    for z, b in itertools.product(range(3), range(2)):
        q = qz[z] * (qb[z, 0] if b else 1 - qb[z, 0])
        log_p = pz[z].log() + torch.tensor(0.4 if b else 0.6, dtype=torch.float64).log()
        log_p = log_p + dist.Normal(LOCS[z] + b, 1.0).log_prob(DATA).sum()
        total = total + q * (log_p - q.log())
    return -total


def test_sequential_guide_matches_brute_force_and_parallel():
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    guide = make_guide("sequential")
    loss = elbo.differentiable_loss(model, guide, DATA)
    expected = brute_force_loss()
    assert torch.allclose(loss, expected, rtol=1e-10)
    params = [probpl.param("qz").unconstrained(), probpl.param("qb").unconstrained()]
    grads = torch.autograd.grad(loss, params)
    expected_grads = torch.autograd.grad(expected, params)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-8, atol=1e-12)
    # The same sum, enumerated in parallel.
    parallel = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model, make_guide("parallel"), DATA)
    assert torch.allclose(parallel, expected, rtol=1e-10)


def test_sequential_runs_once_per_assignment():
    runs = []
    guide = make_guide("sequential")

    def counting_guide(data):
        runs.append(1)
        return guide(data)

    TraceEnum_ELBO(max_plate_nesting=1).loss(model, counting_guide, DATA)
    # One sampled run that finds the sequential sites, then for each of the 6
    # assignments one discovery run and one ELBO run, plus one discovery run per
    # branching point (1 for z, 3 for b).
    assert len(runs) == 1 + 6 * 2 + 4


def test_config_enumerate_sequential_default():
    guide = config_enumerate(make_guide(None), default="sequential")
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, DATA)
    assert loss == pytest.approx(brute_force_loss().item(), rel=1e-10)


def test_sequential_site_in_plate_is_an_error():
    def guide(data):
        with probpl.plate("data", len(data)):
            probpl.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "sequential"})

    def plated_model(data):
        with probpl.plate("data", len(data)):
            z = probpl.sample("z", dist.Bernoulli(0.5))
            probpl.sample("x", dist.Normal(z.to(data.dtype), 1.0), obs=data)

    with pytest.raises(ValueError, match=r"guide site 'z'.*batch_shape \(3,\).*parallel"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(plated_model, guide, DATA)


def test_sequential_model_site_is_an_error():
    def seq_model(data):
        z = probpl.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "sequential"})
        probpl.sample("x", dist.Normal(z.to(data.dtype), 1.0).expand([3]).to_event(1), obs=data)

    with pytest.raises(ValueError, match="model site 'z'.*sequential.*parallel"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(seq_model, lambda data: None, DATA)
