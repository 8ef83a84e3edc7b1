"""Optimizer wrappers: per-parameter options, clipping, ClippedAdam, schedulers,
state round trips."""

import copy

import pytest
import torch

import probpl
import probpl.optim as optim
from probpl.optim.clipped_adam import ClippedAdam


def _grads(values):
    params = []
    for name, g in values.items():
        probpl.param(name, torch.zeros(2, dtype=torch.float64))
        p = dict(probpl.get_param_store().named_parameters())[name]
        p.grad = torch.full_like(p, g)
        params.append(p)
    return params


def test_per_parameter_options_one_and_two_arguments():
    params = _grads({"a": 1.0, "b": 1.0})
    sgd = optim.SGD(lambda name: {"lr": 0.1 if name == "a" else 0.01})
    sgd(params)
    assert torch.allclose(probpl.param("a"), torch.full((2,), -0.1, dtype=torch.float64))
    assert torch.allclose(probpl.param("b"), torch.full((2,), -0.01, dtype=torch.float64))
    sgd2 = optim.SGD(lambda module, name: {"lr": 1.0})
    params = _grads({"a": 1.0})
    sgd2(params)
    assert torch.allclose(probpl.param("a"), torch.full((2,), -1.1, dtype=torch.float64))


def test_clip_norm_is_per_parameter():
    params = _grads({"a": 3.0, "b": 0.1})
    optim.SGD({"lr": 1.0}, clip_args={"clip_norm": 1.0})(params)
    # a's gradient (norm 4.24) is scaled to norm 1; b's (norm 0.14) is left alone.
    assert probpl.param("a").norm().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(probpl.param("b"), torch.full((2,), -0.1, dtype=torch.float64))


def test_clipped_adam_first_step_and_lr_decay():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ClippedAdam([p], lr=0.1, clip_norm=1.0, lrd=0.5)
    p.grad = torch.tensor([100.0, -0.5, 0.0])
    opt.step()
    # Adam's first step moves each coordinate by lr * sign(g) (the bias-corrected
    # ratio is g / |g|), with lr already decayed to 0.05; a zero gradient stays put.
    assert torch.allclose(p.detach(), torch.tensor([-0.05, 0.05, 0.0]), atol=1e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_exponential_lr_scheduler_and_late_params():
    sched = optim.ExponentialLR({"optimizer": torch.optim.SGD, "optim_args": {"lr": 1.0},
                                 "gamma": 0.5})
    sched.step()  # nothing to schedule yet: a no-op
    sched(_grads({"a": 1.0}))
    sched.step()
    assert sched.optim.param_groups[0]["lr"] == pytest.approx(0.5)
    sched(_grads({"a": 1.0, "b": 1.0}))
    assert sched.optim.param_groups[-1]["lr"] == pytest.approx(1.0)  # b starts afresh
    sched.step()
    lrs = [g["lr"] for g in sched.optim.param_groups]
    assert lrs == pytest.approx([0.25, 0.5])


def test_state_round_trip_before_params_exist(tmp_path):
    adam = optim.Adam({"lr": 0.1})
    adam(_grads({"a": 1.0}))
    adam.save(tmp_path / "o.pt")
    state = adam.get_state()
    assert set(state) == {"a"} and int(state["a"]["state"]["step"]) == 1
    fresh = optim.Adam({"lr": 0.1})
    fresh.load(tmp_path / "o.pt")
    fresh(_grads({"a": 1.0}))
    assert int(fresh.get_state()["a"]["state"]["step"]) == 2


def test_bad_arguments():
    with pytest.raises(TypeError, match="optim_args"):
        optim.Adam(3.0)
    with pytest.raises(ValueError, match="clip_args"):
        optim.Adam({}, clip_args={"clip": 1.0})
    with pytest.raises(ValueError, match="optimizer"):
        optim.StepLR({"step_size": 2})


def test_every_torch_optimizer_is_wrapped():
    for name in ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "ClippedAdam", "ExponentialLR",
                 "ReduceLROnPlateau", "PyroOptim", "PyroLRScheduler"):
        assert hasattr(optim, name)


def _step_both(g, params, ours, reference, ref_opt):
    """One step of ours and of torch's optimizer with the same random gradients;
    the parameters must stay equal."""
    for name in reference:
        grad = torch.randn(reference[name].shape, generator=g, dtype=torch.float64)
        params[name].grad = grad.clone()
        reference[name].grad = grad.clone()
    ours([params[n] for n in reference])
    ref_opt.step()
    for name in reference:
        assert torch.allclose(params[name].detach(), reference[name].detach(), rtol=1e-12,
                              atol=1e-12)


@pytest.mark.parametrize("cls, options", [
    ("Adam", {"lr": 0.1}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.1, "weight_decay": 0.5}),
])
def test_fused_adam_matches_torch_step(cls, options):
    # Our wrapper runs fused Adam's kernels directly after the first step; every
    # step must match torch's own optimizer (fed the same gradients) to rounding.
    g = torch.Generator().manual_seed(0)
    init = {"a": torch.randn(3, generator=g, dtype=torch.float64),
            "b": torch.randn((), generator=g, dtype=torch.float64)}
    reference = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    ref_opt = getattr(torch.optim, cls)(list(reference.values()), **options)
    ours = getattr(optim, cls)(options)
    store = probpl.get_param_store()
    for name, value in init.items():
        probpl.param(name, value.clone())
    params = dict(store.named_parameters())
    for _ in range(5):
        _step_both(g, params, ours, reference, ref_opt)
    assert ours.optim.param_groups[0]["fused"] is True
    assert all(int(ours.optim.state[p]["step"]) == 5 for p in params.values())


def test_fused_adam_follows_torch_through_restores_and_state_changes():
    # The fused update reuses what it gathered from the optimizer state between
    # steps; a restored state, a torch-level load_state_dict and a parameter
    # that joins later must all be picked up, with each parameter's own count.
    g = torch.Generator().manual_seed(1)
    init = {"a": torch.randn(3, generator=g, dtype=torch.float64),
            "b": torch.randn((), generator=g, dtype=torch.float64)}
    ours = optim.Adam({"lr": 0.1})
    for name, value in init.items():
        probpl.param(name, value.clone())
    params = dict(probpl.get_param_store().named_parameters())
    reference = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    ref_opt = torch.optim.Adam(list(reference.values()), lr=0.1)

    def step():
        _step_both(g, params, ours, reference, ref_opt)

    for _ in range(3):
        step()
    saved = ours.get_state()
    ref_saved = copy.deepcopy(ref_opt.state_dict())
    for _ in range(2):
        step()
    ours.set_state(saved)  # back to step 3 on both sides
    with torch.no_grad():
        for name in init:
            params[name].copy_(reference[name])
    ref_opt.load_state_dict(ref_saved)
    for _ in range(2):
        step()
    ours.optim.load_state_dict(ours.optim.state_dict())
    step()
    assert [int(ours.optim.state[params[n]]["step"]) for n in init] == [6, 6]
    # A parameter that appears later counts its own steps.
    probpl.param("c", torch.zeros(2, dtype=torch.float64))
    c = dict(probpl.get_param_store().named_parameters())["c"]
    for _ in range(2):
        for p in (*params.values(), c):
            p.grad = torch.ones_like(p)
        ours([*params.values(), c])
    assert int(ours.optim.state[c]["step"]) == 2
    assert int(ours.optim.state[params["a"]]["step"]) == 8
