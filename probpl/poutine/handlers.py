"""Functional forms of the handlers: ``handler(fn, ...)`` wraps a function,
``handler(...)`` with no function returns the handler for use in ``with``."""

from probpl.poutine.block_messenger import BlockMessenger
from probpl.poutine.broadcast_messenger import BroadcastMessenger
from probpl.poutine.condition_messenger import ConditionMessenger, UnconditionMessenger
from probpl.poutine.do_messenger import DoMessenger
from probpl.poutine.escape_messenger import EscapeMessenger
from probpl.poutine.infer_config_messenger import InferConfigMessenger
from probpl.poutine.lift_messenger import LiftMessenger
from probpl.poutine.markov_messenger import MarkovMessenger, markov
from probpl.poutine.reparam_messenger import ReparamMessenger
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.scale_messenger import MaskMessenger, ScaleMessenger
from probpl.poutine.seed_messenger import SeedMessenger
from probpl.poutine.substitute_messenger import SubstituteMessenger
from probpl.poutine.trace_messenger import TraceMessenger


def _wrap(msngr, fn):
    return msngr if fn is None else msngr(fn)


def trace(fn=None, graph_type="flat", param_only=False):
    """Record the sites of ``fn``; ``trace(fn).get_trace(*args)`` returns the Trace."""
    return _wrap(TraceMessenger(graph_type=graph_type, param_only=param_only), fn)


def replay(fn=None, trace=None, params=None):
    """Reuse the values of latent sites recorded in ``trace``."""
    return _wrap(ReplayMessenger(trace=trace, params=params), fn)


def block(fn=None, hide_fn=None, expose_fn=None, hide_all=True, expose_all=False, hide=None,
          expose=None, hide_types=None, expose_types=None):
    """Hide sites from the handlers outside (all of them by default)."""
    return _wrap(
        BlockMessenger(hide_fn, expose_fn, hide_all, expose_all, hide, expose, hide_types,
                       expose_types),
        fn,
    )


def condition(fn=None, data=None):
    """Observe the sites named in ``data`` at the given values."""
    return _wrap(ConditionMessenger(data=data), fn)


def uncondition(fn=None):
    """Sample observed sites instead of observing them."""
    return _wrap(UnconditionMessenger(), fn)


def do(fn=None, data=None):
    """Intervene: the sites named in ``data`` return the given values to the program."""
    return _wrap(DoMessenger(data=data), fn)


def substitute(fn=None, data=None, substitute_fn=None):
    """Fix latent sites and params at the given values."""
    return _wrap(SubstituteMessenger(data=data, substitute_fn=substitute_fn), fn)


def scale(fn=None, scale=1.0):
    """Multiply log-densities by ``scale``."""
    return _wrap(ScaleMessenger(scale=scale), fn)


def mask(fn=None, mask=None):
    """Keep log-density terms only where ``mask`` is true."""
    return _wrap(MaskMessenger(mask=mask), fn)


def seed(fn=None, rng_seed=None):
    """Run with a fixed seed, restoring the outer RNG state afterwards."""
    return _wrap(SeedMessenger(rng_seed=rng_seed), fn)


def lift(fn=None, prior=None):
    """Turn params into sample sites drawn from ``prior``."""
    return _wrap(LiftMessenger(prior=prior), fn)


def infer_config(fn=None, config_fn=None):
    """Set ``infer`` hints of sites from ``config_fn(site)``."""
    return _wrap(InferConfigMessenger(config_fn=config_fn), fn)


def escape(fn=None, escape_fn=None):
    """Leave the program with :class:`~probpl.poutine.util.NonlocalExit` at chosen sites."""
    return _wrap(EscapeMessenger(escape_fn=escape_fn), fn)


def broadcast(fn=None):
    """Expand distributions to fill their enclosing plates."""
    return _wrap(BroadcastMessenger(), fn)


def reparam(fn=None, config=None):
    """Reparameterize sample sites (see :mod:`probpl.infer.reparam`)."""
    return _wrap(ReparamMessenger(config=config), fn)


__all__ = [
    "block", "broadcast", "condition", "do", "escape", "infer_config", "lift", "markov",
    "mask", "replay", "reparam", "scale", "seed", "substitute", "trace", "uncondition",
    "MarkovMessenger",
]
