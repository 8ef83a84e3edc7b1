"""``GaussianHMM``: the Kalman-filter likelihood and final-state posterior
against the joint Gaussian of a directly simulated linear model, sampler
moments, shapes and argument checks."""

import numpy as np
import pytest
import torch

import probpl.distributions as dist

H, O = 2, 3  # hidden and observed dims; O > H keeps the observation map rectangular


def _tril(*shape):
    a = torch.randn(*shape, dtype=torch.float64)
    return a.tril(-1) + torch.diag_embed(torch.rand(*shape[:-1], dtype=torch.float64) + 0.5)


def _mvn(batch, dim):
    return dist.MultivariateNormal(torch.randn(batch + (dim,), dtype=torch.float64),
                                   scale_tril=_tril(*batch, dim, dim))


def _diag_normal(batch, dim):
    return dist.Normal(torch.randn(batch + (dim,), dtype=torch.float64),
                       torch.rand(batch + (dim,), dtype=torch.float64) + 0.3).to_event(1)


def _parts(noise, time_shape, batch=()):
    """Random model parts; ``time_shape`` is (T,) for time-varying parts, () otherwise."""
    make = {"mvn": _mvn, "diag": _diag_normal}[noise]
    return dict(
        initial_dist=make(batch, H),
        transition_matrix=0.5 * torch.randn(batch + time_shape + (H, H), dtype=torch.float64),
        transition_dist=make(batch + time_shape, H),
        observation_matrix=torch.randn(batch + time_shape + (H, O), dtype=torch.float64),
        observation_dist=make(batch + time_shape, O),
    )


def _loc_cov(d):
    return d.mean, d.covariance_matrix if hasattr(d, "covariance_matrix") else torch.diag_embed(
        d.variance)


def _joint(parts, num_steps, index=()):
    """Mean and covariance of (x_0, ..., x_{T-1}, z_T) for one batch element, by writing
    the simulation as a linear map of the independent Gaussian noises and taking its
    Jacobian: an independent route from the Kalman recursions."""
    def at(x, t, event_dims):
        x = x[index] if x.dim() > event_dims + (1 if t is not None else 0) else x
        if t is not None and x.dim() > event_dims:
            x = x[t] if x.size(0) > 1 else x[0]
        return x

    def noise_parts(d, t):
        loc, cov = _loc_cov(d)
        return at(loc, t, 1), at(cov, t, 2)

    blocks = [noise_parts(parts["initial_dist"], None)]
    for t in range(num_steps):
        blocks.append(noise_parts(parts["transition_dist"], t))
        blocks.append(noise_parts(parts["observation_dist"], t))
    sizes = [loc.numel() for loc, _ in blocks]

    def simulate(u):
        chunks = list(torch.split(u, sizes))
        z = chunks[0]
        xs = []
        for t in range(num_steps):
            z = z @ at(parts["transition_matrix"], t, 2) + chunks[1 + 2 * t]
            xs.append(z @ at(parts["observation_matrix"], t, 2) + chunks[2 + 2 * t])
        return torch.cat(xs + [z])

    mean_u = torch.cat([loc for loc, _ in blocks])
    cov_u = torch.block_diag(*[cov for _, cov in blocks])
    jac = torch.autograd.functional.jacobian(simulate, mean_u)
    return simulate(mean_u), jac @ cov_u @ jac.T


@pytest.mark.parametrize("noise", ["mvn", "diag"])
@pytest.mark.parametrize("time_varying", [True, False])
def test_log_prob_matches_joint_gaussian(noise, time_varying):
    T = 4
    parts = _parts(noise, (T,) if time_varying else ())
    hmm = dist.GaussianHMM(**parts)
    assert hmm.event_shape == ((T if time_varying else 1), O)
    mean, cov = _joint(parts, T)
    joint_x = dist.MultivariateNormal(mean[:-H], covariance_matrix=cov[:-H, :-H])
    x = joint_x.sample((6,)).reshape(6, T, O)
    expected = joint_x.log_prob(x.reshape(6, -1))
    torch.testing.assert_close(hmm.log_prob(x), expected, rtol=1e-10, atol=1e-10)


def test_homogeneous_model_scores_any_length():
    parts = _parts("mvn", ())
    hmm = dist.GaussianHMM(**parts)
    assert hmm.duration is None
    for T in (1, 2, 7):
        mean, cov = _joint(parts, T)
        x = torch.randn(3, T, O, dtype=torch.float64)
        expected = dist.MultivariateNormal(mean[:-H], covariance_matrix=cov[:-H, :-H]).log_prob(
            x.reshape(3, -1))
        torch.testing.assert_close(hmm.log_prob(x), expected, rtol=1e-10, atol=1e-10)


def test_batched_log_prob_and_filter():
    T, batch = 3, (2,)
    parts = _parts("mvn", (T,), batch)
    # A batch-free part must broadcast: share one observation noise across the batch.
    parts["observation_dist"] = _mvn((T,), O)
    hmm = dist.GaussianHMM(**parts)
    assert hmm.batch_shape == batch and hmm.event_shape == (T, O)
    x = torch.randn(5, 2, T, O, dtype=torch.float64)
    lp = hmm.log_prob(x)
    post = hmm.filter(x)
    assert lp.shape == (5, 2) and post.batch_shape == (5, 2) and post.event_shape == (H,)
    for b in range(2):
        mean, cov = _joint(parts, T, index=(b,))
        joint_x = dist.MultivariateNormal(mean[:-H], covariance_matrix=cov[:-H, :-H])
        torch.testing.assert_close(lp[:, b], joint_x.log_prob(x[:, b].reshape(5, -1)),
                                   rtol=1e-10, atol=1e-10)
        # Gaussian conditioning of z_T on x.
        cxx, czx = cov[:-H, :-H], cov[-H:, :-H]
        resid = x[:, b].reshape(5, -1) - mean[:-H]
        cond_mean = mean[-H:] + resid @ torch.linalg.solve(cxx, czx.T)
        cond_cov = cov[-H:, -H:] - czx @ torch.linalg.solve(cxx, czx.T)
        torch.testing.assert_close(post.mean[:, b], cond_mean, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(post.covariance_matrix[:, b],
                                   cond_cov.expand(5, H, H), rtol=1e-9, atol=1e-9)


def test_rsample_moments_match_joint_gaussian():
    T, N = 3, 20000
    parts = _parts("diag", (T,))
    hmm = dist.GaussianHMM(**parts)
    x = hmm.rsample((N,)).reshape(N, -1)
    mean, cov = _joint(parts, T)
    mean, cov = mean[:-H], cov[:-H, :-H]
    # 5 standard errors per entry: false failure rate below 1e-6 per entry, about 1e-4
    # over the 9 + 45 entries checked.
    se_mean = (cov.diagonal() / N).sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * se_mean).all()
    centred = x - mean
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # unbiased for cov (true mean)
    se_cov = products.std(0) / N ** 0.5
    assert ((products.mean(0) - cov).abs() <= 5 * se_cov).all()


def test_rsample_shapes_and_gradients():
    parts = _parts("mvn", (1,), batch=(2,))  # time dim of size 1: homogeneous
    loc = parts["transition_dist"].loc.clone().requires_grad_()
    parts["transition_dist"] = dist.MultivariateNormal(
        loc, scale_tril=parts["transition_dist"].scale_tril)
    hmm = dist.GaussianHMM(**parts, duration=4)
    assert hmm.has_rsample and hmm.event_shape == (4, O) and hmm.batch_shape == (2,)
    x = hmm.rsample((3,))
    assert x.shape == (3, 2, 4, O)
    x.sum().backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0
    e = hmm.expand((5, 2))
    assert type(e) is dist.GaussianHMM and e.batch_shape == (5, 2)
    y = e.sample((3,))
    assert y.shape == (3, 5, 2, 4, O)
    assert not torch.allclose(y[:, 0], y[:, 1])  # expanded elements are drawn independently
    lp = e.log_prob(y)
    assert lp.shape == (3, 5, 2)
    torch.testing.assert_close(lp, hmm.log_prob(y))


def test_float32_log_prob():
    parts = _parts("mvn", (5,))
    hmm64 = dist.GaussianHMM(**parts)
    x = hmm64.sample((10,))
    parts32 = {k: (v.float() if torch.is_tensor(v) else None) for k, v in parts.items()}
    for k in ("initial_dist", "transition_dist", "observation_dist"):
        d = parts[k]
        parts32[k] = dist.MultivariateNormal(d.loc.float(), scale_tril=d.scale_tril.float())
    lp32 = dist.GaussianHMM(**parts32).log_prob(x.float())
    assert lp32.dtype == torch.float32
    np.testing.assert_allclose(lp32.double().numpy(), hmm64.log_prob(x).numpy(), rtol=1e-4,
                               atol=1e-3)


def test_errors():
    parts = _parts("mvn", (3,))
    with pytest.raises(ValueError, match="transition_dist.event_shape"):
        dist.GaussianHMM(**{**parts, "transition_dist": _mvn((3,), O)})
    with pytest.raises(ValueError, match="do not broadcast"):
        dist.GaussianHMM(**{**parts, "observation_dist": _mvn((4,), O)})
    with pytest.raises(ValueError, match="MultivariateNormal or Normal"):
        dist.GaussianHMM(**{**parts, "initial_dist": dist.Laplace(torch.zeros(H), 1.0)
                            .to_event(1)})
    with pytest.raises(ValueError, match="duration=5"):
        dist.GaussianHMM(**parts, duration=5)
    hmm = dist.GaussianHMM(**parts)
    with pytest.raises(ValueError):
        hmm.log_prob(torch.zeros(4, O, dtype=torch.float64))
    with pytest.raises(ValueError, match="duration"):
        dist.GaussianHMM(**_parts("mvn", ())).sample()
