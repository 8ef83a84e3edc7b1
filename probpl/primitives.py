"""The statements users write in models: ``sample``, ``param``, ``plate`` and friends.

Outside any handler they simply run (``sample`` draws, ``param`` reads the
store); inside handlers each becomes a message on the stack (see
:mod:`probpl.poutine.runtime`), which is how inference sees a model.
"""

from contextlib import ExitStack, contextmanager

import torch

import probpl.util as util
from probpl.distributions.delta import Delta
from probpl.distributions.unit import Unit
from probpl.params import _PYRO_PARAM_STORE
from probpl.poutine.markov_messenger import markov
from probpl.poutine.plate_messenger import plate
from probpl.poutine.runtime import _PYRO_STACK, apply_stack, new_message
from probpl.poutine.scale_messenger import MaskMessenger

_MODULE_SEP = "$$$"


def get_param_store():
    """The global parameter store."""
    return _PYRO_PARAM_STORE


def clear_param_store():
    """Remove every parameter from the global store."""
    _PYRO_PARAM_STORE.clear()


def _param_fn(name, init_tensor=None, constraint=None, event_dim=None):
    # A module-level function (not the store's bound method), so that pickling a
    # trace's param site does not pickle the whole store.
    return _PYRO_PARAM_STORE.get_param(name, init_tensor, constraint, event_dim)


def param(name, init_tensor=None, constraint=None, event_dim=None):
    """A learnable parameter, created on first use and read from the store after.

    :param str name: unique name.
    :param init_tensor: initial (constrained) value, or a callable returning it.
    :param constraint: a constraint from :mod:`probpl.distributions.constraints`;
        the stored tensor is unconstrained and mapped through ``biject_to(constraint)``.
    :param int event_dim: rightmost dims that are not batch dims (for plates).
    :returns: the constrained value.
    """
    if not _PYRO_STACK:
        return _param_fn(name, init_tensor, constraint, event_dim)
    # The fields of runtime.new_message, written out: this runs once per site.
    msg = {
        "type": "param",
        "name": name,
        "fn": _param_fn,
        "is_observed": False,
        "args": (name, init_tensor, constraint),
        "kwargs": {"event_dim": event_dim},
        "value": None,
        "infer": {},
        "scale": 1.0,
        "mask": None,
        "cond_indep_stack": (),
        "done": False,
        "stop": False,
        "continuation": None,
    }
    apply_stack(msg)
    return msg["value"]


def _check_distribution(name, fn):
    if not isinstance(fn, torch.distributions.Distribution):
        raise TypeError(
            f"sample site '{name}': expected a distribution, got {type(fn).__name__}; "
            "pass e.g. dist.Normal(loc, scale), not a tensor or a class"
        )


def _broadcastable(shape1, shape2):
    # Plain Python: torch.broadcast_shapes pulls in heavy imports on first use.
    for a, b in zip(reversed(shape1), reversed(shape2)):
        if a != b and a != 1 and b != 1:
            return False
    return True


def _check_observation(msg):
    """Observed values must have the distribution's event shape and broadcast
    with its batch shape; say which site and which shapes when they do not."""
    fn, value = msg["fn"], msg["value"]
    if not isinstance(value, torch.Tensor):
        return
    shape = fn.batch_shape + fn.event_shape
    event_dim = len(fn.event_shape)
    ok = value.dim() >= event_dim and tuple(value.shape[value.dim() - event_dim:]) == tuple(
        fn.event_shape
    )
    if ok:
        ok = _broadcastable(value.shape, shape)
    if not ok:
        plates = ", ".join(
            f"'{f.name}' (dim {f.dim}, size {f.size})"
            for f in msg["cond_indep_stack"]
            if f.vectorized
        )
        where = f" in plates {plates}" if plates else ""
        raise ValueError(
            f"sample site '{msg['name']}'{where}: observed value of shape {tuple(value.shape)} "
            f"does not broadcast with the distribution's batch_shape {tuple(fn.batch_shape)} "
            f"and event_shape {tuple(fn.event_shape)}"
        )


def sample(name, fn, *args, obs=None, obs_mask=None, infer=None, **kwargs):
    """A random variable: drawn from ``fn``, or observed at ``obs``.

    :param str name: unique name of the site.
    :param fn: a distribution.
    :param obs: observed value, if any.
    :param obs_mask: bool tensor, true where ``obs`` is observed; the other
        entries are sampled (imputed) as a latent site ``<name>_unobserved``.
    :param dict infer: hints for inference (e.g. ``{"enumerate": "parallel"}``).
    :returns: the value.
    """
    if not _PYRO_STACK:
        if util._VALIDATION_ENABLED:
            _check_distribution(name, fn)
        if obs is not None:
            return obs
        return fn(*args, **kwargs)
    if obs_mask is not None:
        return _masked_observe(name, fn, obs, obs_mask, infer)
    if util._VALIDATION_ENABLED:
        _check_distribution(name, fn)
    # The fields of runtime.new_message, written out: this runs once per site.
    msg = {
        "type": "sample",
        "name": name,
        "fn": fn,
        "is_observed": obs is not None,
        "args": args,
        "kwargs": kwargs,
        "value": obs,
        "infer": {} if infer is None else dict(infer),
        "scale": 1.0,
        "mask": None,
        "cond_indep_stack": (),
        "done": False,
        "stop": False,
        "continuation": None,
    }
    apply_stack(msg)
    if msg["is_observed"] and util._VALIDATION_ENABLED:
        _check_observation(msg)
    return msg["value"]


def _masked_observe(name, fn, obs, obs_mask, infer):
    if obs is None:
        raise ValueError(f"sample site '{name}': obs_mask given without obs")
    if not isinstance(obs_mask, torch.Tensor) or obs_mask.dtype != torch.bool:
        raise ValueError(f"sample site '{name}': obs_mask must be a bool tensor")
    with MaskMessenger(obs_mask):
        observed = sample(f"{name}_observed", fn, obs=obs, infer=infer)
    with MaskMessenger(~obs_mask):
        unobserved = sample(f"{name}_unobserved", fn, infer=infer)
    event_dim = len(fn.event_shape)
    batch_mask = obs_mask.reshape(obs_mask.shape + (1,) * event_dim)
    return deterministic(name, torch.where(batch_mask, observed, unobserved), event_dim)


def deterministic(name, value, event_dim=None):
    """Record a value computed from other sites, so it appears in traces and samples."""
    event_dim = value.dim() if event_dim is None else event_dim
    return sample(
        name,
        Delta(value, event_dim=event_dim).mask(False),
        obs=value,
        infer={"_deterministic": True},
    )


def factor(name, log_factor, *, has_rsample=None):
    """Add ``log_factor`` to the model's log-density (an unnormalised term).

    :param has_rsample: in a guide, whether the factor is differentiable with
        respect to the sites it depends on (reparameterised) or not.
    """
    unit = Unit(log_factor, has_rsample=has_rsample)
    return sample(name, unit, obs=unit.sample(), infer={"_factor": True})


def subsample(data, event_dim):
    """Index ``data`` by the subsample indices of every enclosing subsampled plate.

    :param data: a tensor whose batch dims line up with the plates' dims.
    :param int event_dim: number of rightmost dims that are not plate dims.
    """
    if not _PYRO_STACK:
        return data
    msg = new_message(
        type="subsample", name="_subsample", fn=lambda d, event_dim: d, value=data,
        kwargs={"event_dim": event_dim}, is_observed=True,
    )
    return apply_stack(msg)["value"]


@contextmanager
def plate_stack(prefix, sizes, rightmost_dim=-1):
    """Nested plates named ``prefix_0, prefix_1, ...`` covering ``sizes`` (leftmost
    first), the last one at ``rightmost_dim``."""
    with ExitStack() as stack:
        for i, size in enumerate(sizes):
            stack.enter_context(
                plate(f"{prefix}_{i}", size, dim=rightmost_dim - len(sizes) + i + 1)
            )
        yield


def module(name, nn_module, update_module_params=False):
    """Register the parameters of a ``torch.nn.Module`` in the param store.

    :param str name: prefix for the parameter names (``name$$$param.path``).
    :param bool update_module_params: copy stored values back into the module
        (e.g. after loading a store).
    :returns: the module.
    """
    if not isinstance(nn_module, torch.nn.Module):
        raise TypeError(f"module '{name}': expected a torch.nn.Module, got {type(nn_module)}")
    for param_name, p in list(nn_module.named_parameters()):
        full_name = name + _MODULE_SEP + param_name
        stored = param(full_name, p)
        if stored is not p and update_module_params and isinstance(stored, torch.Tensor):
            _set_module_param(nn_module, param_name, stored)
    return nn_module


def _set_module_param(nn_module, path, value):
    *prefix, last = path.split(".")
    target = nn_module
    for part in prefix:
        target = getattr(target, part)
    if isinstance(value, torch.nn.Parameter):
        setattr(target, last, value)
    else:
        with torch.no_grad():
            getattr(target, last).copy_(value)


__all__ = [
    "clear_param_store", "deterministic", "factor", "get_param_store", "markov", "module",
    "param", "plate", "plate_stack", "sample", "subsample",
]
