"""The effect-handler stack and the message every effect travels in.

A statement such as ``probpl.sample`` builds a :class:`Message` and hands it to
:func:`apply_stack`. Handlers on the stack see it from the innermost outwards
(any of them may set ``stop`` to hide it from the rest), then the default
behaviour fills in a value if nobody has, then handlers post-process it from
the outermost inwards. This module knows nothing about distributions or
inference; everything else is built on these few functions.

A model sends hundreds of messages through the same handlers, so the work of
finding who does what is done once: which method of a handler's class handles
a message type (``_pyro_<type>`` and ``_pyro_post_<type>``, or an overridden
``_process_message``/``_postprocess_message``) is cached per class, and the
handlers with something to do are listed once per message type and sequence
of handler classes on the stack.
Handlers are therefore looked up on their class; add them with
``Messenger.register`` (or by defining methods), not as instance attributes.
"""

import functools
import inspect
from collections import namedtuple
from operator import is_
from types import FunctionType
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


def new_message(type="sample", name=None, fn=None, is_observed=False, args=(), kwargs=None,
                value=None, infer=None, scale=1.0, mask=None, cond_indep_stack=(), done=False,
                stop=False, continuation=None, **extra) -> Message:
    """A message with every field at its default, overridden by the arguments."""
    msg = {
        "type": type,
        "name": name,
        "fn": fn,
        "is_observed": is_observed,
        "args": args,
        "kwargs": {} if kwargs is None else kwargs,
        "value": value,
        "infer": {} if infer is None else infer,
        "scale": scale,
        "mask": mask,
        "cond_indep_stack": cond_indep_stack,
        "done": done,
        "stop": stop,
        "continuation": continuation,
    }
    if extra:
        msg.update(extra)
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


# (handler class, message type) -> the function a frame of that class runs on
# the way out (_PROCESS) or back (_POSTPROCESS), or None when it has nothing to
# do: one dict lookup per frame instead of building and looking up a method name.
_PROCESS: dict = {}
_POSTPROCESS: dict = {}


def _lookup(table, cls, mtype, post):
    name = "_postprocess_message" if post else "_process_message"
    general = getattr(cls, name, None)
    if getattr(general, "_dispatches_by_type", False):
        # The base class's general method would only forward to _pyro_<type>.
        name = ("_pyro_post_" if post else "_pyro_") + mtype
        general = getattr(cls, name, None)
    if general is None or isinstance(inspect.getattr_static(cls, name, None), FunctionType):
        fn = general
    else:
        # A static method (as ``register`` makes), a class method, ...: let
        # attribute lookup on the instance bind it as usual.
        def fn(frame, msg, name=name):
            return getattr(frame, name)(msg)
    if len(table) > 4096:
        table.clear()
    table[cls, mtype] = fn
    return fn


def clear_dispatch_cache() -> None:
    """Forget the per-class handler lookup; called when handlers are
    (un)registered on a class."""
    _PROCESS.clear()
    _POSTPROCESS.clear()
    _PLANS.clear()
    _CLASS_PLANS.clear()


def _process_from(msg, stack, i):
    """Let ``stack[i - 1]``, ..., ``stack[0]`` process ``msg`` until one stops it;
    returns the index of the outermost handler that saw it."""
    while i:
        i -= 1
        frame = stack[i]
        cls, mtype = type(frame), msg["type"]
        try:
            fn = _PROCESS[cls, mtype]
        except KeyError:
            fn = _lookup(_PROCESS, cls, mtype, False)
        if fn is not None:
            fn(frame, msg)
        if msg["stop"]:
            break
    return i


def _postprocess_from(msg, stack, i):
    """Let ``stack[i]``, ``stack[i + 1]``, ... post-process ``msg``."""
    while i < len(stack):
        frame = stack[i]
        i += 1
        cls, mtype = type(frame), msg["type"]
        try:
            fn = _POSTPROCESS[cls, mtype]
        except KeyError:
            fn = _lookup(_POSTPROCESS, cls, mtype, True)
        if fn is not None:
            fn(frame, msg)


# (message type, handler classes of a stack, outermost first) -> (those
# classes, [(index, fn)] innermost first for processing, [(index, fn)]
# outermost first for post-processing), listing only the handlers with
# something to do for that type. A plan depends only on the classes, so the
# fresh handlers inference enters at every step reuse the plans of the last.
_CLASS_PLANS: dict = {}
# message type -> the plan of the stack it last went through (checked per message).
_PLANS: dict = {}


def _make_plan(stack, mtype):
    classes = tuple(map(type, stack))
    plan = _CLASS_PLANS.get((mtype, classes))
    if plan is None:
        procs, posts = [], []
        for i, cls in enumerate(classes):
            fn = _PROCESS[cls, mtype] if (cls, mtype) in _PROCESS \
                else _lookup(_PROCESS, cls, mtype, False)
            if fn is not None:
                procs.append((i, fn))
            fn = _POSTPROCESS[cls, mtype] if (cls, mtype) in _POSTPROCESS \
                else _lookup(_POSTPROCESS, cls, mtype, True)
            if fn is not None:
                posts.append((i, fn))
        procs.reverse()
        if len(_CLASS_PLANS) > 4096:
            _CLASS_PLANS.clear()
        plan = _CLASS_PLANS[mtype, classes] = (classes, tuple(procs), tuple(posts))
    _PLANS[mtype] = plan
    return plan


def apply_stack(msg: Message) -> Message:
    """Send ``msg`` through the active handlers and return it with its value set."""
    stack = _PYRO_STACK
    mtype = msg["type"]
    plan = _PLANS.get(mtype)
    if plan is None or len(plan[0]) != len(stack) or not all(map(is_, plan[0], map(type, stack))):
        plan = _make_plan(stack, mtype)
    seen = 0  # index of the outermost handler that processed the message
    if msg["stop"]:
        seen = _process_from(msg, stack, len(stack))
    else:
        for i, fn in plan[1]:
            fn(stack[i], msg)
            if msg["stop"]:
                seen = i
                break
            if msg["type"] != mtype:
                # Handlers further out see the message under its new type.
                seen = _process_from(msg, stack, i)
                break
    if not msg["done"]:
        if not msg["is_observed"] and msg["value"] is None:
            msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"])
        msg["done"] = True
    if msg["type"] != mtype:
        _postprocess_from(msg, stack, seen)
    else:
        for i, fn in plan[2]:
            if i >= seen:
                fn(stack[i], msg)
                if msg["type"] != mtype:
                    _postprocess_from(msg, stack, i + 1)
                    break
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
