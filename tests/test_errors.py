"""Bad input gets a clear error naming the site, shapes and plates."""

import pytest
import torch

import probpl
import probpl.distributions as dist
import probpl.poutine as poutine


def test_duplicate_site_names():
    def m():
        probpl.sample("x", dist.Normal(0.0, 1.0))
        probpl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(RuntimeError, match="Multiple sample sites named 'x'"):
        poutine.trace(m).get_trace()


def test_obs_shape_does_not_broadcast():
    def m():
        with probpl.plate("data", 100):
            probpl.sample("x", dist.Normal(0.0, 1.0), obs=torch.zeros(50))

    match = r"site 'x' in plates 'data' \(dim -1, size 100\).*\(50,\)"
    with pytest.raises(ValueError, match=match):
        poutine.trace(m).get_trace()


def test_obs_event_shape_mismatch():
    def m():
        mvn = dist.MultivariateNormal(torch.zeros(3), torch.eye(3))
        probpl.sample("y", mvn, obs=torch.zeros(2))

    with pytest.raises(ValueError, match=r"site 'y'.*shape \(2,\).*event_shape \(3,\)"):
        poutine.trace(m).get_trace()


def test_batch_shape_conflicts_with_plate():
    def m():
        with probpl.plate("data", 100):
            probpl.sample("z", dist.Normal(torch.zeros(50), 1.0))

    with pytest.raises(
        ValueError,
        match=r"sample site 'z' in plate 'data' \(dim -1, size 100\): distribution batch_shape "
        r"\(50,\)",
    ):
        poutine.trace(m).get_trace()


def test_two_plates_claim_one_dim():
    with pytest.raises(ValueError, match="plates 'a' and 'b' both claim dim -1"):
        with probpl.plate("a", 2, dim=-1):
            with probpl.plate("b", 3, dim=-1):
                pass
    assert probpl.poutine.runtime._PYRO_STACK == []


def test_same_plate_name_nested():
    with pytest.raises(ValueError, match="plate 'a' is already active"):
        with probpl.plate("a", 2):
            with probpl.plate("a", 3):
                pass


def test_param_redeclared_with_different_constraint():
    probpl.param("p", torch.tensor(0.5), constraint=dist.constraints.positive)
    with pytest.raises(ValueError, match="param 'p' was created with constraint"):
        probpl.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)


def test_param_init_outside_constraint():
    with pytest.raises(ValueError, match="param 'q'.*violates"):
        probpl.param("q", torch.tensor(-1.0), constraint=dist.constraints.positive)


@pytest.mark.parametrize("bad", [torch.tensor(1.0), dist.Normal, 3.0])
def test_non_distribution_passed_to_sample(bad):
    with pytest.raises(TypeError, match="sample site 'x': expected a distribution"):
        poutine.trace(lambda: probpl.sample("x", bad)).get_trace()
    with pytest.raises(TypeError, match="sample site 'x': expected a distribution"):
        probpl.sample("x", bad)


def test_log_prob_error_names_site():
    def m():
        probpl.sample("x", dist.Normal(torch.zeros(3), 1.0).to_event(1), obs=torch.zeros(3))

    tr = poutine.trace(m).get_trace()
    tr.nodes["x"]["value"] = torch.zeros(4)
    with pytest.raises(ValueError, match="sample site 'x'"):
        tr.compute_log_prob()
