"""``Normal``/``LogNormal`` keep number parameters as numbers and expand lazily;
every observable result must equal ``torch.distributions``' own: log-densities
and their gradients, shapes and dtypes, parameters read back, samples drawn
from the same seed, validation errors."""

import pytest
import torch

import probpl.distributions as dist

PARAMS = [
    (0.0, 1.0),
    (0.3, 2.0),
    (-1.0, 0.5),
    ("t2", 0.5),
    (0.2, "t2"),
    ("t2", "t2"),
    ("t31", "t2"),
]


def _make(spec, dtype, requires_grad=False):
    loc, scale = spec
    g = torch.Generator().manual_seed(1)
    out = []
    for p, positive in ((loc, False), (scale, True)):
        if p == "t2":
            p = torch.randn(2, generator=g, dtype=dtype)
        elif p == "t31":
            p = torch.randn(3, 1, generator=g, dtype=dtype)
        if isinstance(p, torch.Tensor):
            p = p.abs() + 0.1 if positive else p
            p = p.requires_grad_(requires_grad)
        out.append(p)
    return out


def _values(dtype):
    g = torch.Generator().manual_seed(2)
    # Positive, so that LogNormal's density is defined at each of them.
    return [torch.tensor(0.7, dtype=dtype), torch.randn(2, generator=g, dtype=dtype).abs() + 0.1,
            torch.randn(4, 1, 1, generator=g, dtype=dtype).abs() + 0.1]


@pytest.mark.parametrize("spec", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["Normal", "LogNormal"])
@pytest.mark.parametrize("expand", [False, True])
def test_log_prob_and_grads_match_torch(spec, dtype, name, expand):
    ours_params = _make(spec, dtype, requires_grad=True)
    ref_params = [p.detach().clone().requires_grad_(True) if isinstance(p, torch.Tensor) else p
                  for p in ours_params]
    ours = getattr(dist, name)(*ours_params, validate_args=False)
    ref = getattr(torch.distributions, name)(*ref_params, validate_args=False)
    if expand:
        ours = ours.expand((5,) + ours.batch_shape)
        ref = ref.expand((5,) + ref.batch_shape)
    assert ours.batch_shape == ref.batch_shape
    for value in _values(dtype):
        try:
            expected = ref.log_prob(value)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                ours.log_prob(value)
            continue
        actual = ours.log_prob(value)
        assert actual.shape == expected.shape and actual.dtype == expected.dtype
        # Number parameters become float32 tensors in torch (the default dtype),
        # which limits torch's own float64 results to float32 accuracy.
        numbers = any(not isinstance(p, torch.Tensor) for p in ours_params)
        tol = 1e-5 if dtype == torch.float32 or numbers else 1e-12
        assert torch.allclose(actual, expected, rtol=tol, atol=tol)
        tensors = [(a, b) for a, b in zip(ours_params, ref_params) if isinstance(a, torch.Tensor)]
        if tensors:
            weights = torch.linspace(0.5, 1.5, expected.numel(), dtype=dtype).reshape(
                expected.shape)
            ga = torch.autograd.grad((actual * weights).sum(), [a for a, _ in tensors])
            gb = torch.autograd.grad((expected * weights).sum(), [b for _, b in tensors])
            for x, y in zip(ga, gb):
                assert torch.allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("spec", PARAMS)
def test_parameters_samples_and_moments_match_torch(spec):
    params = _make(spec, torch.float32)
    for name in ("Normal", "LogNormal"):
        ours = getattr(dist, name)(*params).expand((4,) + torch.broadcast_shapes(
            *(p.shape for p in params if isinstance(p, torch.Tensor))))
        ref = getattr(torch.distributions, name)(*params).expand(ours.batch_shape)
        for attr in ("loc", "scale", "mean", "variance"):
            a, b = getattr(ours, attr), getattr(ref, attr)
            assert a.shape == b.shape and a.dtype == b.dtype and torch.allclose(a, b)
        for method in ("sample", "rsample"):
            torch.manual_seed(3)
            a = getattr(ours, method)((2,))
            torch.manual_seed(3)
            b = getattr(ref, method)((2,))
            assert a.shape == b.shape and torch.allclose(a, b)
        assert torch.allclose(ours.entropy(), ref.entropy())


def test_number_parameters_follow_torch_dtype_rules():
    d = dist.Normal(0.0, 1.0)
    assert d.loc.dtype == torch.get_default_dtype() and d.batch_shape == ()
    x64 = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert dist.Normal(0.0, 1.0).log_prob(x64).dtype == torch.float64
    # A 0-dim float64 value promotes with torch's 0-dim float32 parameters.
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(torch.tensor(0.5, dtype=torch.float64))
    assert dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.5, dtype=torch.float64)).dtype == \
        expected.dtype
    mixed = dist.Normal(torch.zeros(3, dtype=torch.float64), 2.0)
    assert mixed.scale.dtype == torch.float64 and mixed.scale.shape == (3,)
    assert torch.equal(mixed.scale, torch.full((3,), 2.0, dtype=torch.float64))


def test_known_values():
    # log N(x | 1, 2) at x = 2: -log(2) - log(2 pi)/2 - 1/8
    expected = -0.6931471805599453 - 0.9189385332046727 - 0.125
    f64 = dict(dtype=torch.float64)
    x = torch.tensor(2.0, **f64)
    d = dist.Normal(torch.tensor(1.0, **f64), torch.tensor(2.0, **f64))
    assert d.log_prob(x).item() == pytest.approx(expected, abs=1e-12)
    assert dist.Normal(1.0, 2.0).log_prob(x.float()).item() == pytest.approx(expected, abs=1e-6)
    # log LogNormal(y | 0, 1) at y = e: log N(1 | 0, 1) - 1
    y = torch.tensor(1.0, **f64).exp()
    d = dist.LogNormal(torch.tensor(0.0, **f64), torch.tensor(1.0, **f64))
    assert d.log_prob(y).item() == pytest.approx(-0.9189385332046727 - 0.5 - 1.0, abs=1e-12)
    assert dist.LogNormal(0.0, 1.0).log_prob(y.float()).item() == pytest.approx(
        -0.9189385332046727 - 0.5 - 1.0, abs=1e-6)


def test_expand_is_checked_and_validation_still_runs():
    with pytest.raises(RuntimeError, match="cannot expand"):
        dist.Normal(torch.zeros(3), 1.0).expand((2,))
    with pytest.raises(ValueError, match="scale"):
        dist.Normal(0.0, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="scale"):
        dist.LogNormal(0.0, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="support"):
        dist.LogNormal(0.0, 1.0, validate_args=True).log_prob(torch.tensor(-1.0))
    d = dist.Normal(0.0, 1.0, validate_args=True).expand((3,))
    assert d._validate_args
    assert isinstance(d, dist.Normal) and isinstance(d, torch.distributions.Normal)
    assert repr(d) == repr(torch.distributions.Normal(torch.zeros(3), torch.ones(3)))
    assert torch.allclose(torch.distributions.kl_divergence(dist.Normal(0.0, 1.0),
                                                            dist.Normal(1.0, 2.0)),
                          torch.distributions.kl_divergence(
                              torch.distributions.Normal(0.0, 1.0),
                              torch.distributions.Normal(1.0, 2.0)))
