"""Every fixture distribution against its scipy twin: densities, moments,
support, cdf/icdf and shape rules."""

import numpy as np
import pytest
import torch
from dist_fixtures import FIXTURES

CASES = [(f, i) for f in FIXTURES for i in range(len(f.examples))]
IDS = [f"{f!r}-{i}" for f, i in CASES]
NUM_SAMPLES = 20000
# 5 standard errors: a false failure rate below 1e-6 per comparison.
Z = 5.0


@pytest.mark.parametrize("fix,i", CASES, ids=IDS)
def test_log_prob_matches_scipy(fix, i):
    d = fix.make(i)
    x = d.sample((50,))
    expected = fix.logpdf(i, x.numpy())
    actual = d.log_prob(x)
    assert actual.shape == (50,) + d.batch_shape
    assert actual.dtype == torch.float64
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fix,i", CASES, ids=IDS)
def test_float32_log_prob_is_finite_and_close(fix, i):
    d32 = fix.make(i, dtype=torch.float32)
    x = d32.sample((200,))
    lp = d32.log_prob(x)
    assert lp.dtype == torch.float32
    assert torch.isfinite(lp).all()
    lp64 = fix.make(i).log_prob(x.double())
    np.testing.assert_allclose(lp.double().numpy(), lp64.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fix,i", CASES, ids=IDS)
def test_samples_in_support(fix, i):
    d = fix.make(i)
    x = d.sample((500,))
    assert x.shape == d.shape((500,))
    assert d.support.check(x).all()


@pytest.mark.parametrize("fix,i", [c for c in CASES if c[0].moments], ids=[
    idx for idx, c in zip(IDS, CASES) if c[0].moments])
def test_sample_moments(fix, i):
    d = fix.make(i)
    x = d.sample((NUM_SAMPLES,))
    mean, var = d.mean, d.variance
    if fix.scipy_fn is not None and not fix.multivariate:
        frozen = fix.scipy_fn(**fix.np_params(i))
        np.testing.assert_allclose(mean.numpy(), frozen.mean(), rtol=1e-6)
        if fix.moments == "both":
            np.testing.assert_allclose(var.numpy(), frozen.var(), rtol=1e-6)
    # The sample mean's standard error is sqrt(var / N).
    se_mean = (var / NUM_SAMPLES).sqrt()
    assert ((x.mean(0) - mean).abs() <= Z * se_mean).all()
    if fix.moments == "both":
        # The sample variance's standard error is sqrt((m4 - var^2) / N).
        m4 = (x - mean).pow(4).mean(0)
        se_var = ((m4 - var.pow(2)).clamp(min=0) / NUM_SAMPLES).sqrt()
        assert ((x.var(0) - var).abs() <= Z * se_var + 1e-12).all()


@pytest.mark.parametrize("fix,i", [c for c in CASES if c[0].cdf], ids=[
    idx for idx, c in zip(IDS, CASES) if c[0].cdf])
def test_cdf_icdf(fix, i):
    d = fix.make(i)
    x = d.sample((100,))
    frozen = fix.scipy_fn(**fix.np_params(i))
    np.testing.assert_allclose(d.cdf(x).numpy(), frozen.cdf(x.numpy()), rtol=1e-6, atol=1e-9)
    if fix.icdf:
        u = torch.rand((100,) + d.batch_shape, dtype=torch.float64) * 0.98 + 0.01
        np.testing.assert_allclose(d.icdf(u).numpy(), frozen.ppf(u.numpy()), rtol=1e-6,
                                   atol=1e-8)
        np.testing.assert_allclose(d.cdf(d.icdf(u)).numpy(), u.numpy(), rtol=1e-6)


@pytest.mark.parametrize("fix,i", CASES, ids=IDS)
def test_shapes_expand_to_event_mask(fix, i):
    d = fix.make(i)
    batch, event = d.batch_shape, d.event_shape
    e = d.expand((3,) + batch)
    assert type(e).__module__.startswith("probpl.")
    assert e.batch_shape == (3,) + batch and e.event_shape == event
    x = e.sample((2,))
    assert x.shape == (2, 3) + batch + event
    assert e.log_prob(x).shape == (2, 3) + batch
    assert e().shape == e.shape()
    ind = e.to_event()
    assert ind.batch_shape == () and ind.event_shape == (3,) + batch + event
    np.testing.assert_allclose(ind.log_prob(x).numpy(),
                               e.log_prob(x).reshape(2, -1).sum(-1).numpy(), rtol=1e-12)
    mask = torch.zeros((3,) + batch, dtype=torch.bool)
    mask[0] = True
    m = e.mask(mask)
    lp = m.log_prob(x)
    assert (lp[:, 1:] == 0).all()
    assert torch.equal(lp[:, 0], e.log_prob(x)[:, 0])
    assert (e.mask(False).log_prob(x) == 0).all()
    if d.has_enumerate_support:
        try:
            support = e.enumerate_support(expand=False)
        except NotImplementedError:
            return
        n = support.shape[0]
        assert support.shape == (n,) + (1,) * len(e.batch_shape) + event
        assert e.enumerate_support().shape == (n,) + e.batch_shape + event
