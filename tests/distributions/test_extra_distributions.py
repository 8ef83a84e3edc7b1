"""Known-answer tests for the extra distributions, the wrappers and the KL registry."""

import itertools
import math
import pickle

import pytest
import scipy.stats as sp
import torch

import probpl.distributions as dist


def test_discrete_hmm_matches_brute_force():
    S, T = 3, 4
    init = torch.randn(2, S, dtype=torch.float64)
    trans = torch.randn(T, S, S, dtype=torch.float64)
    locs = torch.randn(T, S, dtype=torch.float64)
    hmm = dist.DiscreteHMM(init, trans, dist.Normal(locs, 1.0))
    assert hmm.batch_shape == (2,) and hmm.event_shape == (T,)
    x = torch.randn(5, 2, T, dtype=torch.float64)
    expected = torch.full((5, 2), -math.inf, dtype=torch.float64)
    log_init = init.log_softmax(-1)
    log_trans = trans.log_softmax(-1)
    for z in itertools.product(range(S), repeat=T + 1):
        lp = log_init[:, z[0]]
        for t in range(T):
            lp = lp + log_trans[t, z[t], z[t + 1]]
            lp = lp + dist.Normal(locs[t, z[t + 1]], 1.0).log_prob(x[..., t])
        expected = torch.logaddexp(expected, lp)
    torch.testing.assert_close(hmm.log_prob(x), expected)
    assert hmm.sample((7,)).shape == (7, 2, T)
    assert hmm.expand((3, 2)).log_prob(x[:1]).shape == (3, 2)


def test_delta_and_unit():
    v = torch.randn(3, 2)
    d = dist.Delta(v, log_density=torch.ones(3), event_dim=1)
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    assert torch.equal(d.sample(), v)
    torch.testing.assert_close(d.log_prob(v), torch.ones(3))
    assert (d.log_prob(v + 1) == -math.inf).all()
    u = dist.Unit(torch.tensor([0.5, -1.0]))
    assert u.sample().shape == (2, 0)
    torch.testing.assert_close(u.log_prob(u.sample()), torch.tensor([0.5, -1.0]))
    assert dist.Unit(2.0).expand([4]).log_prob(torch.empty(4, 0)).shape == (4,)


def test_empirical():
    samples = torch.tensor([[0.0, 1.0, 2.0], [5.0, 5.0, 6.0]])
    log_w = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
    d = dist.Empirical(samples, log_w)
    assert d.batch_shape == (2,) and d.event_shape == ()
    torch.testing.assert_close(d.mean, torch.tensor([1.25, 16 / 3]))
    torch.testing.assert_close(d.log_prob(torch.tensor([2.0, 5.0])),
                               torch.tensor([math.log(0.5), math.log(2 / 3)]))
    x = d.sample((4000,))
    # Binomial error of the frequency of value 2.0 (p = 0.5): sd = 0.0079.
    assert abs((x[:, 0] == 2.0).double().mean() - 0.5) < 0.04


def test_lkj_2x2_matches_beta():
    # For 2x2, the off-diagonal r has (r + 1) / 2 ~ Beta(eta, eta).
    eta = 2.5
    d = dist.LKJ(2, torch.tensor(eta, dtype=torch.float64))
    r = torch.tensor([-0.7, 0.1, 0.9], dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)
    c[:, 0, 1] = c[:, 1, 0] = r
    expected = sp.beta(eta, eta).logpdf((r.numpy() + 1) / 2) - math.log(2)
    torch.testing.assert_close(d.log_prob(c), torch.as_tensor(expected))


@pytest.mark.parametrize("dim", [2, 3])
def test_projected_normal_normalises(dim):
    conc = torch.tensor([1.5, -0.5, 0.3][:dim], dtype=torch.float64)
    d = dist.ProjectedNormal(conc)
    n = 400
    if dim == 2:
        theta = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * math.pi
        u = torch.stack([theta.cos(), theta.sin()], -1)
        mass = d.log_prob(u).exp().sum() * 2 * math.pi / n
    else:
        th = (torch.arange(n, dtype=torch.float64) + 0.5) / n * math.pi
        ph = (torch.arange(2 * n, dtype=torch.float64) + 0.5) / (2 * n) * 2 * math.pi
        th, ph = torch.meshgrid(th, ph, indexing="ij")
        u = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1)
        mass = (d.log_prob(u).exp() * th.sin()).sum() * (math.pi / n) * (math.pi / n)
    assert abs(mass.item() - 1) < 1e-4


def test_masked_mixture_and_folded():
    mask = torch.tensor([True, False, True])
    c0, c1 = dist.Normal(torch.zeros(3), 1.0), dist.Normal(torch.full((3,), 5.0), 2.0)
    m = dist.MaskedMixture(mask, c0, c1)
    x = torch.randn(3)
    torch.testing.assert_close(m.log_prob(x), torch.where(mask, c1.log_prob(x), c0.log_prob(x)))
    f = dist.FoldedDistribution(dist.Normal(torch.tensor(0.5, dtype=torch.float64), 2.0))
    y = torch.tensor([0.1, 3.0], dtype=torch.float64)
    torch.testing.assert_close(f.log_prob(y), torch.as_tensor(sp.foldnorm(0.25, scale=2.0)
                                                              .logpdf(y.numpy())))


def test_rejector_samples_truncated_exponential():
    # Exponential(1) restricted to x < 1: accept with prob 1[x < 1].
    propose = dist.Exponential(torch.ones(2000, dtype=torch.float64))
    accept = lambda x: torch.where(x < 1, 0.0, -math.inf).to(x)
    log_scale = math.log(1 - math.exp(-1))
    r = dist.Rejector(propose, accept, log_scale)
    x = r.sample()
    assert (x < 1).all()
    # Mean of the truncated exponential is 1 - e^-1 / (1 - e^-1) = 0.418; sd 0.28.
    assert abs(x.mean() - (1 - math.exp(-1) / (1 - math.exp(-1)))) < 5 * 0.29 / math.sqrt(2000)
    torch.testing.assert_close(r.log_prob(torch.tensor(0.5, dtype=torch.float64))[0],
                               torch.tensor(-0.5 - log_scale, dtype=torch.float64))


def test_expanded_distribution_interstitial_sampling():
    base = dist.Categorical(logits=torch.zeros(2, 1, 5))
    e = dist.ExpandedDistribution(base, (4, 2, 3))
    x = e.sample((1000,))
    assert x.shape == (1000, 4, 2, 3)
    # Entries along expanded dims are independent draws, not copies.
    assert (x[:, 0, 0, 0] != x[:, 1, 0, 0]).any() and (x[:, 0, 0, 0] != x[:, 0, 0, 1]).any()
    assert e.log_prob(x).shape == (1000, 4, 2, 3)
    with pytest.raises(ValueError, match="cannot expand"):
        dist.ExpandedDistribution(base, (2, 3, 5))


def test_to_event_and_score_parts():
    d = dist.Normal(torch.zeros(2, 3), 1.0)
    ind = d.to_event(1).to_event(1)
    assert ind.event_shape == (2, 3) and ind.to_event(-2) is d
    with pytest.raises(ValueError, match="batch dims"):
        d.to_event(3)
    x = torch.randn(2, 3)
    parts = d.score_parts(x)
    assert parts.score_function == 0 and torch.equal(parts.entropy_term, parts.log_prob)
    b = dist.Bernoulli(torch.full((3,), 0.3))
    parts = b.score_parts(torch.ones(3)).scale_and_mask(2.0, torch.tensor([True, False, True]))
    torch.testing.assert_close(parts.log_prob, torch.tensor([2, 0, 2]) * math.log(0.3))
    torch.testing.assert_close(parts.score_function, torch.tensor([1, 0, 1]) * math.log(0.3))


def test_pickle_round_trip():
    for d in [dist.Normal(0.0, 1.0).expand([3]).to_event(1), dist.Gamma(2.0, 3.0).mask(False),
              dist.Delta(torch.ones(2)), dist.BetaBinomial(2.0, 3.0, 5.0)]:
        d2 = pickle.loads(pickle.dumps(d))
        assert type(d2) is type(d) and d2.batch_shape == d.batch_shape


@pytest.mark.parametrize("p,q", [
    (dist.Normal(torch.tensor([0.3, 1.0]), 2.0).to_event(1),
     dist.Normal(torch.tensor([-1.0, 0.0]), 0.5).to_event(1)),
    (dist.Normal(torch.tensor([0.3, 1.0]), 2.0).to_event(1),
     dist.MultivariateNormal(torch.zeros(2), torch.tensor([[2.0, 0.3], [0.3, 1.0]]))),
    (dist.Gamma(torch.tensor(2.0), 3.0).expand([3]),
     dist.Gamma(torch.tensor(1.5), 1.0).expand([3])),
    (dist.Beta(2.0, 3.0), dist.Beta(1.0, 1.5)),
    (dist.Dirichlet(torch.tensor([1.0, 2.0, 3.0])), dist.Dirichlet(torch.tensor([2.0, 2.0, 1.0]))),
])
def test_kl_matches_monte_carlo(p, q):
    torch.manual_seed(0)
    x = p.sample((40000,))
    lr = p.log_prob(x) - q.log_prob(x)
    kl = dist.kl_divergence(p, q)
    # The Monte Carlo average has standard error sd(lr) / sqrt(N); allow 5 of them.
    assert ((lr.mean(0) - kl).abs() <= 5 * lr.std(0) / 200 + 1e-6).all()


def test_kl_delta_and_masked():
    v = torch.tensor([0.5, -1.0])
    q = dist.Normal(torch.zeros(2), 1.0)
    torch.testing.assert_close(dist.kl_divergence(dist.Delta(v), q), -q.log_prob(v))
    mask = torch.tensor([True, False])
    kl = dist.kl_divergence(dist.Normal(v, 2.0).mask(mask), q.mask(True))
    assert kl[1] == 0 and kl[0] > 0


@pytest.mark.parametrize("alpha,beta", [(1.5, 0.3), (0.8, -0.5), (1.0, 0.5), (1.9, 0.9)])
def test_stable_density_and_sampler_match_scipy(alpha, beta):
    levy = sp.levy_stable
    old = levy.parameterization
    levy.parameterization = "S0"
    try:
        d = dist.Stable(torch.tensor(alpha, dtype=torch.float64), beta, 1.3, 0.4)
        x = torch.tensor([-2.0, 0.0, 0.5, 3.0], dtype=torch.float64)
        expected = levy.pdf(x.numpy(), alpha, beta, loc=0.4, scale=1.3)
        torch.testing.assert_close(d.log_prob(x).exp(), torch.as_tensor(expected), rtol=1e-6,
                                   atol=1e-8)
        n = 4000
        s = d.sample((n,))
        grid = torch.linspace(-3, 4, 8, dtype=torch.float64)
        ecdf = (s[:, None] <= grid).double().mean(0)
        cdf = torch.as_tensor(levy.cdf(grid.numpy(), alpha, beta, loc=0.4, scale=1.3))
        # DKW: P(sup |ecdf - cdf| > eps) <= 2 exp(-2 n eps^2) = 1e-6 at this eps.
        eps = math.sqrt(math.log(2e6) / (2 * n))
        assert (ecdf - cdf).abs().max() < eps
    finally:
        levy.parameterization = old
    assert d.has_rsample and d.rsample().requires_grad is False


@pytest.mark.cuda
def test_cuda_devices_follow_parameters():
    dev = torch.device("cuda")
    for d in [dist.Normal(torch.zeros(3, device=dev), 1.0).expand([2, 3]).to_event(1),
              dist.TruncatedNormal(torch.zeros(3, device=dev), 1.0, -1.0, 2.0),
              dist.GammaPoisson(torch.ones(3, device=dev), 2.0),
              dist.Stable(torch.full((3,), 1.5, device=dev), 0.2)]:
        x = d.sample((4,))
        assert x.device.type == "cuda" and d.log_prob(x).device.type == "cuda"


def test_has_rsample_override_switches_estimator():
    loc = torch.tensor(0.5, requires_grad=True)
    d = dist.Normal(loc, 1.0).has_rsample_(False)
    assert not d.has_rsample and not d().requires_grad
    assert d.score_parts(torch.tensor(0.1)).entropy_term == 0
    ind = dist.Normal(loc.expand(3), 1.0).to_event(1).has_rsample_(False)
    assert not ind.has_rsample and not ind().requires_grad
    with pytest.raises(ValueError, match="no reparameterised sampler"):
        dist.Bernoulli(0.5).has_rsample_(True)


def test_discrete_hmm_duration_for_time_homogeneous_models():
    torch.manual_seed(3)
    init, trans = torch.randn(3), torch.randn(3, 3)
    obs = dist.Normal(torch.randn(3), 1.0)
    homogeneous = dist.DiscreteHMM(init, trans, obs, duration=5)
    explicit = dist.DiscreteHMM(init, trans.expand(5, 3, 3), obs.expand([5, 3]))
    assert homogeneous.event_shape == explicit.event_shape == (5,)
    y = torch.randn(5)
    assert torch.allclose(homogeneous.log_prob(y), explicit.log_prob(y))
    assert homogeneous.sample().shape == (5,)
    with pytest.raises(ValueError, match="duration=4"):
        dist.DiscreteHMM(init, trans.expand(5, 3, 3), obs, duration=4)
