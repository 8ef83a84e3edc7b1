"""JitTrace_ELBO: the recorded step gives the eager step's loss and gradients
(particles drawn one by one or vectorised), draws afresh each step, records
again when parameters or shapes change, and falls back to the eager ELBO (with
a warning) where it cannot record."""

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.distributions import constraints
from probpl.infer.autoguide import AutoNormal
from probpl.infer.jit_elbo import JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
from probpl.optim import Adam

DATA = torch.linspace(-1.0, 2.0, 10)


def model(x):
    a = probpl.sample("a", dist.Normal(0.0, 1.0))
    s = probpl.sample("s", dist.LogNormal(0.0, 1.0))
    with probpl.plate("data", len(x)):
        probpl.sample("x", dist.Normal(a, s), obs=x)


def grads_of(elbo, model, guide, *args, seed=1):
    """Loss and ``{name: grad}`` of one ``loss_and_grads`` call at a fixed seed."""
    store = probpl.get_param_store()
    for _, p in store.named_parameters():
        p.grad = None
    probpl.set_rng_seed(seed)
    loss = elbo.loss_and_grads(model, guide, *args)
    out = {n: p.grad.clone() for n, p in store.named_parameters() if p.grad is not None}
    for _, p in store.named_parameters():
        p.grad = None
    return loss, out


def jit_entry(elbo):
    (entry,) = elbo._entries.values()
    return entry


def assert_same_step(jit, eager, model, guide, data, seed):
    """The compiled and the eager ELBO give the same loss and gradients at the
    same seed; returns the eager gradients."""
    jit_loss, jit_grads = grads_of(jit, model, guide, data, seed=seed)
    loss, grads = grads_of(eager, model, guide, data, seed=seed)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == jit_grads.keys()
    for name in grads:
        assert torch.allclose(jit_grads[name], grads[name], rtol=1e-4, atol=1e-6), name
    return grads


@pytest.mark.parametrize("jit_cls, eager_cls", [
    (JitTrace_ELBO, Trace_ELBO),
    (JitTraceMeanField_ELBO, TraceMeanField_ELBO),
    (JitTraceGraph_ELBO, TraceGraph_ELBO),
])
def test_recorded_step_matches_eager(jit_cls, eager_cls):
    guide = AutoNormal(model)
    jit, eager = jit_cls(), eager_cls()
    for _ in range(3):  # eager first step, recording, recorded step
        jit_loss, jit_grads = grads_of(jit, model, guide, DATA)
    assert jit_entry(jit).mode == "trace"
    loss, grads = grads_of(eager, model, guide, DATA)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == jit_grads.keys() and len(grads) == 4
    for name in grads:
        assert torch.allclose(jit_grads[name], grads[name], rtol=1e-4, atol=1e-6), name


def test_particles_match_eager_and_outer_handlers_see_params():
    guide = AutoNormal(model)
    jit = JitTrace_ELBO(num_particles=3)
    for _ in range(3):
        jit_loss, jit_grads = grads_of(jit, model, guide, DATA)
    loss, grads = grads_of(Trace_ELBO(num_particles=3), model, guide, DATA)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    for name in grads:
        assert torch.allclose(jit_grads[name], grads[name], rtol=1e-4, atol=1e-6), name
    with probpl.poutine.trace(param_only=True) as tr:
        jit.loss_and_grads(model, guide, DATA)
    assert set(tr.trace.nodes) == set(grads)


def beta_bernoulli_model(x):
    """A score-function site ``k`` beside a subsampled Beta-Bernoulli."""
    p = probpl.sample("p", dist.Beta(2.0, 2.0))
    with probpl.plate("data", len(x), subsample_size=4) as idx:
        probpl.sample("x", dist.Bernoulli(p), obs=x[idx])
    probpl.sample("k", dist.Bernoulli(0.3))


def beta_bernoulli_guide(x):
    a = probpl.param("a", torch.tensor(2.0), constraint=constraints.positive)
    probpl.sample("p", dist.Beta(a, 2.0))
    q = probpl.param("q", torch.tensor(0.5), constraint=constraints.unit_interval)
    probpl.sample("k", dist.Bernoulli(q))


BERNOULLI_DATA = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])


def test_score_function_and_subsampling_match_eager():
    model, guide, x = beta_bernoulli_model, beta_bernoulli_guide, BERNOULLI_DATA
    jit = JitTrace_ELBO()
    for seed in range(3):
        jit_loss, jit_grads = grads_of(jit, model, guide, x, seed=seed)
    assert jit_entry(jit).mode == "trace"
    loss, grads = grads_of(Trace_ELBO(), model, guide, x, seed=2)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    for name in grads:
        assert torch.allclose(jit_grads[name], grads[name], rtol=1e-4, atol=1e-6), name
    # Subsample indices and draws are fresh on every recorded step.
    losses = {round(grads_of(jit, model, guide, x, seed=s)[0], 5) for s in range(10, 20)}
    assert len(losses) > 5


def test_fits_autonormal_and_records_once():
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.05}), JitTrace_ELBO())
    losses = svi.run(300, DATA, progress_bar=False)
    assert len(set(losses[-20:])) == 20  # fresh draws each step
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    entry = jit_entry(svi.loss)
    assert entry.mode == "trace"
    fn = entry.fn
    svi.step(DATA)
    assert entry.fn is fn


def test_a_recording_that_drifts_from_autograd_is_replaced():
    guide = AutoNormal(model)
    jit = JitTrace_ELBO()
    for _ in range(3):
        grads_of(jit, model, guide, DATA)
    entry = jit_entry(jit)
    recorded = entry.fn
    entry.fn = lambda params, tensors: tuple(2 * t for t in recorded(params, tensors))
    entry.verify = True  # as on the first step after recording
    jit_loss, jit_grads = grads_of(jit, model, guide, DATA)
    loss, grads = grads_of(Trace_ELBO(), model, guide, DATA)
    assert entry.mode == "trace_forward" and entry.fn is None
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    for name in grads:
        assert torch.allclose(jit_grads[name], grads[name], rtol=1e-4, atol=1e-6), name
    grads_of(jit, model, guide, DATA)
    assert entry.mode == "trace_forward" and entry.fn is not None


def test_records_again_for_new_shapes_and_new_params():
    guide = AutoNormal(model)
    elbo = JitTrace_ELBO()
    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    for _ in range(3):
        svi.step(DATA)
    for _ in range(3):
        svi.step(DATA[:5])
    assert len(elbo._entries) == 2
    # Replacing the parameter tensors (e.g. loading a store) records again.
    store = probpl.get_param_store()
    state = store.get_state()
    store.set_state(state)
    key = elbo._validation_key(model, guide, (DATA,), {})
    old = elbo._entries[key].fn
    svi.step(DATA)  # eager: the guide takes up the new tensors
    svi.step(DATA)  # records again
    assert elbo._entries[key].fn not in (None, old)
    assert elbo._entries[key].mode == "trace"
    assert all(p.grad is None for _, p in store.named_parameters())


def test_frozen_parameter_gets_no_gradient():
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.05}), JitTrace_ELBO())
    for _ in range(3):
        svi.step(DATA)
    frozen = probpl.get_param_store()._params["AutoNormal.locs.a"]
    frozen.requires_grad_(False)
    value = frozen.clone()
    for _ in range(4):
        svi.step(DATA)
    assert torch.equal(frozen, value)
    assert jit_entry(svi.loss).mode == "trace"


def test_closed_over_tensor_requiring_grad_falls_back_to_eager():
    w = torch.ones(3, requires_grad=True)

    def model(x):
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        with probpl.plate("d", 3):
            probpl.sample("x", dist.Normal(z * w, 1.0), obs=x)

    def guide(x):
        probpl.sample("z", dist.Normal(probpl.param("loc", torch.tensor(0.0)), 1.0))

    svi = SVI(model, guide, Adam({"lr": 0.1}), JitTrace_ELBO())
    svi.step(torch.ones(3))
    with pytest.warns(UserWarning, match="cannot trace.*eager"):
        svi.step(torch.ones(3))
    w.grad = None
    svi.step(torch.ones(3))
    assert w.grad is not None  # the eager backward reaches it


def test_decaying_baseline_runs_eagerly():
    def model():
        probpl.sample("k", dist.Bernoulli(0.3))

    def guide():
        q = probpl.param("q", torch.tensor(0.5), constraint=constraints.unit_interval)
        probpl.sample("k", dist.Bernoulli(q),
                      infer={"baseline": {"use_decaying_avg_baseline": True}})

    elbo = JitTraceGraph_ELBO()
    svi = SVI(model, guide, Adam({"lr": 0.01}), elbo)
    svi.step()
    with pytest.warns(UserWarning, match="writes the param store"):
        svi.step()
    for _ in range(3):
        svi.step()
    assert jit_entry(elbo).mode == "eager"


def test_nonfinite_loss_names_site():
    def model(x):
        z = probpl.sample("z", dist.Normal(0.0, 1.0))
        probpl.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        probpl.sample("z", dist.Normal(probpl.param("loc", torch.tensor(0.0)), 1.0))

    svi = SVI(model, guide, Adam({"lr": 0.1}), JitTrace_ELBO())
    for _ in range(3):
        svi.step(torch.tensor(0.5))
    with pytest.raises(ValueError, match="site 'x'"):
        svi.step(torch.tensor(float("inf")))
    assert probpl.param("loc").grad is None  # nothing was applied


def test_compile_option_is_validated():
    with pytest.raises(ValueError, match="compiler"):
        JitTrace_ELBO(jit_options={"compiler": "nope"})


def test_module_model_with_shape_sized_plate_records_and_matches_eager():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(20, 3), torch.randn(20)

    def model(x, y):
        probpl.module("net", net)
        scale = probpl.sample("scale", dist.LogNormal(0.0, 1.0))
        with probpl.plate("data", x.shape[0]):
            probpl.sample("y", dist.Normal(net(x).squeeze(-1), scale), obs=y)

    guide = AutoNormal(model)
    grads = {}
    for elbo in (Trace_ELBO(), JitTrace_ELBO()):
        probpl.set_rng_seed(3)
        svi = SVI(model, guide, Adam({"lr": 0.0}), elbo)
        for _ in range(3):  # eager, record, verify
            svi.step(x, y)
        probpl.set_rng_seed(4)
        elbo.loss_and_grads(model, guide, x, y)
        grads[type(elbo).__name__] = {
            n: p.grad.clone() for n, p in probpl.get_param_store().named_parameters()
        }
        for p in dict(probpl.get_param_store().named_parameters()).values():
            p.grad = None
    for name, g in grads["Trace_ELBO"].items():
        torch.testing.assert_close(grads["JitTrace_ELBO"][name], g, rtol=1e-4, atol=1e-5)


def local_model(x):
    # A global latent and a local one per data point, so guide sites sit both
    # outside and inside the data plate (right of the particle plate).
    mu = probpl.sample("mu", dist.Normal(0.0, 1.0))
    with probpl.plate("data", len(x)):
        z = probpl.sample("z", dist.Normal(mu, 1.0))
        probpl.sample("x", dist.Normal(z, 0.5), obs=x)


def _warm(elbo, model, guide, *args):
    """Eager first step (it guesses the plate nesting, consuming draws) and
    recording, so that the next seeded call sees the same draws on both sides."""
    for seed in range(3):
        grads_of(elbo, model, guide, *args, seed=100 + seed)


@pytest.mark.parametrize("jit_cls, eager_cls", [
    (JitTrace_ELBO, Trace_ELBO),
    (JitTraceMeanField_ELBO, TraceMeanField_ELBO),
    (JitTraceGraph_ELBO, TraceGraph_ELBO),
])
@pytest.mark.parametrize("which", ["global", "local"])
def test_vectorized_particles_match_eager(jit_cls, eager_cls, which):
    m = model if which == "global" else local_model
    guide = AutoNormal(m)
    jit = jit_cls(num_particles=5, vectorize_particles=True)
    eager = eager_cls(num_particles=5, vectorize_particles=True)
    _warm(jit, m, guide, DATA)
    _warm(eager, m, guide, DATA)
    assert jit_entry(jit).mode == "trace"
    grads = assert_same_step(jit, eager, m, guide, DATA, seed=7)
    assert len(grads) == 4


@pytest.mark.parametrize("jit_cls, eager_cls", [
    (JitTrace_ELBO, Trace_ELBO),
    (JitTraceGraph_ELBO, TraceGraph_ELBO),
])
def test_vectorized_particles_with_score_function_and_subsampling(jit_cls, eager_cls):
    model, guide, x = beta_bernoulli_model, beta_bernoulli_guide, BERNOULLI_DATA
    jit = jit_cls(num_particles=6, vectorize_particles=True)
    eager = eager_cls(num_particles=6, vectorize_particles=True)
    _warm(jit, model, guide, x)
    _warm(eager, model, guide, x)
    assert jit_entry(jit).mode == "trace"
    grads = assert_same_step(jit, eager, model, guide, x, seed=5)
    assert grads.keys() == {"a", "q"}


def _log_variance_and_se(values):
    """``log`` of the sample variance and its standard error,
    ``sqrt((2 + excess kurtosis) / n)`` (delta method)."""
    v = torch.tensor(values, dtype=torch.float64)
    c = v - v.mean()
    var = c.pow(2).mean()
    excess = c.pow(4).mean() / var**2 - 3
    return var.log().item(), ((2 + excess.clamp(min=0)) / len(v)).sqrt().item()


def test_vectorized_particles_divide_the_loss_variance():
    # The loss averages N independent particles, so at fixed parameters its
    # variance over fresh draws is the one-particle variance over N. The two
    # log-variances are compared within 4 standard errors (each from its own
    # draws' kurtosis), a false-fail rate below 1e-4; ignoring the particles
    # would miss by log 16 = 2.8, against a tolerance of about 0.6.
    guide = AutoNormal(local_model)
    n, reps = 16, 400
    stats = []
    for k in (1, n):
        elbo = JitTrace_ELBO(num_particles=k, vectorize_particles=True)
        _warm(elbo, local_model, guide, DATA)
        assert jit_entry(elbo).mode == "trace"
        losses = [elbo.loss_and_grads(local_model, guide, DATA) for _ in range(reps)]
        for _, p in probpl.get_param_store().named_parameters():
            p.grad = None
        stats.append(_log_variance_and_se(losses))
    (log_v1, se1), (log_vn, sen) = stats
    tol = 4 * (se1**2 + sen**2) ** 0.5
    assert tol < 1.0
    assert abs(log_v1 - log_vn - torch.tensor(float(n)).log().item()) < tol


def _vae(batch=8):
    """A small VAE whose encoder and decoder are registered with ``probpl.module``."""
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, 4)
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 6))
    data = (torch.rand(batch, 6) < 0.3).float()

    def model(x):
        probpl.module("decoder", decoder)
        with probpl.plate("data", x.shape[0]):
            z = probpl.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            probpl.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x):
        probpl.module("encoder", encoder)
        with probpl.plate("data", x.shape[0]):
            h = encoder(x)
            loc, scale = h[:, :2], torch.nn.functional.softplus(h[:, 2:]) + 1e-4
            probpl.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide, data


def _module_grads_match_eager(jit, mode):
    model, guide, data = _vae()
    for _ in range(3):  # eager, record, verify
        jit_loss, jit_grads = grads_of(jit, model, guide, data)
    assert jit_entry(jit).mode == mode
    names = set(jit_entry(jit).names)
    assert names == {"encoder$$$weight", "encoder$$$bias", "decoder$$$0.weight",
                     "decoder$$$0.bias", "decoder$$$2.weight", "decoder$$$2.bias"}
    loss, grads = grads_of(Trace_ELBO(), model, guide, data)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    assert set(jit_grads) == set(grads) == names
    for name, g in grads.items():
        torch.testing.assert_close(jit_grads[name], g, rtol=1e-4, atol=1e-5)


def test_module_weights_are_recorded_as_inputs():
    # Two nn.Modules whose weights enter the recording as inputs (through the
    # param store), with a Bernoulli likelihood: the frozen graph of this step
    # is rejected by TorchScript's optimizer, and the unfrozen one runs instead.
    _module_grads_match_eager(JitTrace_ELBO(), "trace")


@pytest.mark.slow  # about 15 s of compilation with a cold inductor cache
def test_inductor_compiles_module_model_and_matches_eager():
    pytest.importorskip("torch._inductor")
    _module_grads_match_eager(JitTrace_ELBO(jit_options={"compiler": "inductor"}), "inductor")


def test_inductor_failure_warns_and_uses_torchscript():
    pytest.importorskip("torch._inductor")
    jit = JitTrace_ELBO(jit_options={"compiler": "inductor", "no_such_option": 1})
    model, guide, data = _vae()
    grads_of(jit, model, guide, data)
    with pytest.warns(UserWarning, match="inductor did not compile"):
        grads_of(jit, model, guide, data)
    assert jit_entry(jit).mode == "trace_forward"
    jit_loss, jit_grads = grads_of(jit, model, guide, data)
    loss, grads = grads_of(Trace_ELBO(), model, guide, data)
    assert jit_loss == pytest.approx(loss, rel=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(jit_grads[name], g, rtol=1e-4, atol=1e-5)
