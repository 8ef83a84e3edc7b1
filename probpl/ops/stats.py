"""Statistics of Monte Carlo draws: autocorrelation, effective sample size, R-hat,
credible intervals and a per-site summary.

Conventions follow Pyro: draws grouped by chain are shaped ``(num_chains, num_samples,
...)`` and selected with ``chain_dim`` / ``sample_dim``; trailing dimensions are
independent quantities.

References

1. C. J. Geyer (1992), "Practical Markov Chain Monte Carlo", Statistical Science 7(4).
2. A. Gelman, D. B. Rubin (1992), "Inference from Iterative Simulation Using Multiple
   Sequences", Statistical Science 7(4).
3. Stan Development Team, "Stan Reference Manual", sections on effective sample size and
   potential scale reduction.
"""

import math

import torch


def _next_fast_len(n):
    # FFT sizes that are powers of two avoid slow prime-length transforms
    return 1 << max(0, (n - 1).bit_length())


def autocorrelation(input, dim=0):
    """Autocorrelation of ``input`` along ``dim`` for all lags, by FFT.

    :param torch.Tensor input: the series.
    :param int dim: the time dimension.
    :returns: a tensor shaped like ``input``; lag 0 is 1.
    """
    if not input.is_floating_point():
        raise TypeError(f"autocorrelation expects a floating point tensor, got {input.dtype}")
    n = input.shape[dim]
    x = input.movedim(dim, -1)
    x = x - x.mean(-1, keepdim=True)
    m = 2 * _next_fast_len(n)
    f = torch.fft.rfft(x, n=m)
    acov = torch.fft.irfft(f * f.conj(), n=m)[..., :n]
    acorr = acov / acov[..., :1]
    return acorr.movedim(-1, dim)


def autocovariance(input, dim=0):
    """Biased (divided by ``N``) autocovariance along ``dim`` for all lags.

    :returns: a tensor shaped like ``input``; lag 0 is the variance.
    """
    x = input.movedim(dim, -1)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (autocorrelation(x, dim=-1) * var).movedim(-1, dim)


def _chains_samples(input, chain_dim, sample_dim):
    if input.dim() < 2:
        raise ValueError(
            f"expected draws shaped (num_chains, num_samples, ...), got shape {tuple(input.shape)}"
        )
    return input.movedim((chain_dim, sample_dim), (0, 1))


def gelman_rubin(input, chain_dim=0, sample_dim=1):
    """Potential scale reduction factor R-hat.

    :param torch.Tensor input: draws with chain and sample dimensions.
    :returns: R-hat for each trailing index.
    """
    x = _chains_samples(input, chain_dim, sample_dim)
    n = x.shape[1]
    if n < 2:
        raise ValueError(f"gelman_rubin needs at least 2 samples per chain, got {n}")
    within = x.var(1).mean(0)
    var_plus = (n - 1) / n * within
    if x.shape[0] > 1:
        var_plus = var_plus + x.mean(1).var(0)
    return (var_plus / within).sqrt()


def split_gelman_rubin(input, chain_dim=0, sample_dim=1):
    """R-hat computed after splitting each chain into halves (catches drifting chains).

    :returns: split R-hat for each trailing index.
    """
    x = _chains_samples(input, chain_dim, sample_dim)
    n = x.shape[1]
    if n < 4:
        raise ValueError(f"split_gelman_rubin needs at least 4 samples per chain, got {n}")
    half = n // 2
    return gelman_rubin(torch.cat([x[:, :half], x[:, n - half:]], dim=0))


def effective_sample_size(input, chain_dim=0, sample_dim=1):
    """Effective sample size over all chains, with Geyer's initial monotone sequence
    estimator of the integrated autocorrelation time.

    :returns: the ESS for each trailing index.
    """
    x = _chains_samples(input, chain_dim, sample_dim)
    c, n = x.shape[:2]
    if n < 2:
        raise ValueError(f"effective_sample_size needs at least 2 samples per chain, got {n}")
    gamma = autocovariance(x, dim=1).mean(0)  # (n, ...), mean over chains
    within = x.var(1).mean(0)
    var_plus = within * (n - 1) / n
    if c > 1:
        var_plus = var_plus + x.mean(1).var(0)
    rho = 1.0 - (within - gamma) / var_plus
    rho[0] = 1.0
    m = n // 2
    pairs = rho[: 2 * m].reshape((m, 2) + rho.shape[1:]).sum(1)
    # Geyer: keep the initial positive run of pair sums, then force it to be non-increasing
    keep = torch.cumprod((pairs > 0).to(pairs.dtype), dim=0)
    pairs = torch.cummin(pairs * keep, dim=0).values * keep
    tau = -1.0 + 2.0 * pairs.sum(0)
    tau = tau.clamp(min=1.0 / math.log10(c * n + 10))
    return c * n / tau


def quantile(input, probs, dim=0):
    """Sample quantiles with linear interpolation.

    :param probs: a float or a sequence of probabilities in [0, 1].
    :returns: the quantiles stacked along ``dim`` (one entry per probability).
    """
    q = torch.as_tensor(probs, dtype=input.dtype, device=input.device).reshape(-1)
    if ((q < 0) | (q > 1)).any():
        raise ValueError(f"quantile probabilities must lie in [0, 1], got {probs}")
    return torch.quantile(input, q, dim=dim).movedim(0, dim)


def pi(input, prob, dim=0):
    """Central (equal-tailed) interval holding probability mass ``prob``.

    :returns: lower and upper bounds stacked along ``dim``.
    """
    return quantile(input, [(1.0 - prob) / 2.0, (1.0 + prob) / 2.0], dim=dim)


def hpdi(input, prob, dim=0):
    """Narrowest interval holding probability mass ``prob``.

    :returns: lower and upper bounds stacked along ``dim``.
    """
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"hpdi expects 0 < prob <= 1, got {prob}")
    x = input.movedim(dim, 0).sort(0).values
    n = x.shape[0]
    mass = min(n - 1, max(1, int(math.floor(prob * n))))
    widths = x[mass:] - x[: n - mass]
    start = widths.argmin(0, keepdim=True)
    low = x.gather(0, start)
    high = x.gather(0, start + mass)
    return torch.cat([low, high], 0).movedim(0, dim)


def resample(input, num_samples, dim=0, replacement=False):
    """Draw ``num_samples`` entries of ``input`` along ``dim`` uniformly at random."""
    n = input.shape[dim]
    if replacement:
        idx = torch.randint(n, (num_samples,), device=input.device)
    else:
        if num_samples > n:
            raise ValueError(f"cannot draw {num_samples} of {n} without replacement")
        idx = torch.randperm(n, device=input.device)[:num_samples]
    return input.index_select(dim, idx)


def waic(input, log_weights=None, pointwise=False, dim=0):
    """Widely applicable information criterion from pointwise log-likelihoods.

    :param torch.Tensor input: log-likelihoods, draws along ``dim``.
    :param log_weights: optional log weights of the draws.
    :returns: ``(waic, effective number of parameters)``, summed over data unless
        ``pointwise``.
    """
    if log_weights is None:
        log_weights = torch.zeros(input.shape[dim], dtype=input.dtype, device=input.device)
    shape = [1] * input.dim()
    shape[dim] = -1
    log_weights = log_weights.reshape(shape)
    weights = (log_weights - log_weights.logsumexp(dim, keepdim=True)).exp()
    lpd = torch.logsumexp(log_weights + input, dim) - torch.logsumexp(log_weights, dim)
    mean = (weights * input).sum(dim, keepdim=True)
    p_waic = (weights * (input - mean) ** 2).sum(dim)
    elpd = lpd - p_waic
    w = -2.0 * elpd
    if pointwise:
        return w, p_waic
    return w.sum(), p_waic.sum()


def summary(samples, prob=0.9, group_by_chain=True):
    """Mean, standard deviation, median, HPD interval, effective sample size and split R-hat
    of each site.

    :param dict samples: site name to draws, ``(num_chains, num_samples, ...)`` when
        ``group_by_chain`` else ``(num_samples, ...)``.
    :param float prob: mass of the credible interval.
    :returns: site name to a dict of statistics keyed ``mean``, ``std``, ``median``,
        ``"{lower}%"``, ``"{upper}%"``, ``n_eff``, ``r_hat``.
    """
    lo, hi = 50.0 * (1.0 - prob), 50.0 * (1.0 + prob)
    result = {}
    for name, value in samples.items():
        x = value if group_by_chain else value.unsqueeze(0)
        if not x.is_floating_point():
            x = x.double()
        flat = x.reshape((-1,) + x.shape[2:])
        interval = hpdi(flat, prob)
        stats = {
            "mean": flat.mean(0),
            "std": flat.std(0),
            "median": flat.median(0).values,
            f"{lo:.1f}%": interval[0],
            f"{hi:.1f}%": interval[1],
        }
        if x.shape[1] >= 4:
            stats["n_eff"] = effective_sample_size(x)
            stats["r_hat"] = split_gelman_rubin(x)
        else:
            nan = torch.full_like(stats["mean"], float("nan"))
            stats["n_eff"], stats["r_hat"] = nan, nan
        result[name] = stats
    return result
