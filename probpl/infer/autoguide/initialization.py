"""Initialisation strategies: callables ``site -> value`` that pick a starting value for a
latent sample site, shared by MCMC and the autoguides.

Each strategy takes a sample message (``site["fn"]`` is its distribution) and returns a
value in the support of the distribution.  Called with no site, a strategy with options
returns itself with those options bound, as in Pyro: ``init_to_median(num_samples=50)``.
:class:`InitMessenger` runs a model with every latent site set by a strategy.
"""

import functools

import torch

from probpl.distributions import biject_to
from probpl.poutine.messenger import Messenger


def _is_discrete(fn):
    support = getattr(fn, "support", None)
    return bool(getattr(support, "is_discrete", False))


def _draw(site, sample_shape=()):
    with torch.no_grad():
        return site["fn"].sample(sample_shape).detach()


def init_to_feasible(site=None):
    """The point that the bijection onto the support maps zero to (e.g. 1 for a positive
    site, the centre of the simplex for a Dirichlet)."""
    if site is None:
        return init_to_feasible
    value = _draw(site)
    if _is_discrete(site["fn"]):
        return value
    t = biject_to(site["fn"].support)
    return t(torch.zeros_like(t.inv(value)))


def init_to_sample(site=None):
    """A draw from the site's (prior) distribution."""
    if site is None:
        return init_to_sample
    return _draw(site)


def init_to_median(site=None, num_samples=15, *, fallback=init_to_feasible):
    """The element-wise median of ``num_samples`` draws from the prior.

    :param int num_samples: number of prior draws.
    :param callable fallback: used when the prior cannot be sampled.
    """
    if site is None:
        return functools.partial(init_to_median, num_samples=num_samples, fallback=fallback)
    if _is_discrete(site["fn"]):
        return _draw(site)
    try:
        draws = _draw(site, (num_samples,))
        value = draws.median(0).values
        # an element-wise median can leave a joint support such as the simplex
        if not bool(site["fn"].support.check(value).all()):
            return fallback(site)
        return value
    except (NotImplementedError, RuntimeError, ValueError):
        return fallback(site)


def init_to_mean(site=None, *, fallback=init_to_median):
    """The prior mean, falling back to the median when the mean is undefined."""
    if site is None:
        return functools.partial(init_to_mean, fallback=fallback)
    try:
        value = site["fn"].mean.detach()
        prototype = _draw(site)
        if value.shape != prototype.shape:
            value = value.expand(prototype.shape)
        if not torch.isfinite(value).all() or _is_discrete(site["fn"]):
            return fallback(site)
        return value.clone()
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return fallback(site)


def init_to_uniform(site=None, radius=2.0):
    """A point drawn uniformly from ``(-radius, radius)`` in unconstrained space, as Stan
    does.

    :param float radius: half-width of the box in unconstrained coordinates.
    """
    if site is None:
        return functools.partial(init_to_uniform, radius=radius)
    value = _draw(site)
    if _is_discrete(site["fn"]):
        return value
    t = biject_to(site["fn"].support)
    u = t.inv(value)
    return t((torch.rand_like(u) * 2.0 - 1.0) * radius)


def init_to_value(site=None, values=None, *, fallback=init_to_uniform):
    """The given value where one is given, else ``fallback``.

    :param dict values: site name to a value in the support.
    :param callable fallback: strategy for the other sites (``None`` makes a missing
        value an error).
    """
    values = {} if values is None else values
    if site is None:
        return functools.partial(init_to_value, values=values, fallback=fallback)
    if site["name"] in values:
        return values[site["name"]]
    if fallback is None:
        raise ValueError(f"init_to_value: no value given for sample site '{site['name']}'")
    return fallback(site)


def init_to_generated(site=None, generate=lambda: init_to_uniform):
    """Call ``generate()`` once per model run for a fresh strategy (e.g. a random choice of
    values per chain)."""
    if site is None:
        return functools.partial(init_to_generated, generate=generate)
    return generate()(site)


class InitMessenger(Messenger):
    """Give every latent sample site the value chosen by ``init_fn``.

    :param callable init_fn: an initialisation strategy ``site -> value``.
    """

    def __init__(self, init_fn):
        super().__init__()
        self.init_fn = init_fn

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or msg["done"]:
            return
        if msg["infer"].get("_subsample"):  # a plate's minibatch indices, not a latent
            return
        with torch.no_grad():
            value = self.init_fn(msg)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        expected = _draw_shape(msg)
        if expected is not None and value.shape != expected:
            raise ValueError(
                f"init strategy gave sample site '{msg['name']}' a value of shape "
                f"{tuple(value.shape)}, expected {tuple(expected)}"
            )
        msg["value"] = value
        msg["done"] = True


def _draw_shape(msg):
    fn = msg["fn"]
    if not hasattr(fn, "batch_shape"):
        return None
    return fn.batch_shape + fn.event_shape


__all__ = [
    "InitMessenger",
    "init_to_feasible",
    "init_to_generated",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]
