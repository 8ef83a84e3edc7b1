"""``RenyiELBO``: variational Rényi bounds, which interpolate between the
ELBO (``alpha -> 1``) and the importance-weighted bound (``alpha = 0``).

With importance weights ``w_i = p(x, z_i) / q(z_i)`` of ``K`` particles the
objective is ``1 / (1 - alpha) * log mean_i w_i^(1 - alpha)``. Its gradient is
a self-normalised average of per-particle gradients of ``log w_i``, weighted by
``w_i^(1 - alpha)``; non-reparameterised guide sites contribute the score-function
term ``alpha / (1 - alpha) * log q(z_i)`` with the same weights.

References:

1. Li, Turner. *Rényi Divergence Variational Inference* (2016).
2. Burda, Grosse, Salakhutdinov. *Importance Weighted Autoencoders* (2015).
"""

import math

import torch

from probpl.distributions.util import is_identically_zero
from probpl.infer.elbo import ELBO
from probpl.infer.trace_elbo import (
    _to_float,
    check_finite,
    checked_importance_trace,
    is_latent,
)


def particle_sum(log_prob, vectorized, max_plate_nesting, num_particles):
    """Sum a site's log-density to one number per particle: shape ``(K,)`` when
    particles are vectorised along dim ``-max_plate_nesting - 1``, else ``()``."""
    if not vectorized:
        return log_prob.sum()
    if log_prob.dim() <= max_plate_nesting:
        return log_prob.sum().expand(num_particles)
    lp = log_prob.reshape(log_prob.shape[: log_prob.dim() - max_plate_nesting] + (-1,)).sum(-1)
    return lp.reshape(-1).expand(num_particles) if lp.numel() == 1 else lp.reshape(-1)


class RenyiELBO(ELBO):
    """The variational Rényi bound of order ``alpha``.

    :param float alpha: the order, not 1 (use :class:`Trace_ELBO` there); ``0``
        gives the importance-weighted (IWAE) bound.
    :param int num_particles: particles per estimate (at least 2 to differ from
        the ELBO).

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.renyi_elbo import RenyiELBO
        >>> def model():
        ...     probpl.sample("z", dist.Normal(0., 1.))
        >>> def guide():
        ...     probpl.sample("z", dist.Normal(0., 1.))
        >>> RenyiELBO(alpha=0., num_particles=4).loss(model, guide)
        0.0
    """

    def __init__(self, alpha=0.0, num_particles=2, max_plate_nesting=float("inf"),
                 max_iarange_nesting=None, vectorize_particles=False,
                 strict_enumeration_warning=True):
        if alpha == 1:
            raise ValueError("RenyiELBO: alpha = 1 is the ordinary ELBO; use Trace_ELBO")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         max_iarange_nesting=max_iarange_nesting,
                         vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning)
        self.alpha = alpha

    def _get_trace(self, model, guide, args, kwargs):
        return checked_importance_trace(
            "flat", self.max_plate_nesting, model, guide, args, kwargs
        )

    def _particle_terms(self, model_trace, guide_trace):
        """Per-particle ``(log w, surrogate)`` of one trace pair."""
        vec = self.vectorize_particles and self.num_particles > 1
        n, k = self.max_plate_nesting, self.num_particles
        log_w = 0.0
        surrogate = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample" and not site["infer"].get("_subsample"):
                lp = particle_sum(site["log_prob"], vec, n, k)
                log_w = log_w + lp.detach()
                surrogate = surrogate + lp
        for site in guide_trace.nodes.values():
            if not is_latent(site):
                continue
            _, score_function, entropy_term = site["score_parts"]
            log_w = log_w - particle_sum(site["log_prob"], vec, n, k).detach()
            if not is_identically_zero(entropy_term):
                surrogate = surrogate - particle_sum(entropy_term, vec, n, k)
            if not is_identically_zero(score_function):
                coef = self.alpha / (1.0 - self.alpha)
                surrogate = surrogate + coef * particle_sum(score_function, vec, n, k)
        return log_w, surrogate

    def _weights(self, model, guide, args, kwargs):
        log_ws, surrogates, last = [], [], None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            log_w, surrogate = self._particle_terms(model_trace, guide_trace)
            log_ws.append(torch.as_tensor(log_w).reshape(-1))
            surrogates.append(torch.as_tensor(surrogate).reshape(-1))
            last = (model_trace, guide_trace)
        return torch.cat(log_ws), torch.cat(surrogates), last

    def _objective(self, model, guide, args, kwargs):
        log_w, surrogate, last = self._weights(model, guide, args, kwargs)
        scaled = (1.0 - self.alpha) * log_w
        log_mean = torch.logsumexp(scaled, 0) - math.log(scaled.numel())
        elbo = log_mean / (1.0 - self.alpha)
        weights = (scaled - log_mean).exp().detach()
        surrogate_elbo = (weights * surrogate).sum() / scaled.numel()
        return elbo, surrogate_elbo, last

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad(), self._validation_scope(model, guide, args, kwargs):
            elbo, _, last = self._objective(model, guide, args, kwargs)
        return check_finite(0.0 - _to_float(elbo), last)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        with self._validation_scope(model, guide, args, kwargs):
            elbo, surrogate, _ = self._objective(model, guide, args, kwargs)
        return -elbo.detach() - (surrogate - surrogate.detach())

    def loss_and_grads(self, model, guide, *args, **kwargs):
        with self._validation_scope(model, guide, args, kwargs):
            elbo, surrogate, last = self._objective(model, guide, args, kwargs)
        loss = check_finite(0.0 - _to_float(elbo), last)
        if surrogate.requires_grad:
            (-surrogate).backward(retain_graph=self.retain_graph)
        return loss
