import pytest
import torch

from probpl.ops.welford import WelfordCovariance, welford_final, welford_init, welford_update


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_batch_covariance(dense, dtype):
    torch.manual_seed(0)
    # two chains with different covariances, estimated independently
    x = torch.randn(3, 200, 4, dtype=dtype) @ torch.randn(3, 4, 4, dtype=dtype)
    state = welford_init(x[:, 0], dense=dense)
    for i in range(x.shape[1]):
        state = welford_update(state, x[:, i])
    cov = welford_final(state, regularize=False)
    expected = torch.stack([torch.cov(x[c].T) for c in range(3)])
    if not dense:
        expected = expected.diagonal(dim1=-2, dim2=-1)
    assert cov.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(cov, expected, rtol=tol, atol=tol)
    assert torch.allclose(state.mean, x.mean(1), rtol=tol, atol=tol)


def test_stan_regularization():
    torch.manual_seed(0)
    x = torch.randn(20, 3, dtype=torch.float64)
    w = WelfordCovariance(diagonal=False)
    for xi in x:
        w.update(xi)
    n = 20
    expected = torch.cov(x.T) * n / (n + 5) + 1e-3 * 5 / (n + 5) * torch.eye(3, dtype=x.dtype)
    assert torch.allclose(w.get_covariance(), expected)
    assert w.n_samples == 20


def test_too_few_samples():
    state = welford_update(welford_init(torch.zeros(2)), torch.ones(2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        welford_final(state)


@pytest.mark.parametrize("dense", [False, True])
def test_masked_updates_keep_rows_apart(dense):
    # each row folds in only the samples its mask lets through, as if estimated alone
    torch.manual_seed(1)
    x = torch.randn(3, 60, 4, dtype=torch.float64)
    mask = torch.rand(3, 60) < torch.tensor([[0.2], [0.6], [1.0]])
    state = welford_init(x[:, 0], dense=dense)
    for i in range(x.shape[1]):
        state = welford_update(state, x[:, i], mask=mask[:, i])
    assert state.count.tolist() == mask.sum(1).double().tolist()
    cov = welford_final(state)
    for c in range(3):
        alone = welford_init(x[c, 0], dense=dense)
        for xi in x[c][mask[c]]:
            alone = welford_update(alone, xi)
        assert torch.allclose(state.mean[c], alone.mean)
        assert torch.allclose(cov[c], welford_final(alone))
