"""``TraceMeanField_ELBO``: Trace_ELBO with analytic KL divergences.

When the guide is mean-field (each latent's guide factor does not depend on
other latents' values in ways the KL would miss) and the KL between a guide
site and its prior is registered with :func:`probpl.distributions.kl_divergence`,
the Monte Carlo estimate ``log q(z) - log p(z)`` of that site is replaced by its
exact expectation, which removes that site's share of the gradient noise.
Sites without a registered KL fall back to the sampled estimate.
"""

import torch

from probpl.distributions.kl import kl_divergence
from probpl.distributions.util import scale_and_mask
from probpl.infer.trace_elbo import Trace_ELBO, is_latent


def _check_reparameterized(name, site):
    if not getattr(site["fn"], "has_rsample", False):
        raise NotImplementedError(
            f"TraceMeanField_ELBO needs reparameterised guide sites, but guide site '{name}' "
            f"({type(site['fn']).__name__}) has no rsample; use Trace_ELBO or TraceGraph_ELBO"
        )


class TraceMeanField_ELBO(Trace_ELBO):
    """An ELBO that uses ``KL(q(z) || p(z))`` in closed form where it is known.

    Needs every guide latent to be reparameterised, and the guide to factorise
    so that the analytic KL is the expectation being replaced.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
        >>> def model():
        ...     probpl.sample("z", dist.Normal(0., 1.))
        >>> def guide():
        ...     probpl.sample("z", dist.Normal(1., 1.))
        >>> TraceMeanField_ELBO().loss(model, guide)  # KL(N(1,1) || N(0,1)) = 0.5
        0.5
    """

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        for name, site in guide_trace.nodes.items():
            if is_latent(site):
                _check_reparameterized(name, site)
        return model_trace, guide_trace

    def _particle(self, model_trace, guide_trace):
        elbo = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample" or model_site["infer"].get("_subsample"):
                continue
            guide_site = guide_trace.nodes.get(name)
            if model_site["is_observed"] or guide_site is None:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
            except NotImplementedError:
                entropy_term = guide_site["score_parts"].entropy_term
                elbo = elbo + model_site["log_prob_sum"] - entropy_term.sum()
                continue
            kl = scale_and_mask(kl, guide_site["scale"], guide_site["mask"])
            if isinstance(kl, torch.Tensor):
                shape = torch.broadcast_shapes(kl.shape, guide_site["fn"].batch_shape)
                elbo = elbo - kl.expand(shape).sum()
            else:
                elbo = elbo - kl * guide_site["fn"].batch_shape.numel()
        # Every guide site is reparameterised: the estimate is its own surrogate.
        return elbo, elbo
