"""A battery of small valid and invalid model/guide pairs, run under every ELBO."""

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.distributions import constraints
from probpl.infer.jit_elbo import JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO
from probpl.infer.renyi_elbo import RenyiELBO
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
from probpl.optim import Adam

ELBOS = [Trace_ELBO, TraceMeanField_ELBO, TraceGraph_ELBO,
         lambda: RenyiELBO(num_particles=2), JitTrace_ELBO, JitTraceMeanField_ELBO,
         JitTraceGraph_ELBO]
IDS = ["Trace", "MeanField", "Graph", "Renyi", "JitTrace", "JitMeanField", "JitGraph"]


def assert_ok(model, guide, elbo, *args):
    svi = SVI(model, guide, Adam({"lr": 1e-3}), elbo)
    for _ in range(3):  # later steps run without validation (a Jit ELBO records on the 2nd)
        svi.step(*args)


def assert_error(model, guide, elbo, match, exc=(ValueError, RuntimeError, NotImplementedError)):
    svi = SVI(model, guide, Adam({"lr": 1e-3}), elbo)
    with pytest.raises(exc, match=match):
        svi.step()


def loc_param(name="loc", shape=()):
    return probpl.param(name, torch.zeros(shape))


@pytest.fixture(params=ELBOS, ids=IDS)
def elbo(request):
    return request.param()


def test_nonempty_model_empty_guide_warns(elbo):
    def model():
        probpl.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))
        probpl.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pass

    with pytest.warns(UserWarning, match=r"\['z'\].*not in the guide"):
        assert_ok(model, guide, elbo)


def test_vectorized_and_nested_plates_ok(elbo):
    def model():
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        with probpl.plate("outer", 3, dim=-2):
            with probpl.plate("inner", 4):
                probpl.sample("x", dist.Normal(z, 1.0), obs=torch.zeros(3, 4))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(), 1.0))

    assert_ok(model, guide, elbo)


def test_sequential_plate_and_subsample_ok(elbo):
    def model():
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        for i in probpl.plate("seq", 3):
            probpl.sample(f"x_{i}", dist.Normal(z, 1.0), obs=torch.tensor(1.0))
        with probpl.plate("data", 10, subsample_size=4):
            probpl.sample("y", dist.Normal(z, 1.0), obs=torch.zeros(4))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(), 1.0))

    assert_ok(model, guide, elbo)


def test_factor_and_deterministic_ok(elbo):
    def model():
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        probpl.deterministic("z2", z * 2)
        probpl.factor("f", -(z**2))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(), 1.0))

    assert_ok(model, guide, elbo)


def test_guide_only_site_warns(elbo):
    def model():
        probpl.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(), 1.0))
        probpl.sample("extra", dist.Normal(0.0, 1.0))

    with pytest.warns(UserWarning, match=r"\['extra'\] in the guide but not in the model"):
        assert_ok(model, guide, elbo)


def test_sampled_in_guide_observed_in_model_errors(elbo):
    def model():
        probpl.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    def guide():
        probpl.sample("x", dist.Normal(0.0, 1.0))

    assert_error(model, guide, elbo, match="'x'")


def test_enumerated_guide_site_errors(elbo):
    def model():
        probpl.sample("k", dist.Bernoulli(0.5))

    def guide():
        p = probpl.param("p", torch.tensor(0.5), constraint=constraints.unit_interval)
        probpl.sample("k", dist.Bernoulli(p), infer={"enumerate": "parallel"})

    assert_error(model, guide, elbo, match="'k'.*TraceEnum_ELBO|'k'.*rsample")


def test_batch_dim_outside_plates_errors(elbo):
    def model():
        probpl.sample("z", dist.Normal(torch.zeros(5), 1.0))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(shape=(5,)), 1.0))

    assert_error(model, guide, elbo, match="'z'.*\\(5,\\)")


def test_nonfinite_loss_names_site(elbo):
    def model():
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        probpl.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(float("inf")))

    def guide():
        probpl.sample("z", dist.Normal(loc_param(), 1.0))

    with probpl.validation_enabled(False):
        assert_error(model, guide, elbo, match="site 'x'")


def test_nonreparam_guide_rejected_by_mean_field():
    def model():
        probpl.sample("k", dist.Bernoulli(0.5))

    def guide():
        p = probpl.param("p", torch.tensor(0.5), constraint=constraints.unit_interval)
        probpl.sample("k", dist.Bernoulli(p))

    assert_error(model, guide, TraceMeanField_ELBO(), match="'k'.*rsample")
    for make in (Trace_ELBO, TraceGraph_ELBO, lambda: RenyiELBO(num_particles=2)):
        assert_ok(model, guide, make())
