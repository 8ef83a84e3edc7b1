"""Small helpers shared by the autoguides: attribute paths for dotted site names,
repeating initial values to a plate's full size, and the checks that turn a
model the guides cannot handle into an error naming the site."""

import math

import torch

from probpl.distributions import biject_to
from probpl.params import _drop_identity_parts


def product(shape):
    """The number of elements of a tensor of ``shape``."""
    return math.prod(shape)


def deep_setattr(obj, key, value):
    """``setattr`` along a dotted path, creating empty PyroModules on the way, so a
    site ``"a.b"`` becomes attribute ``b`` of a child module ``a``."""
    from probpl.nn.module import PyroModule

    *path, last = key.split(".")
    for part in path:
        child = getattr(obj, part, None) if part in obj._modules else None
        if child is None:
            child = PyroModule()
            setattr(obj, part, child)
        obj = child
    setattr(obj, last, value)


def deep_owner(obj, key):
    """``(module, attribute)`` holding the dotted path ``key`` below ``obj``."""
    *path, last = key.split(".")
    for part in path:
        obj = obj._modules[part]
    return obj, last


def deep_getattr(obj, key):
    """``getattr`` along a dotted path."""
    owner, last = deep_owner(obj, key)
    return getattr(owner, last)


def periodic_repeat(tensor, size, dim):
    """Repeat ``tensor`` periodically along ``dim`` until it has length ``size``."""
    dim = dim % tensor.dim()
    reps = [1] * tensor.dim()
    reps[dim] = -(-size // tensor.size(dim))
    return tensor.repeat(*reps).narrow(dim, 0, size)


def site_transform(site):
    """The bijection from unconstrained space onto the support of a latent site,
    with an error naming the site when there is none."""
    fn = site["fn"]
    support = fn.support
    if getattr(support, "is_discrete", False):
        name = site["name"]
        raise ValueError(
            f"sample site '{name}' is discrete ({type(fn).__name__}, support {support}); "
            "a continuous autoguide cannot represent it. Enumerate it with "
            "infer={'enumerate': 'parallel'} and TraceEnum_ELBO, or hide it from the guide: "
            f"AutoNormal(poutine.block(model, hide=['{name}']))"
        )
    try:
        return _drop_identity_parts(biject_to(support))
    except NotImplementedError:
        raise ValueError(
            f"sample site '{site['name']}': no bijection onto its support {support} "
            f"({type(fn).__name__}); reparameterize it or hide it from the guide"
        ) from None


def is_identity(transform):
    """Whether ``transform`` is the identity (a real-valued site)."""
    t = transform
    while isinstance(t, torch.distributions.transforms.IndependentTransform):
        t = t.base_transform
    return isinstance(t, torch.distributions.transforms.ComposeTransform) and not t.parts


def unconstrained_event_dim(site, transform):
    """Event dims of the unconstrained value of ``site`` (a transform may change the
    rank, e.g. a vector onto a correlation matrix)."""
    return site["fn"].event_dim + transform.domain.event_dim - transform.codomain.event_dim
