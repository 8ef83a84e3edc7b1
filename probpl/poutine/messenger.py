"""The base class of every effect handler.

A :class:`Messenger` is a context manager that pushes itself on the handler
stack, and a decorator that does so around each call of a function. Subclasses
override ``_pyro_<type>`` (seen on the way out from the innermost handler) and
``_pyro_post_<type>`` (seen on the way back), or the general
``_process_message`` / ``_postprocess_message``.

Example::

    >>> import torch, probpl
    >>> import probpl.distributions as dist
    >>> from probpl.poutine.messenger import Messenger
    >>> class Doubler(Messenger):
    ...     def _pyro_post_sample(self, msg):
    ...         msg["value"] = 2 * msg["value"]
    >>> with Doubler():
    ...     x = probpl.sample("x", dist.Delta(torch.tensor(1.0)))
    >>> x
    tensor(2.)
"""

import functools
from contextlib import contextmanager

from probpl.poutine.runtime import _PYRO_STACK, clear_dispatch_cache


class Messenger:
    """Base effect handler: a no-op that subclasses specialise."""

    def __init__(self):
        pass

    def __enter__(self):
        _PYRO_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if _PYRO_STACK and _PYRO_STACK[-1] is self:
            _PYRO_STACK.pop()
        elif self in _PYRO_STACK:
            # An exception escaped from inner handlers that never exited:
            # drop them with us so the stack is left as we found it.
            del _PYRO_STACK[_PYRO_STACK.index(self):]
        return False

    def __call__(self, fn):
        if not callable(fn):
            raise ValueError(
                f"{type(self).__name__} expected a callable to wrap, got {type(fn).__name__}"
            )

        @functools.wraps(fn)
        def _wrapped(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        _wrapped.msngr = self
        return _wrapped

    def _process_message(self, msg):
        method = getattr(self, "_pyro_" + msg["type"], None)
        if method is not None:
            method(msg)

    def _postprocess_message(self, msg):
        method = getattr(self, "_pyro_post_" + msg["type"], None)
        if method is not None:
            method(msg)

    # apply_stack calls _pyro_<type> directly for classes that keep these two.
    _process_message._dispatches_by_type = True
    _postprocess_message._dispatches_by_type = True

    @classmethod
    def register(cls, fn=None, type=None, post=None):
        """Attach ``fn(msg)`` as this class's handler for messages of ``type``
        (on the way back when ``post``).

        Example::

            >>> import torch, probpl
            >>> import probpl.distributions as dist
            >>> from probpl.poutine.messenger import Messenger
            >>> class Recorder(Messenger):
            ...     pass
            >>> seen = []
            >>> @Recorder.register(type="sample")
            ... def _record(msg):
            ...     seen.append(msg["name"])
            >>> with Recorder():
            ...     _ = probpl.sample("x", dist.Normal(0.0, 1.0))
            >>> seen
            ['x']
        """
        if fn is None:
            return lambda x: cls.register(x, type=type, post=post)
        if type is None:
            raise ValueError("register needs a message type")
        setattr(cls, ("_pyro_post_" if post else "_pyro_") + type, staticmethod(fn))
        clear_dispatch_cache()
        return fn

    @classmethod
    def unregister(cls, fn=None, type=None):
        """Remove the handler for messages of ``type``."""
        if type is None:
            raise ValueError("unregister needs a message type")
        for prefix in ("_pyro_", "_pyro_post_"):
            if prefix + type in cls.__dict__:
                delattr(cls, prefix + type)
        clear_dispatch_cache()
        return fn


def block_messengers(predicate):
    """Context manager that temporarily removes handlers matching ``predicate``."""

    @contextmanager
    def _ctx():
        blocked = [(i, h) for i, h in enumerate(_PYRO_STACK) if predicate(h)]
        for i, _ in reversed(blocked):
            del _PYRO_STACK[i]
        try:
            yield [h for _, h in blocked]
        finally:
            for i, h in blocked:
                _PYRO_STACK.insert(i, h)

    return _ctx()
