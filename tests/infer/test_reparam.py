"""Reparameterizers leave the model's distribution unchanged."""

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl import poutine
from probpl.infer.reparam import LocScaleReparam, TransformReparam
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.optim import Adam


def model():
    with probpl.plate("draws", 20000):
        return probpl.sample("x", dist.Normal(1.0, 2.0))


@pytest.mark.parametrize("centered", [0.0, 0.3, None])
def test_loc_scale_preserves_distribution(centered):
    # 20000 draws of N(1, 2): sd of the mean 0.014, of the sd 0.01; bounds 0.06, 0.05.
    reparam_model = poutine.reparam(model, config={"x": LocScaleReparam(centered)})
    tr = poutine.trace(reparam_model).get_trace()
    x = tr.nodes["x"]["value"]
    assert "x_decentered" in tr.nodes and tr.nodes["x"]["is_observed"]
    assert abs(x.mean().item() - 1.0) < 0.06 and abs(x.std().item() - 2.0) < 0.05
    if centered is None:
        assert "x_centered" in probpl.get_param_store()


def test_loc_scale_student_t_shape_params():
    def t_model():
        return probpl.sample("x", dist.StudentT(5.0, 0.0, 1.0).expand([3]).to_event(1))

    m = poutine.reparam(t_model, config={"x": LocScaleReparam(0.0, shape_params=("df",))})
    tr = poutine.trace(m).get_trace()
    assert tr.nodes["x_decentered"]["fn"].event_shape == (3,)
    assert tr.nodes["x"]["value"].shape == (3,)


def test_transform_reparam():
    def ln_model():
        with probpl.plate("n", 4):
            return probpl.sample("x", dist.LogNormal(0.0, 1.0))

    tr = poutine.trace(poutine.reparam(ln_model, config={"x": TransformReparam()})).get_trace()
    assert torch.allclose(tr.nodes["x"]["value"], tr.nodes["x_base"]["value"].exp())


def test_reparam_errors_name_site():
    with pytest.raises(ValueError, match="'x'.*TransformedDistribution"):
        poutine.trace(poutine.reparam(model, config={"x": TransformReparam()})).get_trace()

    def observed():
        probpl.sample("y", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(NotImplementedError, match="'y' is observed"):
        poutine.reparam(observed, config={"y": LocScaleReparam()})()


def test_svi_with_learnable_centering():
    def hier():
        tau = probpl.sample("tau", dist.LogNormal(0.0, 1.0))
        theta = probpl.sample("theta", dist.Normal(0.0, tau))
        probpl.sample("y", dist.Normal(theta, 1.0), obs=torch.tensor(1.0))

    def guide():
        probpl.sample("tau", dist.LogNormal(probpl.param("a", torch.tensor(0.0)), 0.5))
        probpl.sample("theta_decentered", dist.Normal(probpl.param("b", torch.tensor(0.0)), 0.5))

    m = poutine.reparam(hier, config={"theta": LocScaleReparam()})
    svi = SVI(m, guide, Adam({"lr": 0.05}), Trace_ELBO())
    before = probpl.get_param_store()
    svi.run(20, progress_bar=False)
    assert "theta_centered" in before
    c = probpl.param("theta_centered").item()
    assert 0 < c < 1 and c != 0.5
