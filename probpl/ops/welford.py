"""Streaming (Welford) estimates of mean and covariance, used to adapt the mass matrix.

The estimator is a triple of pure functions ``(welford_init, welford_update, welford_final)``
over a :class:`WelfordState`; any leading dimensions of the samples (for instance one per
chain) are batch dimensions and are estimated independently.  :class:`WelfordCovariance`
is a small stateful wrapper with Pyro's interface.

References

1. B. P. Welford (1962), "Note on a method for calculating corrected sums of squares and
   products", Technometrics 4(3).
2. Stan Development Team, "Stan Reference Manual", section on HMC adaptation
   (regularisation of the estimated metric towards a small multiple of the identity).
"""

from typing import NamedTuple

import torch


class WelfordState(NamedTuple):
    mean: torch.Tensor  # running mean, shape (..., D)
    m2: torch.Tensor  # running sum of squared deviations, (..., D) diagonal or (..., D, D) dense
    count: object  # samples seen so far: an int, or a tensor of per-row counts (masked updates)


def welford_init(prototype, dense=False):
    """Start an estimate for samples shaped like ``prototype`` (``(..., D)``).

    :param torch.Tensor prototype: a tensor with the shape, dtype and device of one sample.
    :param bool dense: estimate the full covariance rather than only its diagonal.
    :returns: an empty :class:`WelfordState`.
    """
    mean = torch.zeros_like(prototype)
    if dense:
        m2 = prototype.new_zeros(prototype.shape + prototype.shape[-1:])
    else:
        m2 = torch.zeros_like(prototype)
    return WelfordState(mean, m2, 0)


def welford_update(state, sample, mask=None):
    """Fold one sample (``(..., D)``) into the running estimate.

    :param torch.Tensor mask: optional bool tensor over the batch dimensions (``(...,)``):
        only the rows where it is true take the sample, so that each row keeps its own
        count (which then becomes a tensor).
    :returns: the updated :class:`WelfordState`.
    """
    delta_pre = sample - state.mean
    dense = state.m2.dim() == sample.dim() + 1
    if mask is None:
        count = state.count + 1
        mean = state.mean + delta_pre / _column(count)
    else:
        count = state.count + mask.to(sample.dtype)
        mean = state.mean + delta_pre / _column(count.clamp(min=1.0))
    delta_post = sample - mean
    if dense:
        m2 = state.m2 + delta_pre.unsqueeze(-1) * delta_post.unsqueeze(-2)
    else:
        m2 = state.m2 + delta_pre * delta_post
    if mask is not None:
        # rows left out keep their estimate
        keep = mask.unsqueeze(-1)
        mean = torch.where(keep, mean, state.mean)
        m2 = torch.where(keep.unsqueeze(-1) if dense else keep, m2, state.m2)
    return WelfordState(mean, m2, count)


def _column(x):
    return x.unsqueeze(-1) if isinstance(x, torch.Tensor) and x.dim() > 0 else x


def welford_final(state, regularize=True):
    """Return the (co)variance estimate.

    With per-row counts (from masked updates) every row must have seen two samples.

    :param bool regularize: shrink towards ``1e-3`` times the identity as Stan does, with
        weight ``5 / (n + 5)``; this keeps short windows from producing a degenerate metric.
    :returns: the variance ``(..., D)`` or covariance ``(..., D, D)``.
    :raises ValueError: with fewer than two samples.
    """
    n = state.count
    dense = state.m2.dim() == state.mean.dim() + 1
    if isinstance(n, torch.Tensor):
        if bool((n < 2).any()):
            raise ValueError(f"Welford estimate needs at least 2 samples, got {n.tolist()}")
        n = _column(n)
        if dense:
            n = _column(n)
    elif n < 2:
        raise ValueError(f"Welford estimate needs at least 2 samples, got {n}")
    cov = state.m2 / (n - 1)
    if regularize:
        cov = cov * (n / (n + 5.0))
        shrink = 1e-3 * (5.0 / (n + 5.0))
        if dense:
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            cov = cov + shrink * eye
        else:
            cov = cov + shrink
    return cov


class WelfordCovariance:
    """Stateful wrapper over the Welford functions with Pyro's interface.

    :param bool diagonal: estimate only the diagonal.
    """

    def __init__(self, diagonal=True):
        self.diagonal = diagonal
        self.reset()

    def reset(self):
        self._state = None

    def update(self, sample):
        if self._state is None:
            self._state = welford_init(sample, dense=not self.diagonal)
        self._state = welford_update(self._state, sample)

    @property
    def n_samples(self):
        return 0 if self._state is None else self._state.count

    def get_covariance(self, regularize=True):
        if self._state is None:
            raise ValueError("WelfordCovariance has seen no samples")
        return welford_final(self._state, regularize=regularize)
