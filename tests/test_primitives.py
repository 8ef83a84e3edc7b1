"""Plates (vectorised, sequential, subsampled, nested), params, and the
statements' behaviour outside any handler."""

import pytest
import torch

import probpl
import probpl.distributions as dist
import probpl.poutine as poutine
from probpl.distributions import constraints


def test_sample_outside_handlers_draws_or_returns_obs():
    x = probpl.sample("x", dist.Normal(torch.zeros(2), 1.0))
    assert x.shape == (2,)
    obs = torch.tensor(3.0)
    assert probpl.sample("x", dist.Normal(0.0, 1.0), obs=obs) is obs


def test_plate_yields_indices_and_broadcasts():
    with probpl.plate("data", 5) as idx:
        x = probpl.sample("x", dist.Normal(0.0, 1.0))
    assert torch.equal(idx, torch.arange(5))
    assert x.shape == (5,)


def test_nested_plates_dims_found_through_the_stack():
    def m():
        with probpl.plate("outer", 4):
            with probpl.plate("inner", 3):
                return probpl.sample("x", dist.Normal(0.0, 1.0))

    tr = poutine.trace(m).get_trace()
    frames = tr.nodes["x"]["cond_indep_stack"]
    assert [(f.name, f.dim) for f in frames] == [("outer", -1), ("inner", -2)]
    assert tr.nodes["x"]["value"].shape == (3, 4)
    # dims are released on exit: a second, unrelated plate gets -1 again
    with probpl.plate("again", 2) as _:
        pass
    with poutine.trace() as t2:
        with probpl.plate("p", 2):
            probpl.sample("y", dist.Normal(0.0, 1.0))
    assert t2.trace.nodes["y"]["cond_indep_stack"][0].dim == -1


def test_explicit_dims_and_plate_stack():
    with probpl.plate_stack("s", [2, 3]):
        x = probpl.sample("x", dist.Normal(0.0, 1.0))
    assert x.shape == (2, 3)
    with probpl.plate("a", 6, dim=-3):
        assert probpl.sample("y", dist.Normal(0.0, 1.0)).shape == (6, 1, 1)


@pytest.mark.parametrize("size,subsample_size", [(100, 10), (7, 7), (50, 1)])
def test_subsampled_plate_scales_log_density_exactly(size, subsample_size):
    data = torch.randn(size)

    def m():
        with probpl.plate("data", size, subsample_size=subsample_size) as idx:
            probpl.sample("x", dist.Normal(0.0, 1.0), obs=data[idx])
        return idx

    tr = poutine.trace(m).get_trace()
    tr.compute_log_prob()
    idx = tr.nodes["_RETURN"]["value"]
    assert idx.shape == (subsample_size,) and len(set(idx.tolist())) == subsample_size
    expected = dist.Normal(0.0, 1.0).log_prob(data[idx]).sum() * size / subsample_size
    assert tr.log_prob_sum().item() == pytest.approx(expected.item(), rel=1e-5)


def test_subsample_indices_are_replayed_from_guide():
    def guide():
        with probpl.plate("data", 100, subsample_size=5) as idx:
            return idx

    def m():
        with probpl.plate("data", 100, subsample_size=5) as idx:
            return idx

    gt = poutine.trace(guide).get_trace()
    mt = poutine.trace(poutine.replay(m, trace=gt)).get_trace()
    assert torch.equal(gt.nodes["_RETURN"]["value"], mt.nodes["_RETURN"]["value"])


def test_explicit_subsample_and_subsample_statement():
    data = torch.arange(10.0)
    with probpl.plate("data", 10, subsample=torch.tensor([1, 3])) as idx:
        assert torch.equal(idx, torch.tensor([1, 3]))
        assert torch.equal(probpl.subsample(data, event_dim=0), torch.tensor([1.0, 3.0]))


def test_sequential_plate_iterates_independent_iterations():
    def m():
        for i in probpl.plate("seq", 3):
            probpl.sample(f"x_{i}", dist.Normal(0.0, 1.0))

    tr = poutine.trace(m).get_trace()
    counters = [tr.nodes[f"x_{i}"]["cond_indep_stack"][0].counter for i in range(3)]
    assert counters == [0, 1, 2]
    assert all(tr.nodes[f"x_{i}"]["cond_indep_stack"][0].dim is None for i in range(3))
    assert all(tr.nodes[f"x_{i}"]["value"].shape == () for i in range(3))


def test_markov_context_and_iterator():
    values = []
    for t in probpl.markov(range(3)):
        values.append(t)
    assert values == [0, 1, 2]
    with probpl.markov():
        probpl.sample("z", dist.Normal(0.0, 1.0))


def test_param_store_constraints_and_repeated_calls():
    p1 = probpl.param("s", torch.tensor([1.0, 2.0]), constraint=constraints.positive)
    p2 = probpl.param("s")
    assert torch.equal(p1, p2)
    store = probpl.get_param_store()
    unconstrained = dict(store.named_parameters())["s"]
    assert torch.allclose(unconstrained, torch.log(torch.tensor([1.0, 2.0])))
    assert unconstrained.requires_grad and unconstrained.is_leaf
    assert list(store.keys()) == ["s"]
    assert torch.equal(dict(store.items())["s"], p1)
    with pytest.raises(ValueError, match="re-declared with constraint"):
        probpl.param("s", torch.tensor([1.0, 2.0]), constraint=constraints.unit_interval)
    with pytest.raises(KeyError, match="'nope'"):
        probpl.param("nope")


def test_param_callable_init_and_simplex():
    p = probpl.param("p", lambda: torch.ones(3) / 3, constraint=constraints.simplex)
    assert torch.allclose(p, torch.ones(3) / 3)
    assert dict(probpl.get_param_store().named_parameters())["p"].shape == (2,)


def test_param_store_save_load_state(tmp_path):
    probpl.param("a", torch.tensor([0.5]), constraint=constraints.unit_interval)
    probpl.param("b", torch.randn(2, 2))
    store = probpl.get_param_store()
    state = store.get_state()
    path = tmp_path / "params.pt"
    store.save(path)
    expected = {k: v.detach().clone() for k, v in store.items()}
    probpl.clear_param_store()
    assert len(store) == 0
    store.load(path, map_location="cpu")
    for k, v in expected.items():
        assert torch.allclose(store[k], v)
    probpl.clear_param_store()
    store.set_state(state)
    assert torch.allclose(store["a"], expected["a"])


def test_param_follows_init_dtype():
    p = probpl.param("d", torch.tensor([1.0], dtype=torch.float64), constraint=constraints.positive)
    assert p.dtype == torch.float64


def test_module_registers_parameters():
    net = torch.nn.Linear(2, 1)
    probpl.module("net", net)
    names = set(probpl.get_param_store().keys())
    assert names == {"net$$$weight", "net$$$bias"}
    # the store shares the module's tensors, so optimising one updates the other
    assert dict(probpl.get_param_store().named_parameters())["net$$$weight"] is net.weight


def test_obs_mask_imputes_missing_values():
    data = torch.tensor([1.0, 2.0, 3.0])
    mask = torch.tensor([True, False, True])

    def m():
        with probpl.plate("data", 3):
            return probpl.sample("x", dist.Normal(0.0, 1.0), obs=data, obs_mask=mask)

    tr = poutine.trace(m).get_trace()
    x = tr.nodes["_RETURN"]["value"]
    assert x[0] == 1.0 and x[2] == 3.0 and x[1] != 2.0
    assert tr.nodes["x_unobserved"]["value"].shape == (3,)
    tr.compute_log_prob()
    expected = dist.Normal(0.0, 1.0).log_prob(data)[[0, 2]].sum() + dist.Normal(
        0.0, 1.0
    ).log_prob(tr.nodes["x_unobserved"]["value"][1])
    assert tr.log_prob_sum().item() == pytest.approx(expected.item(), rel=1e-5)


def test_set_rng_seed_reproducible():
    probpl.set_rng_seed(5)
    a = probpl.sample("x", dist.Normal(0.0, 1.0))
    probpl.set_rng_seed(5)
    b = probpl.sample("x", dist.Normal(0.0, 1.0))
    assert torch.equal(a, b)


def test_validation_enabled_context():
    assert probpl.is_validation_enabled()
    with probpl.validation_enabled(False):
        assert not probpl.is_validation_enabled()
    assert probpl.is_validation_enabled()
