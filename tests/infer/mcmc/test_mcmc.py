"""Posterior checks of HMC/NUTS through the MCMC driver, and its error messages.

Monte Carlo tolerances: a posterior mean is checked to within 5 Monte Carlo standard
errors (sd / sqrt(ESS), ESS estimated from the draws), a false-fail rate of about 6e-7 per
check; standard deviations within 15%, which with ESS >= 300 is about 3.5 standard errors.
"""

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl.infer.mcmc import HMC, MCMC, NUTS
from probpl.infer.mcmc.util import initialize_model
from probpl.ops.stats import effective_sample_size


def _check_mean(draws, truth, num_sd=5.0):
    # draws: (chains, samples, ...)
    ess = effective_sample_size(draws.double())
    assert (ess > 100).all(), ess
    mcse = draws.double().reshape((-1,) + draws.shape[2:]).std(0) / ess.sqrt()
    assert ((draws.double().mean((0, 1)) - truth).abs() < num_sd * mcse).all()


def _linreg_data(dtype):
    torch.manual_seed(3)
    x = torch.randn(30, 2, dtype=dtype)
    y = x @ torch.tensor([1.0, -2.0], dtype=dtype) + 0.5 * torch.randn(30, dtype=dtype)
    return x, y


def linreg(x, y):
    w = probpl.sample("w", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
    with probpl.plate("data", x.shape[0]):
        probpl.sample("y", dist.Normal(x @ w, 0.5), obs=y)


@pytest.mark.parametrize("chain_method,jit", [("vectorized", False), ("vectorized", True),
                                              ("sequential", False)])
def test_linear_regression_conjugate(chain_method, jit):
    dtype = torch.float64
    x, y = _linreg_data(dtype)
    prec = torch.eye(2, dtype=dtype) + x.T @ x / 0.25
    cov = torch.linalg.inv(prec)
    mean = cov @ (x.T @ y / 0.25)
    mcmc = MCMC(NUTS(linreg, jit_compile=jit), num_samples=400, warmup_steps=300, num_chains=2,
                chain_method=chain_method, disable_progbar=True)
    mcmc.run(x, y)
    w = mcmc.get_samples(group_by_chain=True)["w"]
    assert w.shape == (2, 400, 2) and w.dtype == dtype
    _check_mean(w, mean)
    sd = w.reshape(-1, 2).std(0)
    assert torch.allclose(sd, cov.diagonal().sqrt(), rtol=0.15)


def constrained():
    probpl.sample("g", dist.Gamma(3.0, 2.0))
    probpl.sample("b", dist.Beta(2.0, 5.0))
    probpl.sample("d", dist.Dirichlet(torch.tensor([1.0, 2.0, 3.0])))


def test_constrained_supports_jacobians():
    # without data the posterior is the prior: wrong Jacobians would shift these means
    mcmc = MCMC(NUTS(constrained, jit_compile=True), num_samples=500, warmup_steps=300,
                num_chains=2, chain_method="vectorized", disable_progbar=True)
    mcmc.run()
    s = mcmc.get_samples(group_by_chain=True)
    _check_mean(s["g"], torch.tensor(1.5, dtype=torch.float64))
    _check_mean(s["b"], torch.tensor(2.0 / 7.0, dtype=torch.float64))
    _check_mean(s["d"], torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=torch.float64))
    assert torch.allclose(s["d"].sum(-1), torch.ones(()))
    assert (s["g"] > 0).all() and ((s["b"] > 0) & (s["b"] < 1)).all()


J = 8
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = probpl.sample("mu", dist.Normal(0.0, 5.0))
    tau = probpl.sample("tau", dist.HalfCauchy(5.0))
    with probpl.plate("J", J):
        theta_tilde = probpl.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = probpl.deterministic("theta", mu + tau * theta_tilde)
        probpl.sample("obs", dist.Normal(theta, sigma), obs=y)


@pytest.mark.slow
def test_eight_schools_noncentred():
    mcmc = MCMC(NUTS(eight_schools, jit_compile=True), num_samples=500, warmup_steps=500,
                num_chains=4, chain_method="vectorized", disable_progbar=True)
    mcmc.run(SIGMA, Y)
    s = mcmc.get_samples(group_by_chain=True)
    assert s["theta"].shape == (4, 500, J)
    # reference posterior means (long Stan runs): mu 4.4, tau 3.6
    _check_mean(s["mu"], torch.tensor(4.4))
    _check_mean(s["tau"], torch.tensor(3.6))
    diag = mcmc.diagnostics()
    assert float(diag["mu"]["r_hat"]) < 1.05
    assert set(diag["divergences"]) == {f"chain {c}" for c in range(4)}


def correlated():
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    probpl.sample("x", dist.MultivariateNormal(torch.zeros(2), cov))


def test_dense_mass_learns_covariance():
    kernel = NUTS(correlated, full_mass=True)
    mcmc = MCMC(kernel, num_samples=400, warmup_steps=400, num_chains=2,
                chain_method="vectorized", disable_progbar=True)
    mcmc.run()
    inv = kernel.inverse_mass_matrix
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    # the metric is estimated from ~250 correlated draws: 30% covers its sampling error
    assert torch.allclose(inv, cov.expand(2, 2, 2), atol=0.3)
    x = mcmc.get_samples(group_by_chain=True)["x"]
    _check_mean(x, torch.zeros(2))
    # with a learnt dense metric the sampler hardly needs to build trees
    assert mcmc.diagnostics()["tree depth"]["chain 0"] < 3


def test_hmc_and_potential_fn():
    def potential_fn(params):
        return 0.5 * ((params["a"] - 1.0) ** 2).sum()

    init = {"a": torch.zeros(2, 3)}
    mcmc = MCMC(HMC(potential_fn=potential_fn, trajectory_length=2.0), num_samples=400,
                warmup_steps=200, num_chains=2, initial_params=init,
                chain_method="vectorized", disable_progbar=True)
    mcmc.run()
    a = mcmc.get_samples(group_by_chain=True)["a"]
    assert a.shape == (2, 400, 3)
    _check_mean(a, torch.ones(3))


def test_same_seed_same_samples_and_independent_chains():
    def run(method):
        probpl.set_rng_seed(7)
        mcmc = MCMC(NUTS(correlated), num_samples=50, warmup_steps=50, num_chains=2,
                    chain_method=method, disable_progbar=True)
        mcmc.run()
        return mcmc.get_samples(group_by_chain=True)["x"]

    a, b = run("vectorized"), run("vectorized")
    assert torch.equal(a, b)
    s1, s2 = run("sequential"), run("sequential")
    assert torch.equal(s1, s2)
    assert not torch.equal(a[0], a[1])


def test_continue_run_and_subsample():
    mcmc = MCMC(NUTS(correlated), num_samples=30, warmup_steps=50, disable_progbar=True)
    mcmc.run()
    step = mcmc.kernel.post_warmup_state.step_size.clone()
    mcmc.run()
    assert torch.equal(mcmc.kernel.post_warmup_state.step_size, step)  # no new warm-up
    assert mcmc.get_samples()["x"].shape == (30, 2)
    assert mcmc.get_samples(num_samples=10)["x"].shape == (10, 2)


def test_initialize_model_api():
    params, potential_fn, transforms, trace = initialize_model(eight_schools, (SIGMA, Y),
                                                               num_chains=3)
    assert params["theta_tilde"].shape == (3, J)
    pe = potential_fn({k: v[0] for k, v in params.items()})
    assert pe.shape == () and torch.isfinite(pe)
    tau = transforms["tau"].inv(params["tau"])
    assert (tau > 0).all()
    assert "obs" in trace.nodes


def discrete_model():
    probpl.sample("k", dist.Bernoulli(0.3))
    probpl.sample("x", dist.Normal(0.0, 1.0))


def test_discrete_site_error():
    with pytest.raises(ValueError, match="'k' is discrete.*config_enumerate"):
        MCMC(NUTS(discrete_model), num_samples=5, disable_progbar=True).run()


def nan_model():
    x = probpl.sample("x", dist.Normal(0.0, 1.0))
    probpl.factor("bad", x * 0.0 - float("inf"))


def test_nan_potential_names_site():
    with pytest.raises(ValueError, match="not finite at site.*'bad'"):
        MCMC(NUTS(nan_model), num_samples=5, disable_progbar=True).run()


def test_divergences_reported():
    def funnel():
        v = probpl.sample("v", dist.Normal(0.0, 3.0))
        probpl.sample("x", dist.Normal(torch.zeros(5), (0.5 * v).exp()).to_event(1))

    mcmc = MCMC(NUTS(funnel, adapt_step_size=False, step_size=2.0), num_samples=100,
                warmup_steps=0, disable_progbar=True)
    mcmc.run()
    assert len(mcmc.diagnostics()["divergences"]["chain 0"]) > 0


def test_summary_prints(capsys):
    mcmc = MCMC(NUTS(correlated), num_samples=20, warmup_steps=20, disable_progbar=True)
    mcmc.run()
    mcmc.summary(prob=0.8)
    out = capsys.readouterr().out
    assert "n_eff" in out and "10.0%" in out and "x[1]" in out and "divergences" in out
