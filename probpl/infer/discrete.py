"""``infer_discrete``: draw enumerated discrete sites from their posterior.

The model runs once under enumeration; its log-densities go through the
forward pass of the plated contraction and a backward pass draws every
enumerated site given the observations and the values of the other latent
sites (forward-filter backward-sample).  At ``temperature=0`` the forward pass
maximises instead of summing and the backward pass takes argmaxes, giving the
joint MAP assignment (Viterbi decoding for an HMM).  The model then runs again
with those values, so its return value and any trace of it see the posterior
draw.

References

1. Murphy (2012), "Machine Learning: A Probabilistic Perspective", 17.4.5
   (forward filtering, backward sampling) and 17.4.4 (Viterbi).
"""

import functools

import torch

from probpl.infer.enum import compute_log_probs, trace_factors
from probpl.ops.contract import sample_tensor_tree
from probpl.poutine.enum_messenger import EnumMessenger
from probpl.poutine.handlers import block, trace
from probpl.poutine.messenger import Messenger


class _PosteriorMessenger(Messenger):
    """Fix enumerated sites to drawn values and replay other latent values."""

    def __init__(self, enum_trace, values):
        super().__init__()
        self.enum_trace = enum_trace
        self.values = values

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["infer"].get("_subsample"):
            return
        name = msg["name"]
        if name in self.values:
            msg["value"] = self.values[name]
            msg["done"] = True
            return
        site = self.enum_trace.nodes.get(name)
        if site is not None and site["type"] == "sample" and not site["infer"].get("_dim_to_id"):
            msg["value"] = site["value"]
            msg["done"] = True


def _site_value(site, sample, symbols):
    """Turn drawn support indices (a packed Factor over plates) into a site value."""
    dims = {}
    for f in site["cond_indep_stack"]:
        if f.dim is not None:
            dims[symbols(("plate", f.name))] = f.dim
    order = sorted(sample.dims, key=lambda s: dims[s])
    index = sample.tensor
    if order:
        index = index.permute([sample.dims.index(s) for s in order])
        depth = -dims[order[0]]
        shape = [1] * depth
        for s, n in zip(order, index.shape):
            shape[dims[s]] = n
        index = index.reshape(shape)
    support = site["value"]
    event_dim = len(site["fn"].event_shape)
    pos = site["infer"]["_enumerate_dim"] - event_dim
    support = support.movedim(pos, 0)
    event_shape = support.shape[support.dim() - event_dim:]
    batch = support.shape[1: support.dim() - event_dim]
    if all(n == 1 for n in batch):
        return support.reshape((support.shape[0],) + tuple(event_shape))[index]
    # Expanded support: gather along the value dim at every batch position.
    shape = torch.broadcast_shapes(batch, index.shape)
    full = (1,) + shape + tuple(event_shape)
    index = index.expand(shape).reshape((1,) + shape + (1,) * event_dim).expand(full)
    support = support.expand((support.shape[0],) + shape + tuple(event_shape))
    return support.gather(0, index).squeeze(0)


def _max_plate_nesting(fn, args, kwargs):
    with block():
        tr = trace(fn).get_trace(*args, **kwargs)
    return max(
        [-f.dim for s in tr.nodes.values() if s["type"] == "sample"
         for f in s["cond_indep_stack"] if f.dim is not None],
        default=0,
    )


def infer_discrete(fn=None, first_available_dim=None, temperature=1, *,
                   strict_enumeration_warning=True):
    """Condition a model's enumerated sites on a posterior draw.

    :param callable fn: a model whose discrete sites are marked
        ``infer={"enumerate": "parallel"}`` (see :func:`config_enumerate`);
        its other latent sites should be fixed, e.g. by a replayed guide.
    :param int first_available_dim: the rightmost dim free for enumeration,
        ``-1 - max_plate_nesting``; found by a trial run if omitted.
    :param int temperature: 1 draws from the posterior, 0 takes the joint
        MAP assignment.
    :returns: a function with ``fn``'s signature that runs ``fn`` with the
        enumerated sites set to the drawn values.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.enum import config_enumerate
        >>> @config_enumerate
        ... def model(x):
        ...     z = probpl.sample("z", dist.Bernoulli(0.5))
        ...     probpl.sample("x", dist.Normal(4.0 * z, 1.0), obs=x)
        ...     return z
        >>> infer_discrete(model, first_available_dim=-1, temperature=0)(torch.tensor(3.5))
        tensor(1.)
    """
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 or 1, got {temperature}")
    if first_available_dim is not None and first_available_dim >= 0:
        raise ValueError(
            f"infer_discrete: first_available_dim must be negative, got {first_available_dim}"
        )
    if fn is None:
        return functools.partial(
            infer_discrete, first_available_dim=first_available_dim, temperature=temperature,
            strict_enumeration_warning=strict_enumeration_warning,
        )

    @functools.wraps(fn)
    def posterior_fn(*args, **kwargs):
        first = first_available_dim
        if first is None:
            first = -1 - _max_plate_nesting(fn, args, kwargs)
        with block(), EnumMessenger(first_available_dim=first):
            enum_trace = trace(fn).get_trace(*args, **kwargs)
        compute_log_probs(enum_trace)
        parts = trace_factors(enum_trace)
        values = {}
        if parts["enum_sites"]:
            samples, _ = sample_tensor_tree(
                parts["tree"], parts["sum_dims"], parts["plate_sizes"], temperature
            )
            for name, sym in parts["enum_sites"].items():
                values[name] = _site_value(enum_trace.nodes[name], samples[sym], parts["symbols"])
        return _PosteriorMessenger(enum_trace, values)(fn)(*args, **kwargs)

    return posterior_fn
