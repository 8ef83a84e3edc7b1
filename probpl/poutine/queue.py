"""``queue``: sequential enumeration of discrete sites by re-running the program.

Each call pops a partial trace, replays it, and stops at the first discrete
site it does not fix; that site's support extends the partial trace into new
ones pushed back on the queue. Used for exhaustive search.
"""

import functools

from probpl.poutine.escape_messenger import EscapeMessenger
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.trace_messenger import TraceMessenger
from probpl.poutine.util import NonlocalExit, discrete_escape, enum_extend


def queue(fn=None, queue=None, max_tries=None, extend_fn=None, escape_fn=None, num_samples=None):
    """Wrap ``fn`` so each call completes one partial trace from ``queue``.

    :param queue: a ``queue.Queue``-like object of partial traces.
    :param int max_tries: give up after this many escapes.
    """
    if max_tries is None:
        max_tries = int(1e6)
    extend_fn = enum_extend if extend_fn is None else extend_fn
    escape_fn = discrete_escape if escape_fn is None else escape_fn

    def wrapper(wrapped):
        @functools.wraps(wrapped)
        def _fn(*args, **kwargs):
            for _ in range(max_tries):
                if queue.empty():
                    raise ValueError("queue: no partial traces left to extend")
                next_trace = queue.get()
                tracer = TraceMessenger()
                run = tracer(
                    EscapeMessenger(functools.partial(escape_fn, next_trace))(
                        ReplayMessenger(trace=next_trace)(wrapped)
                    )
                )
                try:
                    return run(*args, **kwargs)
                except NonlocalExit as exit_:
                    for tr in extend_fn(tracer.trace.copy(), exit_.site, num_samples=num_samples):
                        queue.put(tr)
            raise ValueError(f"queue: max_tries ({max_tries}) exceeded")

        return _fn

    return wrapper(fn) if fn is not None else wrapper
