"""``TransformReparam``: sample the base of a transformed distribution instead.

A site ``x ~ TransformedDistribution(base, [t1, t2, ...])`` becomes
``x_base ~ base`` with ``x = ... t2(t1(x_base))``: inference then works on the
base variable, whose geometry is usually simpler (e.g. a standard normal under
an affine or flow transform).
"""

import torch

from probpl.infer.reparam.reparam import Reparam, deterministic_site, rewrap, unwrap
from probpl.primitives import sample


class TransformReparam(Reparam):
    """Reparameterise a ``TransformedDistribution`` site by its base distribution.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl import poutine
        >>> from probpl.infer.reparam import TransformReparam
        >>> def model():
        ...     return probpl.sample("x", dist.LogNormal(0., 1.))
        >>> model = poutine.reparam(model, config={"x": TransformReparam()})
        >>> tr = poutine.trace(model).get_trace()
        >>> bool(torch.isclose(tr.nodes["x"]["value"], tr.nodes["x_base"]["value"].exp()))
        True
    """

    def apply(self, msg):
        self._check_latent(msg)
        name, fn = msg["name"], msg["fn"]
        base, batch_shape, event_shape = unwrap(fn)
        if not isinstance(base, torch.distributions.TransformedDistribution):
            raise ValueError(
                f"TransformReparam: site '{name}' has a {type(base).__name__} distribution, "
                "not a TransformedDistribution"
            )
        # Transforms are taken to preserve shape: the base draw has the site's shape.
        x = sample(f"{name}_base", rewrap(base.base_dist, batch_shape, event_shape))
        for t in base.transforms:
            x = t(x)
        return deterministic_site(x, len(event_shape))
