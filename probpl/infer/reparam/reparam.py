"""The reparameterizer protocol and the unwrapping shared by reparameterizers.

A reparameterizer's ``apply(msg)`` receives ``{"name", "fn", "value",
"is_observed"}`` for one sample site, may draw auxiliary sample sites itself,
and returns ``{"fn", "value", "is_observed"}`` to replace the site: usually a
masked ``Delta`` at a value computed from the auxiliary sites, marked observed
so that the site adds no density and needs no guide.
"""

import torch

from probpl.distributions.delta import Delta
from probpl.distributions.torch_distribution import ExpandedDistribution, TorchDistributionMixin


class Reparam:
    """Base class of reparameterizers."""

    def apply(self, msg):
        raise NotImplementedError

    def _check_latent(self, msg):
        if msg["is_observed"]:
            raise NotImplementedError(
                f"{type(self).__name__}: site '{msg['name']}' is observed; this "
                "reparameterizer handles latent sites only"
            )


def unwrap(fn):
    """``(base, batch_shape, event_shape)``: ``fn`` without its ``Independent`` and
    ``expand`` wrappers, and the shapes a replacement must restore."""
    batch_shape, event_shape = fn.batch_shape, fn.event_shape
    while isinstance(fn, (torch.distributions.Independent, ExpandedDistribution)):
        fn = fn.base_dist
    return fn, batch_shape, event_shape


def rewrap(fn, batch_shape, event_shape):
    """Expand a replacement base ``fn`` and reinterpret dims so that it has the
    given ``batch_shape`` and ``event_shape``."""
    if not isinstance(fn, TorchDistributionMixin):
        # A plain torch distribution (e.g. the base of LogNormal) cannot be sampled
        # through a sample statement; the wrapper adds what is missing.
        fn = ExpandedDistribution(fn, fn.batch_shape)
    base_event = len(fn.event_shape)
    full = tuple(batch_shape) + tuple(event_shape)
    target = full[: len(full) - base_event]
    if tuple(fn.batch_shape) != target:
        fn = fn.expand(target)
    extra = len(event_shape) - base_event
    return fn.to_event(extra) if extra else fn


def deterministic_site(value, event_dim):
    """The replacement site: ``value``, contributing no density."""
    return {
        "fn": Delta(value, event_dim=event_dim).mask(False),
        "value": value,
        "is_observed": True,
    }
