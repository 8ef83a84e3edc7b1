"""One test per handler on a small model, and the important compositions."""

import math
import random
from queue import Queue

import numpy as np
import pytest
import torch

import probpl
import probpl.distributions as dist
import probpl.poutine as poutine
from probpl.poutine.util import NonlocalExit


def model(data=None):
    loc = probpl.param("loc", torch.tensor(0.5))
    z = probpl.sample("z", dist.Normal(loc, 1.0))
    with probpl.plate("data", 3):
        x = probpl.sample("x", dist.Normal(z, 2.0), obs=data)
    return z, x


def guide(data=None):
    probpl.sample("z", dist.Normal(probpl.param("q_loc", torch.tensor(1.5)), 0.5))


DATA = torch.tensor([0.0, 1.0, 2.0])


def test_trace_records_sites_in_order_with_values():
    tr = poutine.trace(model).get_trace(DATA)
    names = [n for n in tr.nodes if not n.startswith("_")]
    assert names == ["loc", "z", "x"]
    assert tr.nodes["loc"]["type"] == "param"
    assert tr.nodes["x"]["is_observed"] and torch.equal(tr.nodes["x"]["value"], DATA)
    assert tr.nodes["_INPUT"]["args"] == (DATA,)
    z, x = tr.nodes["_RETURN"]["value"]
    assert torch.equal(z, tr.nodes["z"]["value"])
    assert tr.stochastic_nodes == ["z"]
    assert tr.observation_nodes == ["x"]
    assert tr.param_nodes == ["loc"]


def test_trace_log_prob_matches_scipy():
    from scipy import stats

    tr = poutine.trace(model).get_trace(DATA)
    tr.compute_log_prob()
    z = tr.nodes["z"]["value"].item()
    expected = stats.norm(0.5, 1.0).logpdf(z) + stats.norm(z, 2.0).logpdf(DATA.numpy()).sum()
    assert tr.log_prob_sum().item() == pytest.approx(expected, rel=1e-5)
    assert tr.nodes["x"]["log_prob"].shape == (3,)


def test_trace_as_context_manager():
    with poutine.trace() as tr:
        model(DATA)
    assert "z" in tr.trace.nodes


def test_replay_uses_guide_values():
    guide_trace = poutine.trace(guide).get_trace()
    tr = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(DATA)
    assert torch.equal(tr.nodes["z"]["value"], guide_trace.nodes["z"]["value"])
    # observed sites are never replayed
    assert torch.equal(tr.nodes["x"]["value"], DATA)


def test_replay_params():
    tr = poutine.trace(poutine.replay(model, params={"loc": torch.tensor(7.0)})).get_trace()
    assert tr.nodes["loc"]["value"].item() == 7.0


def test_block_inside_trace_hides_sites():
    tr = poutine.trace(poutine.block(model, hide=["z"])).get_trace(DATA)
    assert "z" not in tr.nodes and "x" in tr.nodes
    tr = poutine.trace(poutine.block(model, expose=["z"])).get_trace(DATA)
    assert "z" in tr.nodes and "x" not in tr.nodes and "loc" not in tr.nodes
    tr = poutine.trace(poutine.block(model, hide_types=["param"])).get_trace(DATA)
    assert "loc" not in tr.nodes and "z" in tr.nodes
    tr = poutine.trace(poutine.block(model)).get_trace(DATA)
    assert [n for n in tr.nodes if not n.startswith("_")] == []
    tr = poutine.trace(poutine.block(model, hide_fn=lambda m: m["type"] == "sample")).get_trace()
    assert list(n for n in tr.nodes if not n.startswith("_")) == ["loc"]


def test_condition_equals_obs():
    cond = poutine.condition(model, data={"z": torch.tensor(0.3)})
    tr = poutine.trace(cond).get_trace(DATA)
    assert tr.nodes["z"]["is_observed"] and tr.nodes["z"]["value"].item() == pytest.approx(0.3)

    def model_obs(data):
        loc = probpl.param("loc", torch.tensor(0.5))
        z = probpl.sample("z", dist.Normal(loc, 1.0), obs=torch.tensor(0.3))
        with probpl.plate("data", 3):
            probpl.sample("x", dist.Normal(z, 2.0), obs=data)

    tr2 = poutine.trace(model_obs).get_trace(DATA)
    assert tr.log_prob_sum().item() == pytest.approx(tr2.log_prob_sum().item())


def test_condition_on_trace():
    source = poutine.trace(guide).get_trace()
    tr = poutine.trace(poutine.condition(model, data=source)).get_trace(DATA)
    assert tr.nodes["z"]["is_observed"]
    assert torch.equal(tr.nodes["z"]["value"], source.nodes["z"]["value"])


def test_uncondition_samples_observed_sites():
    tr = poutine.trace(poutine.uncondition(model)).get_trace(DATA)
    assert not tr.nodes["x"]["is_observed"]
    assert not torch.equal(tr.nodes["x"]["value"], DATA)
    assert torch.equal(tr.nodes["x"]["infer"]["obs"], DATA)


def test_do_intervenes_without_conditioning():
    intervened = poutine.do(model, data={"z": torch.tensor(10.0)})
    tr = poutine.trace(intervened).get_trace()
    z, x = tr.nodes["_RETURN"]["value"]
    assert z.item() == 10.0
    # the fresh site 'z' is sampled from its prior and does not propagate
    assert not tr.nodes["z"]["is_observed"]
    assert tr.nodes["z"]["value"].item() != 10.0
    assert (x - 10.0).abs().mean() < 6.0


def test_substitute_latent_and_param():
    sub = poutine.substitute(model, data={"z": torch.tensor(2.0), "loc": torch.tensor(-1.0)})
    tr = poutine.trace(sub).get_trace(DATA)
    assert tr.nodes["z"]["value"].item() == 2.0 and not tr.nodes["z"]["is_observed"]
    assert tr.nodes["loc"]["value"].item() == -1.0
    sub = poutine.substitute(model, substitute_fn=lambda s: torch.tensor(4.0) if s["name"] == "z"
                             else None)
    assert poutine.trace(sub).get_trace().nodes["z"]["value"].item() == 4.0


def test_scale_and_mask_compose():
    tr = poutine.trace(poutine.scale(model, scale=3.0)).get_trace(DATA)
    base = poutine.trace(poutine.replay(model, trace=tr)).get_trace(DATA)
    tr.compute_log_prob()
    base.compute_log_prob()
    assert tr.log_prob_sum().item() == pytest.approx(3 * base.log_prob_sum().item(), rel=1e-6)

    mask = torch.tensor([True, False, True])
    masked = poutine.trace(poutine.scale(poutine.mask(model, mask=mask), scale=2.0))
    tr2 = poutine.trace(poutine.replay(masked, trace=tr)).get_trace(DATA)
    tr2.compute_log_prob()
    expected = 2.0 * base.nodes["x"]["log_prob"] * mask
    assert torch.allclose(tr2.nodes["x"]["log_prob"], expected)
    # the mask broadcasts against every site inside, global ones included
    assert torch.allclose(tr2.nodes["z"]["log_prob"], 2.0 * base.nodes["z"]["log_prob"] * mask)


def test_scale_rejects_nonpositive():
    with pytest.raises(ValueError, match="positive"):
        poutine.scale(model, scale=0.0)
    with pytest.raises(ValueError, match="bool"):
        poutine.mask(model, mask=torch.tensor([1.0]))


def test_seed_reproducible_and_restores_outer_state():
    probpl.set_rng_seed(123)
    expected_outer = torch.rand(())
    probpl.set_rng_seed(123)
    a = poutine.trace(poutine.seed(model, rng_seed=7)).get_trace().nodes["z"]["value"]
    outer = torch.rand(())
    b = poutine.trace(poutine.seed(model, rng_seed=7)).get_trace().nodes["z"]["value"]
    assert torch.equal(a, b)
    assert torch.equal(outer, expected_outer)
    with poutine.seed(rng_seed=3):
        r1 = (random.random(), np.random.rand())
    with poutine.seed(rng_seed=3):
        r2 = (random.random(), np.random.rand())
    assert r1 == r2


def test_lift_turns_params_into_samples():
    prior = {"loc": dist.Normal(100.0, 1.0)}
    tr = poutine.trace(poutine.lift(model, prior=prior)).get_trace()
    assert tr.nodes["loc"]["type"] == "sample"
    assert abs(tr.nodes["loc"]["value"].item() - 100.0) < 6.0
    assert (tr.nodes["z"]["value"] - tr.nodes["loc"]["value"]).abs() < 6.0


def test_infer_config():
    cfg = poutine.infer_config(model, config_fn=lambda m: {"tag": m["name"]})
    tr = poutine.trace(cfg).get_trace()
    assert tr.nodes["z"]["infer"]["tag"] == "z"


def test_escape_and_queue_enumerate_all_paths():
    def coins():
        a = probpl.sample("a", dist.Bernoulli(0.5))
        b = probpl.sample("b", dist.Bernoulli(0.5))
        return a, b

    with pytest.raises(NonlocalExit) as e:
        poutine.escape(coins, escape_fn=lambda m: m["name"] == "b")()
    assert e.value.site["name"] == "b"
    assert probpl.poutine.runtime._PYRO_STACK == []

    q = Queue()
    q.put(poutine.Trace())
    enum_coins = poutine.queue(coins, queue=q)
    results = set()
    while not q.empty():
        a, b = enum_coins()
        results.add((a.item(), b.item()))
    assert results == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}


def test_broadcast_expands_to_plates():
    def m():
        with probpl.plate("a", 4, dim=-2), probpl.plate("b", 3):
            return probpl.sample("x", dist.Normal(0.0, 1.0))

    assert m().shape == (4, 3)
    with poutine.broadcast():
        with probpl.plate("c", 5):
            assert probpl.sample("y", dist.Normal(torch.zeros(1), 1.0)).shape == (5,)


def test_reparam_mechanism():
    class Shift:
        def apply(self, msg):
            aux = probpl.sample(msg["name"] + "_base", dist.Normal(0.0, 1.0))
            value = aux + 100.0
            return {"fn": dist.Delta(value), "value": value, "is_observed": True}

    tr = poutine.trace(poutine.reparam(model, config={"z": Shift()})).get_trace()
    assert "z_base" in tr.nodes
    assert tr.nodes["z"]["value"].item() == pytest.approx(tr.nodes["z_base"]["value"] + 100.0)


def test_custom_messenger_written_the_pyro_way():
    class LogJoint(poutine.Messenger):
        def __init__(self):
            super().__init__()
            self.log_joint = 0.0

        def _pyro_sample(self, msg):
            msg["infer"]["seen"] = True

        def _pyro_post_sample(self, msg):
            self.log_joint = self.log_joint + msg["fn"].log_prob(msg["value"]).sum()

    with LogJoint() as lj:
        with poutine.trace() as tr:
            model(DATA)
    tr.trace.compute_log_prob()
    assert lj.log_joint.item() == pytest.approx(tr.trace.log_prob_sum().item(), rel=1e-6)
    assert tr.trace.nodes["z"]["infer"]["seen"]

    class Process(poutine.Messenger):
        def _process_message(self, msg):
            if msg["type"] == "sample" and not msg["is_observed"]:
                msg["value"] = torch.tensor(42.0)

    assert Process()(model)()[0].item() == 42.0


def test_messenger_call_does_not_mutate_and_stack_is_exception_safe():
    handler = poutine.trace()
    wrapped = handler(model)
    assert isinstance(handler, poutine.TraceMessenger)

    def bad():
        probpl.sample("z", dist.Normal(0.0, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        poutine.trace(poutine.block(poutine.scale(bad, scale=2.0))).get_trace()
    assert probpl.poutine.runtime._PYRO_STACK == []
    wrapped.get_trace()


def test_trace_copy_and_format_shapes():
    tr = poutine.trace(model).get_trace(DATA)
    tr.compute_log_prob()
    cp = tr.copy()
    cp.nodes["z"]["value"] = None
    assert tr.nodes["z"]["value"] is not None
    table = tr.format_shapes()
    assert "data[-1]" in table and "x (obs)" in table and "(3)" in table


def test_dense_graph_respects_sequential_independence():
    def m():
        a = probpl.sample("a", dist.Normal(0.0, 1.0))
        for i in probpl.plate("seq", 2):
            probpl.sample(f"b_{i}", dist.Normal(a, 1.0))
            probpl.sample(f"c_{i}", dist.Normal(a, 1.0))

    tr = poutine.trace(m, graph_type="dense").get_trace()
    assert "a" in tr.predecessors("b_0")
    assert "b_0" in tr.predecessors("c_0")
    assert "b_0" not in tr.predecessors("c_1")
    assert tr.successors("a") >= {"b_0", "b_1", "c_0", "c_1"}


def test_log_prob_inf_free_for_factor_and_deterministic():
    def m():
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        probpl.factor("f", -z**2)
        probpl.deterministic("d", 2 * z)

    tr = poutine.trace(m).get_trace()
    tr.compute_log_prob()
    z = tr.nodes["z"]["value"]
    expected = dist.Normal(0.0, 1.0).log_prob(z) - z**2
    assert tr.log_prob_sum().item() == pytest.approx(expected.item(), rel=1e-6)
    assert tr.nodes["d"]["value"].item() == pytest.approx(2 * z.item())
    assert math.isfinite(tr.log_prob_sum().item())


def test_block_observe_type_and_expose_types():
    tr = poutine.trace(poutine.block(model, hide_types=["observe"])).get_trace(DATA)
    assert "x" not in tr.nodes and "z" in tr.nodes
    tr = poutine.trace(poutine.block(model, expose_types=["sample"])).get_trace(DATA)
    assert "z" in tr.nodes and "x" not in tr.nodes and "loc" not in tr.nodes
    tr = poutine.trace(poutine.block(model, expose_all=True)).get_trace(DATA)
    assert {"loc", "z", "x"} <= set(tr.nodes)
    with pytest.raises(ValueError, match="both hidden and exposed"):
        poutine.block(model, hide=["z"], expose=["z"])


def test_register_and_unregister_the_pyro_way():
    class Recorder(poutine.Messenger):
        pass

    seen = []

    def record(msg):
        seen.append((msg["type"], msg["name"]))

    def run():
        with Recorder():
            probpl.sample("x", dist.Normal(0.0, 1.0))
            probpl.param("p", torch.tensor(1.0))

    run()
    assert seen == []
    Recorder.register(record, type="sample")
    Recorder.register(record, type="param", post=True)
    run()
    assert seen == [("sample", "x"), ("param", "p")]
    Recorder.unregister(type="sample")
    Recorder.unregister(type="param")
    seen.clear()
    run()
    assert seen == []
    with pytest.raises(ValueError, match="type"):
        Recorder.register(record)


def test_handlers_see_stack_changes_and_retyped_messages():
    class Names(poutine.Messenger):
        def __init__(self):
            super().__init__()
            self.sample, self.post = [], []

        def _pyro_sample(self, msg):
            self.sample.append(msg["name"])

        def _pyro_post_sample(self, msg):
            self.post.append(msg["name"])

    outer, inner = Names(), Names()
    prior = dist.Normal(0.0, 1.0)
    with outer:
        probpl.sample("a", prior)
        with inner:
            probpl.sample("b", prior)
            # lift turns the param into a sample site on its way out: handlers
            # outside it see (and trace records) a sample.
            with poutine.trace() as tr, poutine.lift(prior=prior):
                probpl.param("c", torch.tensor(0.0))
        probpl.sample("d", prior)
        with poutine.block(hide=["e"]):
            probpl.sample("e", prior)
    assert outer.sample == ["a", "b", "c", "d"] and outer.post == outer.sample
    assert inner.sample == ["b", "c"] and inner.post == inner.sample
    assert tr.trace.nodes["c"]["type"] == "sample"
    assert probpl.poutine.runtime._PYRO_STACK == []


def test_sequential_plate_frames_follow_the_iteration():
    with poutine.trace() as tr:
        for i in probpl.plate("seq", 3):
            with probpl.plate("data", 2):
                probpl.sample(f"x_{i}", dist.Normal(0.0, 1.0))
    for i in range(3):
        frames = tr.trace.nodes[f"x_{i}"]["cond_indep_stack"]
        assert [(f.name, f.dim, f.counter) for f in frames] == [("seq", None, i),
                                                                ("data", -1, 0)]
        assert tr.trace.nodes[f"x_{i}"]["value"].shape == (2,)


def test_fresh_handlers_of_the_same_classes_each_get_their_messages():
    # Dispatch plans are shared by stacks of the same handler classes; each
    # message must still reach the handler instances on the stack right now.
    class Count(poutine.Messenger):
        def __init__(self):
            super().__init__()
            self.names = []

        def _pyro_post_sample(self, msg):
            self.names.append(msg["name"])

    prior = dist.Normal(0.0, 1.0)
    runs = []
    for i in range(3):
        with poutine.trace() as tr, Count() as count:
            probpl.sample(f"x{i}", prior)
            probpl.param(f"p{i}", torch.tensor(1.0))
        runs.append((tr.trace, count))
    for i, (trace, count) in enumerate(runs):
        assert list(trace.nodes) == [f"x{i}", f"p{i}"]
        assert count.names == [f"x{i}"]
    # The same classes in another order, and a longer stack, dispatch afresh.
    with Count() as outer, poutine.trace() as tr:
        with poutine.block(hide=["hidden"]):
            probpl.sample("hidden", prior)
        probpl.sample("shown", prior)
    assert outer.names == ["shown"] and list(tr.trace.nodes) == ["shown"]


def test_trace_messenger_records_a_new_trace_each_use():
    tm = poutine.trace()
    first = tm.trace
    with tm:
        probpl.sample("a", dist.Normal(0.0, 1.0))
    assert tm.trace is first and list(first.nodes) == ["a"]
    with tm:
        probpl.sample("b", dist.Normal(0.0, 1.0))
    assert list(tm.trace.nodes) == ["b"] and list(first.nodes) == ["a"]
    traced = poutine.trace(lambda: probpl.sample("c", dist.Normal(0.0, 1.0)))
    t1, t2 = traced.get_trace(), traced.get_trace()
    assert t1 is not t2
    assert list(t1.nodes) == ["_INPUT", "c", "_RETURN"] == list(t2.nodes)


def test_new_message_defaults_are_fresh():
    from probpl.poutine.runtime import new_message

    a, b = new_message(name="x"), new_message(type="param", extra_field=1)
    assert a["type"] == "sample" and a["name"] == "x" and a["scale"] == 1.0
    assert b["type"] == "param" and b["extra_field"] == 1
    a["infer"]["k"] = 1
    a["kwargs"]["k"] = 1
    assert b["infer"] == {} and b["kwargs"] == {}
