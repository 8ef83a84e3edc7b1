"""``LocScaleReparam``: (partially) non-centred parameterisation of location-scale
families, the standard cure for funnel-shaped posteriors in hierarchical models.

A site ``x ~ F(loc, scale)`` becomes ``x_decentered ~ F(c * loc, scale ** c)``
and ``x = loc + scale ** (1 - c) * (x_decentered - c * loc)``, which has the same
distribution. ``c = 1`` is the original (centred) model, ``c = 0`` the fully
non-centred one; with ``centered=None`` each element's ``c`` is a learnable
parameter in ``[0, 1]`` named ``<site>_centered``.

References:

1. Gorinova, Moore, Hoffman. *Automatic Reparameterisation of Probabilistic
   Programs* (2019).
"""

import torch

from probpl.distributions import constraints
from probpl.infer.reparam.reparam import Reparam, deterministic_site, rewrap, unwrap
from probpl.primitives import param, sample


class LocScaleReparam(Reparam):
    """Decentre a location-scale site.

    :param centered: ``None`` (learn it), a number in ``[0, 1]`` or a tensor.
    :param shape_params: names of other parameters of the family to keep, e.g.
        ``("df",)`` for ``StudentT``.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl import poutine
        >>> from probpl.infer.reparam import LocScaleReparam
        >>> def model():
        ...     tau = probpl.sample("tau", dist.LogNormal(0., 1.))
        ...     return probpl.sample("theta", dist.Normal(0., tau))
        >>> model = poutine.reparam(model, config={"theta": LocScaleReparam(centered=0.)})
        >>> tr = poutine.trace(model).get_trace()
        >>> "theta_decentered" in tr.nodes
        True
    """

    def __init__(self, centered=None, shape_params=()):
        if isinstance(centered, (int, float)) and not 0 <= centered <= 1:
            raise ValueError(f"LocScaleReparam: centered must lie in [0, 1], got {centered}")
        if isinstance(shape_params, str):
            shape_params = (shape_params,)
        self.centered = centered
        self.shape_params = tuple(shape_params or ())

    def apply(self, msg):
        self._check_latent(msg)
        name, fn = msg["name"], msg["fn"]
        base, batch_shape, event_shape = unwrap(fn)
        if not (hasattr(base, "loc") and hasattr(base, "scale")):
            raise ValueError(
                f"LocScaleReparam: site '{name}' has a {type(base).__name__} distribution, which "
                "has no loc and scale"
            )
        loc, scale = base.loc, base.scale
        centered = self.centered
        if centered is None:
            shape = torch.broadcast_shapes(loc.shape, scale.shape)
            centered = param(
                f"{name}_centered",
                lambda: torch.full(shape, 0.5, dtype=loc.dtype, device=loc.device),
                constraint=constraints.unit_interval,
                event_dim=len(base.event_shape),
            )
        if isinstance(centered, (int, float)) and centered == 1:
            return {"fn": fn, "value": msg["value"], "is_observed": False}
        kwargs = {k: getattr(base, k) for k in self.shape_params}
        try:
            new = type(base)(loc=centered * loc, scale=scale ** centered, **kwargs)
        except TypeError as e:
            raise ValueError(
                f"LocScaleReparam: cannot rebuild the {type(base).__name__} of site '{name}' "
                f"from loc, scale and shape_params {self.shape_params}: {e}"
            ) from e
        new = rewrap(new, batch_shape, event_shape)
        x = sample(f"{name}_decentered", new)
        value = loc + scale ** (1 - centered) * (x - centered * loc)
        return deterministic_site(value, len(event_shape))
