"""SVI: step/evaluate/run, parameter discovery, validation once, checkpoint-resume."""

import random

import numpy as np
import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.distributions import constraints
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.optim import Adam, ExponentialLR


def model(x):
    z = probpl.sample("z", dist.Normal(0.0, 1.0))
    with probpl.plate("data", len(x)):
        probpl.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    loc = probpl.param("loc", torch.tensor(0.0))
    scale = probpl.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    probpl.sample("z", dist.Normal(loc, scale))


X = torch.tensor([1.0, 2.0, 0.5])


def test_step_returns_float_and_updates_touched_params_only():
    probpl.param("unused", torch.tensor(5.0))
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    loss = svi.step(X)
    assert isinstance(loss, float)
    assert isinstance(svi.evaluate_loss(X), float)
    assert probpl.param("unused").item() == 5.0
    assert probpl.param("loc").item() != 0.0
    for _, p in probpl.get_param_store().named_parameters():
        assert p.grad is None


def test_run_progress_bar_does_not_touch_rng():
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    a = svi.run(20, X, progress_bar=False)
    probpl.clear_param_store()
    probpl.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    b = svi.run(20, X, progress_bar=True)
    assert a == b and len(a) == 20


def late_mean_loc(svi):
    """The guide's ``loc`` averaged over 300 iterates after 1200 steps."""
    svi.run(1200, X, progress_bar=False)
    locs = []
    for _ in range(300):
        svi.step(X)
        locs.append(probpl.param("loc").item())
    return np.mean(locs)


def test_converges_to_conjugate_posterior_mean():
    # Posterior N(3.5 / 4, 1 / 4); averaging 300 late iterates bounds the error
    # well inside 0.1 posterior sd (0.05).
    svi = SVI(model, guide, Adam({"lr": 0.02}), Trace_ELBO())
    assert abs(late_mean_loc(svi) - 3.5 / 4) < 0.05


def test_missing_latent_warns_once():
    def empty_guide(x):
        pass

    svi = SVI(model, empty_guide, Adam({"lr": 0.1}), Trace_ELBO())
    with pytest.warns(UserWarning, match="'z'"):
        svi.step(X)
    svi.step(X)  # validated already: no second warning (warnings are errors here)


def _rng_state():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _set_rng_state(state):
    torch.set_rng_state(state[0])
    random.setstate(state[1])
    np.random.set_state(state[2])


@pytest.mark.parametrize("make_optim", [
    lambda: Adam({"lr": 0.05}),
    lambda: ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.05},
                           "gamma": 0.9}),
], ids=["Adam", "ExponentialLR"])
def test_checkpoint_resume_matches_uninterrupted(tmp_path, make_optim):
    def train(svi, optim, steps):
        out = []
        for _ in range(steps):
            out.append(svi.step(X))
            if hasattr(optim, "scheduler"):
                optim.step()
        return out

    optim = make_optim()
    straight = train(SVI(model, guide, optim, Trace_ELBO()), optim, 20)
    final = probpl.param("loc").item()

    probpl.clear_param_store()
    probpl.set_rng_seed(0)
    optim = make_optim()
    first = train(SVI(model, guide, optim, Trace_ELBO()), optim, 10)
    probpl.get_param_store().save(tmp_path / "params.pt")
    optim.save(tmp_path / "optim.pt")
    rng = _rng_state()

    # A fresh "process": new store contents, optimizer and SVI.
    probpl.clear_param_store()
    probpl.set_rng_seed(123)
    probpl.get_param_store().load(tmp_path / "params.pt")
    optim = make_optim()
    optim.load(tmp_path / "optim.pt")
    _set_rng_state(rng)
    second = train(SVI(model, guide, optim, Trace_ELBO()), optim, 10)
    assert first + second == straight
    assert probpl.param("loc").item() == final


def test_loss_callable_and_class_error():
    def loss_fn(model, guide, *args):
        return Trace_ELBO().differentiable_loss(model, guide, *args)

    svi = SVI(model, guide, Adam({"lr": 0.1}), loss_fn)
    assert isinstance(svi.step(X), float)
    with pytest.raises(TypeError, match="instance"):
        SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO)


@pytest.mark.slow
def test_jit_trace_elbo_matches_posterior():
    from probpl.infer.jit_elbo import JitTrace_ELBO

    svi = SVI(model, guide, Adam({"lr": 0.02}), JitTrace_ELBO())
    assert abs(late_mean_loc(svi) - 3.5 / 4) < 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autonormal_step_after_inference_mode_matches_autograd(dtype):
    # Constants made once and reused across steps (the ELBO's signs, the guide's
    # log-density constant) must not be tensors made in inference mode, which
    # autograd cannot use; and the step's gradients are those of the loss.
    from probpl.infer.autoguide import AutoNormal

    x = torch.linspace(-1.0, 2.0, 10, dtype=dtype)

    def model2(x):
        a = probpl.sample("a", dist.Normal(torch.tensor(0.0, dtype=dtype), 1.0))
        s = probpl.sample("s", dist.LogNormal(torch.tensor(0.0, dtype=dtype), 1.0))
        with probpl.plate("data", len(x)):
            probpl.sample("x", dist.Normal(a, s), obs=x)

    from probpl.infer import trace_elbo
    from probpl.infer.autoguide import normal_site

    guide2 = AutoNormal(model2)
    elbo = Trace_ELBO()
    svi = SVI(model2, guide2, Adam({"lr": 0.01}), elbo)
    svi.step(x)
    trace_elbo._SIGNS.clear()
    normal_site._CONSTANTS.clear()
    with torch.inference_mode():
        assert np.isfinite(elbo.loss(model2, guide2, x))
    for _ in range(3):
        svi.step(x)
    params = dict(probpl.get_param_store().named_parameters())
    assert all(p.dtype == dtype for p in params.values())
    probpl.set_rng_seed(3)
    loss = elbo.differentiable_loss(model2, guide2, x)
    expected = torch.autograd.grad(loss, list(params.values()))
    probpl.set_rng_seed(3)
    value = elbo.loss_and_grads(model2, guide2, x)
    assert value == pytest.approx(loss.item(), rel=1e-6)
    for p, g in zip(params.values(), expected):
        assert torch.allclose(p.grad, g)
        p.grad = None


def test_scalar_backward_matches_tensor_backward():
    from probpl.infer.util import scalar_backward

    w = torch.tensor([0.5, -1.0], requires_grad=True)
    loss = (w.exp() * torch.tensor([2.0, 3.0])).sum()
    scalar_backward(loss, retain_graph=True)
    first = w.grad.clone()
    loss.backward()  # the graph was kept
    assert torch.allclose(w.grad, 2 * first)
    assert torch.allclose(first, w.detach().exp() * torch.tensor([2.0, 3.0]))
    w.grad = None
    scalar_backward(w.sum())
    with pytest.raises(RuntimeError):
        scalar_backward(w.sum() * 0 + loss)  # loss's graph is gone now
