"""The random-walk kernel, parallel chains, compiled potentials and ArviZ conversion.

Monte Carlo tolerances as in ``test_mcmc.py``: means within 5 Monte Carlo standard errors
(false-fail rate about 6e-7 per check).
"""

import multiprocessing
import os
import warnings

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.infer.mcmc import MCMC, NUTS, RandomWalkKernel
from probpl.infer.mcmc.compile import (
    DataDependentError,
    compile_function,
    is_compiled,
    simplify,
    trace_graph,
)
from probpl.ops.stats import effective_sample_size


def _check_mean(draws, truth, num_sd=5.0):
    ess = effective_sample_size(draws.double())
    assert (ess > 50).all(), ess
    mcse = draws.double().reshape((-1,) + draws.shape[2:]).std(0) / ess.sqrt()
    assert ((draws.double().mean((0, 1)) - truth).abs() < num_sd * mcse).all()


def gaussian_2d():
    probpl.sample("a", dist.Normal(1.0, 2.0))
    probpl.sample("s", dist.LogNormal(0.0, 0.5))


def test_random_walk_posterior():
    probpl.set_rng_seed(0)
    kernel = RandomWalkKernel(gaussian_2d, init_step_size=0.5)
    mcmc = MCMC(kernel, num_samples=4000, warmup_steps=1000, disable_progbar=True)
    mcmc.run()
    s = mcmc.get_samples(group_by_chain=True)
    assert s["a"].shape == (1, 4000) and (s["s"] > 0).all()
    _check_mean(s["a"], torch.tensor(1.0))
    _check_mean(s["s"], torch.tensor(0.125).exp())  # mean of LogNormal(0, 0.5)
    # the adapted step size brings the acceptance rate near its target
    assert 0.1 < kernel.diagnostics()["acceptance rate"] < 0.45
    assert "r_hat" in mcmc.diagnostics()["a"]


def test_random_walk_rejects_bad_arguments():
    with pytest.raises(ValueError, match="init_step_size"):
        RandomWalkKernel(gaussian_2d, init_step_size=0.0)
    with pytest.raises(ValueError, match="vectorized"):
        MCMC(RandomWalkKernel(gaussian_2d), num_samples=5, num_chains=2,
             chain_method="vectorized")


def linreg(x, y):
    w = probpl.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with probpl.plate("data", x.shape[0]):
        probpl.sample("y", dist.Normal(x @ w, 0.5), obs=y)


def _linreg_data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 2, generator=g)
    return x, x @ torch.tensor([1.0, -2.0]) + 0.5 * torch.randn(20, generator=g)


def _draws(method, kernel_fn=lambda: NUTS(linreg), **kw):
    probpl.set_rng_seed(11)
    mcmc = MCMC(kernel_fn(), num_samples=30, warmup_steps=30, num_chains=2,
                chain_method=method, disable_progbar=True, **kw)
    mcmc.run(*_linreg_data())
    return mcmc


@pytest.mark.slow
def test_parallel_equals_sequential():
    par = _draws("parallel", timeout=300)
    seq = _draws("sequential")
    a, b = par.get_samples(group_by_chain=True), seq.get_samples(group_by_chain=True)
    assert torch.equal(a["w"], b["w"])
    assert not torch.equal(a["w"][0], a["w"][1])
    assert par.diagnostics()["divergences"].keys() == {"chain 0", "chain 1"}
    rw_par = _draws("parallel", lambda: RandomWalkKernel(linreg), timeout=300)
    rw_seq = _draws("sequential", lambda: RandomWalkKernel(linreg))
    assert torch.equal(rw_par.get_samples()["w"], rw_seq.get_samples()["w"])


def fails_in_worker(x, y):
    if multiprocessing.current_process().name != "MainProcess":
        raise ValueError("model failure inside the worker")
    linreg(x, y)


def dies_in_worker(x, y):
    if multiprocessing.current_process().name != "MainProcess":
        os._exit(3)  # a crash that leaves no Python exception behind
    linreg(x, y)


@pytest.mark.slow
def test_parallel_worker_failures_are_reported():
    with pytest.raises(RuntimeError, match="chain [01] failed: ValueError: model failure"):
        _draws("parallel", lambda: NUTS(fails_in_worker), timeout=300)
    with pytest.raises(RuntimeError, match="chain [01] exited with code 3 without a result"):
        _draws("parallel", lambda: NUTS(dies_in_worker), timeout=300)


def test_compiled_and_eager_leaf_agree():
    # the compiled transition is the eager one: same draws up to rounding
    def run(jit):
        probpl.set_rng_seed(5)
        mcmc = MCMC(NUTS(linreg, jit_compile=jit), num_samples=20, warmup_steps=20,
                    disable_progbar=True)
        mcmc.run(*_linreg_data())
        return mcmc.get_samples()["w"], mcmc.kernel._leaf

    (a, leaf_a), (b, _) = run(True), run(False)
    assert is_compiled(leaf_a)
    assert torch.allclose(a, b, atol=1e-4)


def branching(x, y):
    w = probpl.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    scale = 0.5 if bool(w[0] > 0) else 0.6  # control flow on a latent value
    with probpl.plate("data", x.shape[0]):
        probpl.sample("y", dist.Normal(x @ w, scale), obs=y)


def test_data_dependent_model_is_not_compiled():
    mcmc = MCMC(NUTS(branching), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run(*_linreg_data())  # the default silently keeps eager evaluation
    assert not is_compiled(mcmc.kernel._leaf)
    with pytest.warns(RuntimeWarning, match="could not compile"):
        MCMC(NUTS(branching, jit_compile=True), num_samples=2, warmup_steps=2,
             disable_progbar=True).run(*_linreg_data())


def test_tracer_rejects_value_reads_and_simplify_keeps_values():
    with pytest.raises(DataDependentError):
        trace_graph(lambda x: (x * 2 if x.sum() > 0 else x,), (torch.ones(3),))

    def fn(x, c):
        y = (x * 1.0 + 0.0).expand(3).reshape(3)
        z = torch.zeros(5).index_add(0, torch.tensor([0, 1, 2]), y) + torch.ones(5) * c.sum()
        grad = torch.autograd.grad((z ** 2).sum(), x, create_graph=False)[0] \
            if x.requires_grad else z[:3]
        return z.exp().sum(-1, keepdim=True), grad

    x, c = torch.randn(3), torch.randn(2)
    gm = trace_graph(fn, (x, c))
    before = len(gm.graph.nodes)
    gm = simplify(gm, (x, c))
    assert len(gm.graph.nodes) < before
    for args in [(x, c), (torch.randn(3), torch.randn(2))]:
        for e, g in zip(fn(*args), gm(*args)):
            assert torch.equal(e, g)
    compiled = compile_function(lambda functional: fn, (x, c), [(torch.randn(3), torch.randn(2))])
    assert torch.equal(compiled(x, c)[0], fn(x, c)[0])


def test_numbers_as_tensors_keep_values():
    # the static runtime's form: numeric operands become 0-dim constants of the right dtype
    def fn(x, k):
        y = torch.where(x > 0.5, x * 2.0 - 1, x.masked_fill(x < -1, 3.0)) / 4.0
        return y, (k + 1) * 3, k <= 2

    x, k = torch.randn(5, dtype=torch.float64), torch.arange(4)
    gm = simplify(trace_graph(fn, (x, k)), (x, k), numbers_as_tensors=True)
    scalar_forms = [n.target for n in gm.graph.nodes
                    if n.op == "call_function" and "Scalar" in str(n.target)]
    assert scalar_forms == []
    for args in [(x, k), (torch.randn(5, dtype=torch.float64), torch.arange(4) - 2)]:
        for e, g in zip(fn(*args), gm(*args)):
            assert e.dtype == g.dtype and torch.equal(e, g)


def test_to_arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arviz = pytest.importorskip("arviz")
    probpl.set_rng_seed(1)
    mcmc = MCMC(NUTS(linreg), num_samples=25, warmup_steps=25, num_chains=2,
                chain_method="vectorized", disable_progbar=True)
    mcmc.run(*_linreg_data())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        data = mcmc.to_inference_data()
        assert isinstance(data, arviz.InferenceData)
        assert data.posterior["w"].shape[:3] == (2, 25, 2)
        assert data.log_likelihood["y"].shape[:3] == (2, 25, 20)
        summary = arviz.summary(data, var_names=["w"])
    assert len(summary) == 2
