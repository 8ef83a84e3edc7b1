"""The effect-handler stack and the message every effect travels in.

A statement such as ``probpl.sample`` builds a :class:`Message` and hands it to
:func:`apply_stack`. Handlers on the stack see it from the innermost outwards
(any of them may set ``stop`` to hide it from the rest), then the default
behaviour fills in a value if nobody has, then handlers post-process it from
the outermost inwards. This module knows nothing about distributions or
inference; everything else is built on these few functions.
"""

import functools
from collections import namedtuple
from typing import Any, Callable, Optional, TypedDict

# Handlers currently active, outermost first.
_PYRO_STACK: list = []


class Message(TypedDict, total=False):
    type: str  # "sample", "param", "subsample", "plate", ... selects the _pyro_<type> hooks
    name: Optional[str]  # site name, unique within one trace for sample sites
    fn: Callable  # distribution (sample) or callable producing the value
    is_observed: bool  # value was given by the user or a condition handler
    args: tuple  # positional arguments for fn
    kwargs: dict  # keyword arguments for fn
    value: Any  # the site's value, None until someone provides it
    infer: dict  # inference hints; handler-private data under "_"-prefixed keys
    scale: Any  # multiplier on the log-density (plates with subsampling, scale handler)
    mask: Any  # bool tensor or bool; False entries contribute no log-density
    cond_indep_stack: tuple  # CondIndepStackFrame of enclosing plates, outermost first
    done: bool  # value is final; the default behaviour must not run
    stop: bool  # handlers further out do not see this message
    continuation: Optional[Callable]  # called with the message after post-processing


class CondIndepStackFrame(namedtuple("CondIndepStackFrame", "name dim size counter full_size")):
    """One enclosing plate as seen by a site: its name, tensor dim (None when
    sequential), subsample size, iteration counter and full size."""

    __slots__ = ()

    @property
    def vectorized(self):
        return self.dim is not None


def new_message(**fields) -> Message:
    """A message with every field at its default, overridden by ``fields``."""
    msg = {
        "type": "sample",
        "name": None,
        "fn": None,
        "is_observed": False,
        "args": (),
        "kwargs": {},
        "value": None,
        "infer": {},
        "scale": 1.0,
        "mask": None,
        "cond_indep_stack": (),
        "done": False,
        "stop": False,
        "continuation": None,
    }
    msg.update(fields)
    return msg


def am_i_wrapped() -> bool:
    """Whether any handler is active."""
    return bool(_PYRO_STACK)


def default_process_message(msg: Message) -> None:
    """Compute the value by calling ``fn`` unless it is already known."""
    if msg["done"] or msg["is_observed"] or msg["value"] is not None:
        msg["done"] = True
        return
    msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"])
    msg["done"] = True


def apply_stack(msg: Message) -> Message:
    """Send ``msg`` through the active handlers and return it with its value set."""
    stack = _PYRO_STACK
    seen = 0
    for frame in reversed(stack):
        seen += 1
        frame._process_message(msg)
        if msg["stop"]:
            break
    default_process_message(msg)
    for frame in stack[len(stack) - seen:]:
        frame._postprocess_message(msg)
    cont = msg["continuation"]
    if cont is not None:
        cont(msg)
    return msg


def effectful(fn: Optional[Callable] = None, type: Optional[str] = None):
    """Turn ``fn`` into an effectful operation: when handlers are active, a call
    becomes a message of the given ``type`` whose default value is ``fn(*args)``.

    The first positional argument of the call is the site name.
    """
    if fn is None:
        return functools.partial(effectful, type=type)

    @functools.wraps(fn)
    def _fn(*args, name=None, infer=None, obs=None, **kwargs):
        if not _PYRO_STACK:
            return fn(*args, **kwargs)
        msg = new_message(
            type=type,
            name=name if name is not None else (args[0] if args else None),
            fn=fn,
            is_observed=obs is not None,
            args=args,
            kwargs=kwargs,
            value=obs,
            infer={} if infer is None else dict(infer),
        )
        return apply_stack(msg)["value"]

    return _fn


def get_plates() -> tuple:
    """The frames of all active plates, outermost first."""
    msg = new_message(type="plate", name="_get_plates", fn=lambda: None, value=())
    for frame in reversed(_PYRO_STACK):
        frame._process_message(msg)
    return msg["cond_indep_stack"]
