"""KL divergences: torch's registry, extended to probpl's wrappers.

``kl_divergence`` and ``register_kl`` are torch's, so every pair torch knows
(Normal, MultivariateNormal, Beta, Gamma, Dirichlet, ...) works unchanged.
Registrations added here cover :class:`Delta`, :class:`Independent`,
:class:`ExpandedDistribution` and :class:`MaskedDistribution`; they are chosen
so that no pair matches two registrations equally well (which torch would
resolve arbitrarily, with a warning).
"""

import torch
from torch.distributions import Distribution, kl_divergence, register_kl

from .delta import Delta
from .torch import MultivariateNormal
from .torch_distribution import ExpandedDistribution, Independent, MaskedDistribution
from .util import broadcast_shape, scale_and_mask, sum_rightmost

__all__ = ["kl_divergence", "register_kl"]


@register_kl(Delta, Distribution)
def _kl_delta(p, q):
    return -q.log_prob(p.v)


@register_kl(Independent, Independent)
def _kl_independent_independent(p, q):
    shared = min(p.reinterpreted_batch_ndims, q.reinterpreted_batch_ndims)
    p_extra = p.reinterpreted_batch_ndims - shared
    q_extra = q.reinterpreted_batch_ndims - shared
    p_inner = Independent(p.base_dist, p_extra) if p_extra else p.base_dist
    q_inner = Independent(q.base_dist, q_extra) if q_extra else q.base_dist
    return sum_rightmost(kl_divergence(p_inner, q_inner), shared)


@register_kl(Independent, MultivariateNormal)
def _kl_independent_mvn(p, q):
    base = p.base_dist
    if isinstance(base, torch.distributions.Normal) and p.reinterpreted_batch_ndims == 1:
        p_mvn = MultivariateNormal(base.loc, scale_tril=base.scale.diag_embed())
        return kl_divergence(p_mvn, q)
    raise NotImplementedError(
        f"kl_divergence(Independent({type(base).__name__}, "
        f"{p.reinterpreted_batch_ndims}), MultivariateNormal) is not implemented"
    )


@register_kl(ExpandedDistribution, ExpandedDistribution)
def _kl_expanded_expanded(p, q):
    kl = kl_divergence(p.base_dist, q.base_dist)
    return kl.expand(broadcast_shape(p.batch_shape, q.batch_shape))


@register_kl(MaskedDistribution, MaskedDistribution)
def _kl_masked_masked(p, q):
    if p._mask is False or q._mask is False:
        shape = broadcast_shape(p.batch_shape, q.batch_shape)
        like = _some_float_tensor(p.base_dist, q.base_dist)
        return like.new_zeros(()).expand(shape)
    if p._mask is True:
        mask = q._mask
    elif q._mask is True:
        mask = p._mask
    else:
        mask = p._mask & q._mask
    kl = kl_divergence(p.base_dist, q.base_dist)
    return scale_and_mask(kl, mask=mask)


def _some_float_tensor(*dists):
    # The zero KL of a fully masked pair should share the parameters' dtype and device.
    for d in dists:
        for value in vars(d).values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value
    return torch.zeros(())
