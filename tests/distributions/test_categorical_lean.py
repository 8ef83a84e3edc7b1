"""``Categorical`` keeps its parameter as given, normalises it when read and
expands lazily; every observable result must equal ``torch.distributions``' own:
log-densities and their gradients, parameters read back, entropies, samples
drawn from the same seed, supports, shapes and dtypes, validation errors."""

import copy
import math
import pickle

import pytest
import scipy.special
import scipy.stats
import torch

import probpl.distributions as dist

SHAPES = [(3,), (2, 3), (4, 1, 3), (1,)]
KINDS = ["probs", "logits", "probs_with_zeros"]
# (A single category cannot have probability zero.)
CASES = [(k, s) for k in KINDS for s in SHAPES if not (k == "probs_with_zeros" and s[-1] == 1)]


def _param(kind, shape, dtype, requires_grad=False):
    g = torch.Generator().manual_seed(sum(shape) + len(shape))
    x = torch.randn(shape, generator=g, dtype=dtype)
    if kind == "probs":
        x = x.abs() + 0.05  # unnormalised, as a model's rows often are
    elif kind == "probs_with_zeros":
        x = x.abs() + 0.05
        x[..., 0] = 0.0
    return x.requires_grad_(requires_grad)


def _kwargs(kind, x):
    return {"logits" if kind == "logits" else "probs": x}


def _pair(kind, shape, dtype, requires_grad=False, validate_args=False):
    """(ours, torch's, our parameter, torch's parameter): same values, own leaves."""
    ours_x = _param(kind, shape, dtype, requires_grad)
    ref_x = ours_x.detach().clone().requires_grad_(requires_grad)
    ours = dist.Categorical(**_kwargs(kind, ours_x), validate_args=validate_args)
    ref = torch.distributions.Categorical(**_kwargs(kind, ref_x), validate_args=validate_args)
    return ours, ref, ours_x, ref_x


def _values(batch_shape, k):
    g = torch.Generator().manual_seed(7)
    shapes = [(), batch_shape, (5,) + (1,) * len(batch_shape), (2,) + batch_shape]
    return [torch.randint(0, k, s, generator=g) for s in shapes]


def _tol(dtype):
    return 1e-6 if dtype == torch.float32 else 1e-12


@pytest.mark.parametrize("kind,shape", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("expand", [False, True])
def test_log_prob_and_grads_match_torch(kind, shape, dtype, expand):
    ours, ref, ours_x, ref_x = _pair(kind, shape, dtype, requires_grad=True)
    if expand:
        ours = ours.expand((6,) + ours.batch_shape)
        ref = ref.expand((6,) + ref.batch_shape)
    assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
    tol = _tol(dtype)
    for value in _values(ours.batch_shape, shape[-1]):
        expected = ref.log_prob(value)
        actual = ours.log_prob(value)
        assert actual.shape == expected.shape and actual.dtype == expected.dtype
        assert torch.allclose(actual, expected, rtol=tol, atol=tol)
        w = torch.linspace(0.5, 1.5, expected.numel(), dtype=dtype).reshape(expected.shape)
        # (Both keep their normalised parameter, and its graph, for later calls.)
        (ga,) = torch.autograd.grad((actual * w).sum(), [ours_x], retain_graph=True)
        (gb,) = torch.autograd.grad((expected * w).sum(), [ref_x], retain_graph=True)
        assert torch.allclose(ga, gb, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind,shape", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameters_moments_and_entropy_match_torch(kind, shape, dtype):
    ours, ref, ours_x, ref_x = _pair(kind, shape, dtype, requires_grad=True)
    ours, ref = ours.expand((3,) + ours.batch_shape), ref.expand((3,) + ref.batch_shape)
    tol = _tol(dtype)
    assert ours.param_shape == ref.param_shape
    for attr in ("probs", "logits", "mean", "variance", "mode"):
        a, b = getattr(ours, attr), getattr(ref, attr)
        assert a.shape == b.shape and a.dtype == b.dtype, attr
        assert torch.allclose(a, b, rtol=tol, atol=tol, equal_nan=True), attr
    a, b = ours.entropy(), ref.entropy()
    assert a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol)
    (ga,) = torch.autograd.grad(a.sum(), [ours_x])
    (gb,) = torch.autograd.grad(b.sum(), [ref_x])
    assert torch.allclose(ga, gb, rtol=tol, atol=tol)
    assert ours.support.upper_bound == ref.support.upper_bound == shape[-1] - 1


@pytest.mark.parametrize("kind", ["probs", "logits"])
@pytest.mark.parametrize("expand", [False, True])
def test_samples_match_torch_for_the_same_seed(kind, expand):
    ours, ref, _, _ = _pair(kind, (4, 1, 3), torch.float32)
    if expand:
        ours, ref = ours.expand((2, 4, 5)), ref.expand((2, 4, 5))
    for sample_shape in ((), (7,), torch.Size((2, 3))):
        torch.manual_seed(11)
        a = ours.sample(sample_shape)
        torch.manual_seed(11)
        b = ref.sample(sample_shape)
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    torch.manual_seed(11)
    assert torch.equal(ours(), (torch.manual_seed(11), ref.sample())[1])


def test_sample_frequencies_follow_the_normalised_probs():
    # 40,000 draws: each frequency's standard error is at most 0.0025, and 0.01
    # is 4 standard errors (false-failure rate below 1e-4 per category).
    torch.manual_seed(0)
    d = dist.Categorical(torch.tensor([1.0, 2.0, 5.0]))
    x = d.sample((40000,))
    freq = torch.bincount(x, minlength=3).double() / x.numel()
    assert torch.allclose(freq, torch.tensor([0.125, 0.25, 0.625], dtype=torch.float64),
                          atol=0.01)


def test_known_values_against_scipy():
    p = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    d = dist.Categorical(p)
    ref = scipy.stats.rv_discrete(values=(range(4), (p / p.sum()).numpy()))
    for k in range(4):
        assert d.log_prob(torch.tensor(k)).item() == pytest.approx(ref.logpmf(k), abs=1e-12)
        assert d.log_prob(torch.tensor(k)).item() == pytest.approx(math.log((k + 1) / 10),
                                                                   abs=1e-12)
    assert d.entropy().item() == pytest.approx(ref.entropy(), abs=1e-12)
    logits = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    d = dist.Categorical(logits=logits)
    probs = scipy.special.softmax(logits.numpy())
    assert torch.allclose(d.probs, torch.from_numpy(probs), atol=1e-12)
    assert d.entropy().item() == pytest.approx(scipy.stats.entropy(probs), abs=1e-12)


@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 1)])
def test_enumerate_support_matches_torch(batch_shape):
    x = _param("probs", batch_shape + (3,), torch.float32)
    ours, ref = dist.Categorical(x), torch.distributions.Categorical(x)
    for expand in (True, False):
        a, b = ours.enumerate_support(expand), ref.enumerate_support(expand)
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    ours, ref = ours.expand((4,) + ours.batch_shape), ref.expand((4,) + ref.batch_shape)
    for expand in (True, False):
        a, b = ours.enumerate_support(expand), ref.enumerate_support(expand)
        assert a.shape == b.shape and torch.equal(a, b)


def test_expand_is_lazy_and_checked():
    x = torch.rand(2, 3, requires_grad=True)
    d = dist.Categorical(x).expand((5, 2))
    assert d.batch_shape == (5, 2) and d._param is x  # no expand op, no graph node
    assert d.probs.shape == d.logits.shape == (5, 2, 3)
    assert d.expand((4, 5, 2)).batch_shape == (4, 5, 2)
    assert dist.Categorical(x).expand_by((6,)).batch_shape == (6, 2)
    with pytest.raises(RuntimeError):
        dist.Categorical(x).expand((3,))
    with pytest.raises(RuntimeError):
        torch.distributions.Categorical(x).expand((3,))
    with pytest.raises(RuntimeError):
        dist.Categorical(x).expand((4, 3))


def test_validation_matches_torch():
    good = torch.tensor([0.2, 0.8])
    for cls in (dist.Categorical, torch.distributions.Categorical):
        with pytest.raises(ValueError, match="probs"):
            cls(torch.tensor([-0.1, 1.1]), validate_args=True)
        with pytest.raises(ValueError, match="logits"):
            cls(logits=torch.tensor([0.0, float("nan")]), validate_args=True)
        with pytest.raises(ValueError, match="Either `probs` or `logits`"):
            cls(good, logits=good, validate_args=True)
        with pytest.raises(ValueError, match="Either `probs` or `logits`"):
            cls(validate_args=True)
        with pytest.raises(ValueError, match="at least one-dimensional"):
            cls(torch.tensor(1.0))
        d = cls(good, validate_args=True)
        with pytest.raises(ValueError, match="support"):
            d.log_prob(torch.tensor(2))
        with pytest.raises(ValueError, match="support"):
            d.expand((3,)).log_prob(torch.tensor([0, 1, -1]))
        with pytest.raises(ValueError, match="broadcastable"):
            d.expand((3,)).log_prob(torch.tensor([0, 1]))
        # Without validation, negative "probs" are taken as they come.
        assert cls(torch.tensor([-0.1, 1.1]), validate_args=False).batch_shape == ()
    # The unchecked parameterisation is never read (and so never validated).
    d = dist.Categorical(good, validate_args=True)
    assert "probs" in d.__dict__ and "logits" not in d.__dict__
    assert repr(d) == repr(torch.distributions.Categorical(good))


def test_identity_wrappers_and_pickling():
    x = _param("probs", (2, 3), torch.float64)
    d = dist.Categorical(x)
    assert type(d) is dist.Categorical
    assert isinstance(d, torch.distributions.Categorical)
    assert isinstance(d, dist.TorchDistributionMixin)
    assert d.to_event(1).event_shape == (2,) and d.to_event(1).batch_shape == ()
    masked = d.mask(torch.tensor([True, False]))
    lp = masked.log_prob(torch.tensor([1, 2]))
    assert lp[1] == 0 and lp[0] == d.log_prob(torch.tensor([1, 2]))[0]
    for e in (d, d.expand((4, 2))):
        for clone in (pickle.loads(pickle.dumps(e)), copy.deepcopy(e)):
            assert type(clone) is dist.Categorical and clone.batch_shape == e.batch_shape
            assert torch.equal(clone.probs, e.probs)
            assert torch.equal(clone.log_prob(torch.tensor(1)), e.log_prob(torch.tensor(1)))
    q = dist.Categorical(logits=torch.zeros(2, 3, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(x), torch.distributions.Categorical(logits=q.logits))
    assert torch.allclose(dist.kl_divergence(d, q), expected, atol=1e-12)


def test_grad_mode_at_construction_is_kept():
    x = torch.rand(3, requires_grad=True)
    with torch.no_grad():
        ours, ref = dist.Categorical(x), torch.distributions.Categorical(x)
    assert ours.probs.requires_grad == ref.probs.requires_grad is False
    assert ours.log_prob(torch.tensor(1)).requires_grad is False
    # Read outside no_grad, a parameter built with gradients keeps them.
    d = dist.Categorical(logits=x)
    with torch.no_grad():
        d.log_prob(torch.tensor(0))
    assert d.probs.requires_grad and d.logits.requires_grad


def test_distributions_built_on_categorical():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, dtype=torch.float64)
    locs = torch.randn(2, 3, dtype=torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64)
    ours = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(locs, 1.0))
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=logits),
                                                torch.distributions.Normal(locs, 1.0))
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x), atol=1e-12)
    assert ours.expand((5, 2)).log_prob(x[0]).shape == (5, 2)
    # OrderedLogistic is a Categorical over K + 1 ordered outcomes.
    cut = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    d = dist.OrderedLogistic(torch.tensor(0.3, dtype=torch.float64), cut)
    cdf = torch.sigmoid(cut - 0.3)
    expected = torch.stack([cdf[0], cdf[1] - cdf[0], 1 - cdf[1]]).log()
    assert torch.allclose(d.log_prob(torch.arange(3)), expected, atol=1e-12)
    assert d.expand((2,)).log_prob(torch.tensor(1)).shape == (2,)
    # OneHotCategorical agrees with the index form.
    p = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    onehot = dist.OneHotCategorical(p).log_prob(torch.eye(3, dtype=torch.float64))
    assert torch.allclose(onehot, dist.Categorical(p).log_prob(torch.arange(3)), atol=1e-12)
