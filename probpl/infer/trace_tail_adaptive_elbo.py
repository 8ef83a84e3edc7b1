"""``TraceTailAdaptive_ELBO``: the tail-adaptive f-divergence objective.

Particles are weighted by a power of their rank among the importance weights
``w_i = p(x, z_i) / q(z_i)``: ``gamma_i = s_i^beta`` where ``s_i`` is the number
of particles whose weight is at least ``w_i`` (1 for the largest). With
``beta < 0`` the heavy tail of the weights gets the emphasis, giving
mass-covering fits, while the rank transform keeps the weights bounded.

The gradient is the reparameterised form of the f-divergence gradient,
``-sum_i gamma_i d/dphi log w(z_i) / sum_i gamma_i`` with ``z_i = g_phi(eps_i)``,
where ``log w`` is differentiated through the draw ``z_i`` only: the guide's
parameters inside ``log q`` are held fixed. (Differentiating them too would add
the score term ``sum_i gamma_i d/dphi log q_phi(z_i)`` at fixed ``z_i``, which
averages to zero only under equal weights; with rank weights it moves the fixed
point away from the exact posterior.) When the guide family contains the
posterior, ``log w`` is constant there and every particle's gradient is zero.
The fixed-parameter ``log q`` comes from running the guide a second time with
its draws replayed and detached, so a guide should give the same densities on
both runs (no dropout or other randomness outside its sample sites).
Only the gradient is meaningful; :meth:`loss` and the value returned by
:meth:`loss_and_grads` are the ordinary negative ELBO estimate.

References:

1. Wang, Liu, Liu. *Variational Inference with Tail-adaptive f-Divergence* (2018).
"""

import torch

from probpl.infer.renyi_elbo import particle_sum
from probpl.infer.trace_elbo import Trace_ELBO, _to_float, check_finite, is_latent
from probpl.poutine.handlers import block, replay, trace


class TraceTailAdaptive_ELBO(Trace_ELBO):
    """The tail-adaptive objective; needs ``vectorize_particles=True``, more than
    one particle, a reparameterised guide and ``tail_adaptive_beta < 0``.

    Example::

        >>> from probpl.infer.trace_tail_adaptive_elbo import TraceTailAdaptive_ELBO
        >>> elbo = TraceTailAdaptive_ELBO(num_particles=8, vectorize_particles=True)
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("tail_adaptive_beta", -1.0)
        super().__init__(*args, **kwargs)
        if not self.vectorize_particles or self.num_particles < 2:
            raise ValueError(
                "TraceTailAdaptive_ELBO needs vectorize_particles=True and num_particles > 1, got "
                f"vectorize_particles={self.vectorize_particles}, "
                f"num_particles={self.num_particles}"
            )
        if self.tail_adaptive_beta >= 0:
            raise ValueError(
                f"TraceTailAdaptive_ELBO needs tail_adaptive_beta < 0, got "
                f"{self.tail_adaptive_beta}"
            )

    def _log_weights(self, model_trace, guide_trace):
        """Per-particle ``log w``."""
        n, k = self.max_plate_nesting, self.num_particles
        log_w = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample" and not site["infer"].get("_subsample"):
                log_w = log_w + particle_sum(site["log_prob"], True, n, k)
        for name, site in guide_trace.nodes.items():
            if not is_latent(site):
                continue
            if not getattr(site["fn"], "has_rsample", False):
                raise NotImplementedError(
                    f"TraceTailAdaptive_ELBO needs reparameterised guide sites; guide site "
                    f"'{name}' ({type(site['fn']).__name__}) has no rsample"
                )
            log_w = log_w - particle_sum(site["log_prob"], True, n, k)
        return log_w

    def _log_q_at_fixed_draws(self, guide, guide_trace, args, kwargs):
        """Per-particle ``log q`` with every guide draw held fixed (the guide run
        again, replaying detached values): its gradient is the direct dependence
        on the guide's parameters alone. A site whose distribution depends on an
        earlier draw (hierarchical guides, the ``Delta`` sites of
        :class:`~probpl.infer.autoguide.AutoContinuous` guides) sees that draw
        fixed too, so the path through it stays in the gradient."""
        fixed = guide_trace.copy()
        fixed.detach_()
        with block():
            tr = trace(replay(self._vectorized_num_particles(guide), trace=fixed)).get_trace(
                *args, **kwargs
            )
        tr.compute_log_prob(lambda name, site: is_latent(site))
        n, k = self.max_plate_nesting, self.num_particles
        log_q = 0.0
        for site in tr.nodes.values():
            if is_latent(site):
                log_q = log_q + particle_sum(site["log_prob"], True, n, k)
        return log_q

    def _surrogate(self, model, guide, args, kwargs):
        with self._validation_scope(model, guide, args, kwargs):
            (model_trace, guide_trace), = self._get_traces(model, guide, args, kwargs)
            log_w = self._log_weights(model_trace, guide_trace)
            path_log_w = log_w
            if torch.is_grad_enabled():
                # Adding log q at fixed draws (valued zero) cancels the gradient
                # through the guide's parameters, leaving the path through the draws.
                fixed = self._log_q_at_fixed_draws(guide, guide_trace, args, kwargs)
                if isinstance(fixed, torch.Tensor) and fixed.requires_grad:
                    path_log_w = log_w + (fixed - fixed.detach())
        order = torch.argsort(log_w.detach(), descending=True)
        survival = torch.empty_like(log_w.detach())
        survival[order] = torch.arange(
            1, log_w.numel() + 1, dtype=log_w.dtype, device=log_w.device
        )
        gamma = survival.pow(self.tail_adaptive_beta)
        surrogate = -(gamma * path_log_w).sum() / gamma.sum()
        return log_w, surrogate, (model_trace, guide_trace)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The tail-adaptive surrogate loss (its value is not an ELBO)."""
        return self._surrogate(model, guide, args, kwargs)[1]

    def loss_and_grads(self, model, guide, *args, **kwargs):
        log_w, surrogate, last = self._surrogate(model, guide, args, kwargs)
        loss = check_finite(0.0 - _to_float(log_w.detach().mean()), last)
        if surrogate.requires_grad:
            surrogate.backward(retain_graph=self.retain_graph)
        return loss
