"""TraceEnum_ELBO, enum and config_enumerate against brute-force summation."""

import itertools
import math

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl import poutine
from probpl.infer.enum import config_enumerate, enumerated_log_density
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.infer.traceenum_elbo import TraceEnum_ELBO
from probpl.poutine.enum_messenger import enum


def empty_guide(*args, **kwargs):
    pass


def brute_force_log_z(model, latent_shapes, *args):
    """log sum over every assignment of the discrete latents of p(latents, data).

    ``latent_shapes`` maps a site to ``(num_values, shape)``, plus ``"float"`` for
    Bernoulli sites whose values are floats.
    """
    names = list(latent_shapes)
    grounded = [(n, i) for n in names for i in range(math.prod(latent_shapes[n][1]))]
    totals = []
    for assignment in itertools.product(*(range(latent_shapes[n][0]) for n, _ in grounded)):
        data = {}
        it = iter(assignment)
        for n in names:
            k, shape = latent_shapes[n][:2]
            vals = [next(it) for _ in range(math.prod(shape))]
            dtype = torch.float64 if latent_shapes[n][2:] == ("float",) else torch.long
            data[n] = torch.tensor(vals, dtype=dtype).reshape(shape)
        tr = poutine.trace(poutine.condition(model, data=data)).get_trace(*args)
        totals.append(tr.log_prob_sum())
    return torch.stack(totals).logsumexp(0)


def gmm(data, probs, locs):
    with probpl.plate("data", len(data)):
        z = probpl.sample("z", dist.Categorical(probs))
        probpl.sample("x", dist.Normal(locs[z], 1.0), obs=data)


def global_local(data, p_a, probs, locs):
    a = probpl.sample("a", dist.Bernoulli(p_a)).long()
    with probpl.plate("data", len(data)):
        z = probpl.sample("z", dist.Categorical(probs[a]))
        probpl.sample("x", dist.Normal(locs[z], 1.0), obs=data)


def nested(data, p_a, probs, locs):
    a = probpl.sample("a", dist.Bernoulli(p_a)).long()
    with probpl.plate("outer", data.shape[0], dim=-2):
        b = probpl.sample("b", dist.Categorical(probs[a]))
        with probpl.plate("inner", data.shape[1], dim=-1):
            c = probpl.sample("c", dist.Bernoulli(0.2 + 0.6 * (b == 1).double()))
            probpl.sample("x", dist.Normal(locs[b] + c, 1.0), obs=data)


def params(dtype=torch.float64):
    torch.manual_seed(0)
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=dtype)
    locs = torch.tensor([-1.0, 0.5, 2.0], dtype=dtype)
    return probs, locs


def test_gmm_loss_is_minus_log_marginal():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2, 2.5], dtype=torch.float64)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        config_enumerate(gmm), empty_guide, data, probs[0], locs
    )
    expected = brute_force_log_z(gmm, {"z": (3, (3,))}, data, probs[0], locs)
    assert loss == pytest.approx(-expected.item(), abs=1e-10)


def test_global_above_local():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2, 2.5], dtype=torch.float64)
    args = (data, torch.tensor(0.3, dtype=torch.float64), probs, locs)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(global_local), empty_guide,
                                                    *args)
    expected = brute_force_log_z(global_local, {"a": (2, (), "float"), "z": (3, (3,))}, *args)
    assert loss == pytest.approx(-expected.item(), abs=1e-10)


def test_nested_plates():
    probs, locs = params()
    data = torch.tensor([[0.1, -1.2], [2.5, 0.3]], dtype=torch.float64)
    args = (data, torch.tensor(0.3, dtype=torch.float64), probs, locs)
    loss = TraceEnum_ELBO(max_plate_nesting=2).loss(config_enumerate(nested), empty_guide, *args)
    expected = brute_force_log_z(
        nested, {"a": (2, (), "float"), "b": (3, (2, 1)), "c": (2, (2, 2), "float")}, *args
    )
    assert loss == pytest.approx(-expected.item(), abs=1e-10)


def hmm(ys, init, trans, locs):
    with probpl.plate("seqs", ys.shape[1], dim=-1):
        x = None
        for t in probpl.markov(range(ys.shape[0])):
            p = init if x is None else trans[x]
            x = probpl.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
            probpl.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=ys[t])


def hmm_params(S=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    init = torch.rand(S, generator=g, dtype=dtype).softmax(0)
    trans = (2 * torch.rand(S, S, generator=g, dtype=dtype)).softmax(-1)
    locs = torch.linspace(-2, 2, S, dtype=dtype)
    return init, trans, locs


def hmm_brute_force(ys, init, trans, locs):
    # Categorical normalises its probs, which matters for gradients.
    init = init / init.sum()
    trans = trans / trans.sum(-1, keepdim=True)
    total = 0.0
    for s in range(ys.shape[1]):
        terms = []
        for path in itertools.product(range(len(init)), repeat=ys.shape[0]):
            lp = init[path[0]].log()
            for t in range(1, len(path)):
                lp = lp + trans[path[t - 1], path[t]].log()
            lp = lp + dist.Normal(locs[list(path)], 1.0).log_prob(ys[:, s]).sum()
            terms.append(lp)
        total = total + torch.stack(terms).logsumexp(0)
    return total


def test_hmm_markov_loss():
    init, trans, locs = hmm_params()
    ys = torch.randn(6, 2, dtype=torch.float64)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(hmm, empty_guide, ys, init, trans, locs)
    assert loss == pytest.approx(-hmm_brute_force(ys, init, trans, locs).item(), abs=1e-9)


def two_chains(ys, trans_x, trans_w):
    x = w = 0
    for t in probpl.markov(range(len(ys))):
        x = probpl.sample(f"x_{t}", dist.Categorical(trans_x[x]), infer={"enumerate": "parallel"})
        w = probpl.sample(f"w_{t}", dist.Categorical(trans_w[w]), infer={"enumerate": "parallel"})
        probpl.sample(f"y_{t}", dist.Normal((x + 2 * w).double(), 1.0), obs=ys[t])


def test_two_independent_chains():
    g = torch.Generator().manual_seed(2)
    trans_x = torch.rand(2, 2, generator=g, dtype=torch.float64).softmax(-1)
    trans_w = torch.rand(2, 2, generator=g, dtype=torch.float64).softmax(-1)
    ys = torch.randn(4, dtype=torch.float64)
    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(two_chains, empty_guide, ys, trans_x, trans_w)
    expected = brute_force_log_z(
        two_chains, {f"{n}_{t}": (2, ()) for t in range(4) for n in "xw"}, ys, trans_x, trans_w
    )
    assert loss == pytest.approx(-expected.item(), abs=1e-9)


@pytest.mark.parametrize("T", [10, 1000])
def test_enum_dims_bounded_in_chain_length(T):
    init, trans, locs = hmm_params()
    ys = torch.zeros(T, 2, dtype=torch.float64)
    with enum(first_available_dim=-2):
        tr = poutine.trace(hmm).get_trace(ys, init, trans, locs)
    dims = {s["infer"]["_enumerate_dim"] for s in tr.nodes.values()
            if s["type"] == "sample" and "_enumerate_dim" in s["infer"]}
    assert dims == {-2, -3}


def test_gradients_match_brute_force():
    init, trans, locs = hmm_params()
    ys = torch.randn(4, 1, dtype=torch.float64)
    leaves = [x.clone().requires_grad_() for x in (init, trans, locs)]
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(hmm, empty_guide, ys, *leaves)
    actual = torch.autograd.grad(loss, leaves)
    expected = torch.autograd.grad(-hmm_brute_force(ys, *leaves), leaves)
    for a, e in zip(actual, expected):
        assert torch.allclose(a, e, atol=1e-9)


def test_enumerated_guide_site_is_exact():
    x = torch.tensor(1.3, dtype=torch.float64)

    def model():
        z = probpl.sample("z", dist.Bernoulli(torch.tensor(0.3, dtype=torch.float64)))
        probpl.sample("x", dist.Normal(2 * z, 1.0), obs=x)

    q = torch.tensor(0.6, dtype=torch.float64)

    def guide():
        probpl.sample("z", dist.Bernoulli(q), infer={"enumerate": "parallel"})

    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(model, guide)
    elbo = 0.0
    for z, qz, pz in ((0.0, 1 - q, 0.7), (1.0, q, 0.3)):
        elbo += qz * (math.log(pz) + dist.Normal(2 * z, 1.0).log_prob(x) - qz.log())
    assert loss == pytest.approx(-float(elbo), abs=1e-10)


def test_mixed_model_with_delta_guide():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2, 2.5], dtype=torch.float64)
    shift0 = torch.tensor(0.4, dtype=torch.float64)

    @config_enumerate
    def model():
        shift = probpl.sample("shift", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        gmm(data, probs[0], locs + shift)

    def guide():
        probpl.sample("shift", dist.Delta(shift0))

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)
    expected = dist.Normal(0.0, 1.0).log_prob(shift0) + brute_force_log_z(
        gmm, {"z": (3, (3,))}, data, probs[0], locs + shift0
    )
    assert loss == pytest.approx(-expected.item(), abs=1e-10)


def test_score_function_guide_gradient():
    # A sampled (not enumerated) Bernoulli guide site: the DiCE gradient averaged over
    # N particles must match the exact gradient from enumerating the same site, within
    # 4 standard errors (false-fail rate ~6e-5), with the variance computed exactly.
    x = torch.tensor(1.3, dtype=torch.float64)
    p_z = torch.tensor(0.3, dtype=torch.float64)
    N = 4000

    def model():
        z = probpl.sample("z", dist.Bernoulli(p_z))
        probpl.sample("x", dist.Normal(2 * z, 1.0), obs=x)

    def make_guide(theta, enumerate):
        def guide():
            infer = {"enumerate": "parallel"} if enumerate else {}
            probpl.sample("z", dist.Bernoulli(logits=theta), infer=infer)
        return guide

    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    exact = TraceEnum_ELBO(max_plate_nesting=0).differentiable_loss(model, make_guide(theta, True))
    (exact_grad,) = torch.autograd.grad(exact, theta)
    elbo = TraceEnum_ELBO(max_plate_nesting=0, num_particles=N, vectorize_particles=True)
    (estimate,) = torch.autograd.grad(elbo.differentiable_loss(model, make_guide(theta, False)),
                                      theta)
    grads, weights = [], []
    for z in (0.0, 1.0):
        z = torch.tensor(z, dtype=torch.float64)
        lq = dist.Bernoulli(logits=theta).log_prob(z)
        lp = dist.Bernoulli(p_z).log_prob(z) + dist.Normal(2 * z, 1.0).log_prob(x)
        surrogate = -(lp - lq) * (lq - lq.detach()).exp()
        grads.append(torch.autograd.grad(surrogate, theta)[0])
        weights.append(lq.exp().detach())
    grads, weights = torch.stack(grads), torch.stack(weights)
    assert torch.allclose((weights * grads).sum(), exact_grad)
    std = ((weights * (grads - exact_grad) ** 2).sum() / N).sqrt()
    assert abs(estimate - exact_grad) < 4 * std


def test_no_enumerable_support_error():
    def model():
        probpl.sample("w", dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match="'w'.*no enumerable support"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(model, empty_guide)


def test_max_plate_nesting_too_small_error():
    probs, locs = params()
    data = torch.zeros(2, 2, dtype=torch.float64)
    args = (data, torch.tensor(0.3, dtype=torch.float64), probs, locs)
    with pytest.raises(ValueError, match="max_plate_nesting"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(nested), empty_guide, *args)


def test_enum_dim_collides_with_plate_error():
    def model():
        with probpl.plate("data", 3):
            probpl.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match="'z'.*plate 'data'.*collides"):
        enum(model, first_available_dim=-1)()


def test_trace_elbo_rejects_enumerated_guide():
    def model():
        probpl.sample("z", dist.Bernoulli(0.5))

    def guide():
        probpl.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match="'z'.*TraceEnum_ELBO"):
        Trace_ELBO().loss(model, guide)


def test_enumerated_log_density_for_mcmc():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2, 2.5], dtype=torch.float64)

    @config_enumerate
    def model():
        shift = probpl.sample("shift", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        gmm(data, probs[0], locs + shift)

    shift0 = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    log_density, _ = enumerated_log_density(model, params={"shift": shift0})
    expected = dist.Normal(0.0, 1.0).log_prob(shift0) + brute_force_log_z(
        gmm, {"z": (3, (3,))}, data, probs[0], locs + shift0
    )
    assert torch.allclose(log_density, expected)
    (g,) = torch.autograd.grad(log_density, shift0)
    (e,) = torch.autograd.grad(expected, shift0)
    assert torch.allclose(g, e)


def test_compute_marginals_matches_brute_force():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2], dtype=torch.float64)
    args = (data, torch.tensor(0.3, dtype=torch.float64), probs, locs)
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(
        config_enumerate(global_local), empty_guide, *args
    )
    log_z = brute_force_log_z(global_local, {"a": (2, (), "float"), "z": (3, (2,))}, *args)
    a_marginal = marginals["a"].probs
    joint = []
    for a in (0, 1):
        cond = poutine.condition(global_local, data={"a": torch.tensor(float(a),
                                                                        dtype=torch.float64)})
        joint.append(brute_force_log_z(cond, {"z": (3, (2,))}, *args))
    expected_a = (torch.stack(joint) - log_z).exp()
    assert torch.allclose(a_marginal, expected_a[1], atol=1e-10)
    assert marginals["z"].probs.shape == (2, 3)
    assert torch.allclose(marginals["z"].probs.sum(-1), torch.ones(2, dtype=torch.float64))


@pytest.mark.slow
def test_svi_recovers_gmm_locs():
    from probpl.infer import SVI
    from probpl.optim import Adam

    true_locs = torch.tensor([-4.0, 0.0, 4.0])
    z = torch.randint(0, 3, (600,))
    data = true_locs[z] + 0.5 * torch.randn(600)

    @config_enumerate
    def model():
        locs = probpl.param("locs", torch.tensor([-1.0, 0.1, 1.0]))
        with probpl.plate("data", len(data)):
            z = probpl.sample("z", dist.Categorical(torch.ones(3) / 3))
            probpl.sample("x", dist.Normal(locs[z], 0.5), obs=data)

    svi = SVI(model, empty_guide, Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(300):
        svi.step()
    locs = probpl.param("locs").detach().sort().values
    # The MLE is within ~0.5/sqrt(200) = 0.035 of the truth per component; allow 0.15.
    assert torch.allclose(locs, true_locs, atol=0.15)


@pytest.mark.slow
def test_svi_recovers_hmm_emission_locs():
    from probpl.infer import SVI
    from probpl.optim import Adam

    true_locs = torch.tensor([-3.0, 3.0])
    trans = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    T, B = 30, 20
    x = torch.zeros(B, dtype=torch.long)
    ys = []
    for _ in range(T):
        x = torch.multinomial(trans[x], 1).squeeze(-1)
        ys.append(true_locs[x] + torch.randn(B))
    ys = torch.stack(ys)

    def model():
        locs = probpl.param("locs", torch.tensor([-0.5, 0.5]))
        with probpl.plate("seqs", B, dim=-1):
            x = None
            for t in probpl.markov(range(T)):
                p = torch.ones(2) / 2 if x is None else trans[x]
                x = probpl.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
                probpl.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=ys[t])

    svi = SVI(model, empty_guide, Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(150):
        svi.step()
    # 600 observations, ~300 per state with unit noise: standard error ~0.06.
    assert torch.allclose(probpl.param("locs").detach(), true_locs, atol=0.3)


def _mixed_chain(ys, init, trans, locs, scale):
    with probpl.plate("seqs", ys.shape[1], dim=-1):
        x = None
        for t in probpl.markov(range(ys.shape[0])):
            p = init if x is None else trans[x]
            x = probpl.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
            probpl.sample(f"y_{t}", dist.Normal(locs[x], scale), obs=ys[t])
            probpl.sample(f"c_{t}", dist.Poisson(locs[x].exp()), obs=ys[t].abs().round())
            w = probpl.sample(f"w_{t}", dist.Categorical(logits=trans[x].log()),
                              infer={"enumerate": "parallel"})
            probpl.sample(f"v_{t}", dist.Normal(locs[w] * 0.5, 2.0), obs=ys[t])


def assert_same_vjp(got, expected, w, inputs, name, **tolerance):
    """``got`` and ``expected`` pull the cotangent ``w`` back to the same
    gradients of ``inputs`` (and depend on the same inputs)."""
    g_got = torch.autograd.grad((got * w).sum(), inputs, allow_unused=True, retain_graph=True)
    g_exp = torch.autograd.grad((expected * w).sum(), inputs, allow_unused=True,
                                retain_graph=True)
    for a, b in zip(g_got, g_exp):
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.allclose(a, b, **tolerance), name


def test_grouped_log_probs_match_per_site():
    from probpl.infer.enum import compute_log_probs

    init, trans, locs = hmm_params()
    init, trans, locs = (t.clone().requires_grad_() for t in (init, trans, locs))
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(5, 2, dtype=torch.float64)
    # Without validation (as on every step after the first), sites are grouped.
    with probpl.util.validation_enabled(False), enum(first_available_dim=-2):
        tr = poutine.trace(_mixed_chain).get_trace(ys, init, trans, locs, scale)
        compute_log_probs(tr)
    for a, b in [("y_1", "y_3"), ("c_0", "c_2"), ("x_1", "x_3"), ("w_0", "w_2"), ("v_1", "v_3")]:
        base = tr.nodes[a]["unscaled_log_prob"]._base
        assert base is not None and base is tr.nodes[b]["unscaled_log_prob"]._base
    inputs = (init, trans, locs, scale)
    for name, site in tr.nodes.items():
        if site["type"] != "sample":
            continue
        expected = site["fn"].log_prob(site["value"])
        got = site["log_prob"]
        assert got.shape == expected.shape, name
        assert torch.allclose(got, expected, atol=1e-12), name
        w = torch.randn(got.shape, dtype=torch.float64)
        assert_same_vjp(got, expected, w, inputs, name, atol=1e-10)


def test_validation_runs_once_and_nonfinite_loss_names_site():
    probs, locs = params()
    data = torch.tensor([0.1, -1.2, 2.5], dtype=torch.float64)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    model = config_enumerate(gmm)
    elbo.loss_and_grads(model, empty_guide, data, probs[0], locs)
    assert len(elbo._validated) == 1
    # Later steps skip validation, but a bad value still gives a clear error.
    bad_locs = locs.clone()
    bad_locs[1] = float("nan")
    with pytest.raises(ValueError, match="model site 'x'"):
        elbo.loss_and_grads(model, empty_guide, data, probs[0], bad_locs)
    with pytest.raises(ValueError, match="model site 'x'"):
        elbo.loss(model, empty_guide, data, probs[0], bad_locs)


def test_one_elbo_reused_across_models_and_sizes():
    # An ELBO keeps its symbol table (and how each site layout is packed) from
    # step to step; different models, plate sizes and chain lengths in turn
    # must still give each model's exact log marginal.
    probs, locs = params()
    init, trans, hmm_locs = hmm_params()
    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    cases = []
    for n in (3, 2, 3):
        data = torch.linspace(-1.0, 2.0, n, dtype=torch.float64)
        expected = brute_force_log_z(gmm, {"z": (3, (n,))}, data, probs[0], locs)
        cases.append((config_enumerate(gmm), (data, probs[0], locs), expected))
    for T, B in ((5, 2), (2, 1), (4, 2)):
        ys = torch.linspace(-1.5, 1.5, T * B, dtype=torch.float64).reshape(T, B)
        expected = hmm_brute_force(ys, init, trans, hmm_locs)
        cases.append((hmm, (ys, init, trans, hmm_locs), expected))
    args = (torch.tensor([[0.1, -1.2], [2.5, 0.3]], dtype=torch.float64),
            torch.tensor(0.3, dtype=torch.float64), probs, locs)
    expected = brute_force_log_z(
        nested, {"a": (2, (), "float"), "b": (3, (2, 1)), "c": (2, (2, 2), "float")}, *args
    )
    cases.append((config_enumerate(nested), args, expected))
    for _ in range(2):
        for model, args, expected in cases:
            loss = elbo.loss(model, empty_guide, *args)
            assert loss == pytest.approx(-float(expected), abs=1e-10)


def test_long_chain_batched_path_matches_forward_algorithm():
    # Long enough that the steps' log-densities are computed in batches and the
    # chain is eliminated from slices of those batches (without validation).
    init, trans, locs = hmm_params()
    T, B = 14, 3
    ys = torch.randn(T, B, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    log_alpha = init.log() + dist.Normal(locs, 1.0).log_prob(ys[0].unsqueeze(-1))  # (B, S)
    for t in range(1, T):
        log_alpha = (log_alpha.unsqueeze(-1) + trans.log()).logsumexp(-2) \
            + dist.Normal(locs, 1.0).log_prob(ys[t].unsqueeze(-1))
    expected = log_alpha.logsumexp(-1).sum()
    results = []
    for validate in (True, False):
        leaves = [x.clone().requires_grad_() for x in (init, trans, locs)]
        with probpl.util.validation_enabled(validate):
            loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
                hmm, empty_guide, ys, *leaves)
        assert loss.detach().item() == pytest.approx(-expected.item(), abs=1e-9)
        results.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-10)


def _raw_rows_chain(ys, init, trans, trans_logits):
    # Categoricals built from unnormalised rows (with zeros) and from logits.
    with probpl.plate("seqs", ys.shape[1], dim=-1):
        x = w = None
        for t in probpl.markov(range(ys.shape[0])):
            x = probpl.sample(f"x_{t}", dist.Categorical(init if x is None else trans[x]),
                              infer={"enumerate": "parallel"})
            w = probpl.sample(f"w_{t}", dist.Categorical(
                logits=trans_logits[0 if w is None else w]), infer={"enumerate": "parallel"})
            probpl.sample(f"y_{t}", dist.Normal((x + w).to(ys.dtype), 1.0), obs=ys[t])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chain_categoricals_normalised_together_match_torch(dtype):
    from probpl.infer.enum import compute_log_probs

    g = torch.Generator().manual_seed(4)
    init = torch.tensor([2.0, 0.0, 1.0], dtype=dtype, requires_grad=True)
    trans = (3 * torch.rand(3, 3, generator=g, dtype=dtype)).detach()
    trans[0, 2] = trans[2, 1] = 0.0  # impossible transitions
    trans.requires_grad_()
    trans_logits = torch.randn(3, 3, generator=g, dtype=dtype, requires_grad=True)
    ys = torch.randn(6, 2, generator=g, dtype=dtype)
    with probpl.util.validation_enabled(False), enum(first_available_dim=-2):
        tr = poutine.trace(_raw_rows_chain).get_trace(ys, init, trans, trans_logits)
        compute_log_probs(tr)
    # The steps' rows are normalised in batches, not one site at a time.
    assert tr.nodes["x_1"]["log_prob"]._base is tr.nodes["x_3"]["log_prob"]._base is not None
    assert tr.nodes["w_1"]["log_prob"]._base is tr.nodes["w_3"]["log_prob"]._base is not None
    inputs = (init, trans, trans_logits)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, site in tr.nodes.items():
        if not name.startswith(("x_", "w_")):
            continue
        fn = site["fn"]
        kind = "logits" if fn._param_is_logits else "probs"
        # torch's own Categorical from the parameter as the model gave it.
        ref = torch.distributions.Categorical(**{kind: fn._param}).expand(fn.batch_shape)
        expected = ref.log_prob(site["value"])
        got = site["log_prob"]
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        assert torch.allclose(got, expected, rtol=tol, atol=tol), name
        w = torch.randn(got.shape, generator=g, dtype=dtype)
        assert_same_vjp(got, expected, w, inputs, name, rtol=tol, atol=tol)
    if dtype == torch.float64:
        # A zero-probability transition weighs exp(log eps) (torch clamps probs
        # away from 0 and 1), as brute-force summation over torch's densities does.
        short = ys[:3, :1]  # 3 ** 6 assignments
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
            _raw_rows_chain, empty_guide, short, init, trans, trans_logits)
        expected = brute_force_log_z(
            _raw_rows_chain, {f"{n}_{t}": (3, (1,)) for t in range(3) for n in "xw"},
            short, init, trans, trans_logits)
        assert loss == pytest.approx(-expected.item(), abs=1e-9)
