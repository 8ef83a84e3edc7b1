import math

import pytest
import torch

from probpl.ops.stats import (
    autocorrelation,
    autocovariance,
    effective_sample_size,
    gelman_rubin,
    hpdi,
    pi,
    quantile,
    split_gelman_rubin,
    summary,
)


def _ar1(rho, num_chains, num_samples, dtype=torch.float64):
    x = torch.empty(num_chains, num_samples, dtype=dtype)
    x[:, 0] = torch.randn(num_chains, dtype=dtype)  # stationary start
    noise = torch.randn(num_chains, num_samples, dtype=dtype) * math.sqrt(1 - rho**2)
    for t in range(1, num_samples):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def test_autocorrelation_known():
    x = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 2.0], dtype=torch.float64)
    acov = autocovariance(x)
    # the centred series is +-0.5; lag k sums (n - k) products of +-0.25, divided by n
    expected = torch.tensor([6, -5, 4, -3, 2, -1], dtype=torch.float64) * 0.25 / 6
    assert torch.allclose(acov, expected)
    assert torch.allclose(autocorrelation(x), expected / expected[0])


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_ar1(rho):
    torch.manual_seed(0)
    n = 20000
    x = _ar1(rho, 4, n)
    expected = 4 * n * (1 - rho) / (1 + rho)
    ess = effective_sample_size(x)
    # the relative sd of the autocorrelation-time estimate is about sqrt(4 M / (C N)) with
    # truncation lag M <= 40 here, i.e. under 5%; 15% is three standard errors
    assert float(ess) == pytest.approx(expected, rel=0.15)


def test_ess_trailing_dims_and_dim_args():
    torch.manual_seed(1)
    x = torch.randn(2, 1000, 3)
    ess = effective_sample_size(x)
    assert ess.shape == (3,)
    ess_t = effective_sample_size(x.transpose(0, 1), chain_dim=1, sample_dim=0)
    assert torch.allclose(ess, ess_t)


def test_rhat():
    torch.manual_seed(0)
    iid = torch.randn(4, 2000, dtype=torch.float64)
    # with iid draws R-hat - 1 is O(1/N)
    assert float(gelman_rubin(iid)) == pytest.approx(1.0, abs=5e-3)
    assert float(split_gelman_rubin(iid)) == pytest.approx(1.0, abs=5e-3)
    shifted = iid + torch.arange(4, dtype=torch.float64).unsqueeze(-1)
    assert float(gelman_rubin(shifted)) > 1.3
    # a trend inside each chain is only caught by splitting
    trend = iid + torch.linspace(-3, 3, 2000, dtype=torch.float64)
    assert float(split_gelman_rubin(trend)) > 1.3


def test_quantile_and_intervals():
    x = torch.arange(101, dtype=torch.float64)
    q = quantile(x, [0.1, 0.5])
    assert torch.allclose(q, torch.tensor([10.0, 50.0], dtype=torch.float64))
    assert torch.allclose(pi(x, 0.8), torch.tensor([10.0, 90.0], dtype=torch.float64))
    # skewed draws: the narrowest interval starts at the mode
    torch.manual_seed(0)
    e = torch.distributions.Exponential(1.0).sample((20000,)).double()
    low, high = hpdi(e, 0.9)
    assert float(low) < 0.01
    assert float(high) == pytest.approx(-math.log(0.1), rel=0.05)
    two = hpdi(torch.randn(1000, 2), 0.9)
    assert two.shape == (2, 2)


def test_summary_keys():
    torch.manual_seed(0)
    s = summary({"a": torch.randn(2, 100), "b": torch.randn(2, 100, 3)}, prob=0.9)
    assert set(s["a"]) == {"mean", "std", "median", "5.0%", "95.0%", "n_eff", "r_hat"}
    assert s["b"]["mean"].shape == (3,)


def test_bad_input():
    with pytest.raises(ValueError, match="num_chains, num_samples"):
        effective_sample_size(torch.randn(10))
