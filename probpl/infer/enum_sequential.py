"""Sequential enumeration of guide sites: one guide run per assignment.

A guide site marked ``infer={"enumerate": "sequential"}`` is summed over by
re-running the guide once for each of its values instead of giving it a tensor
dim.  :func:`sequential_assignments` finds the assignments depth first: it runs
the guide (hidden from every outer handler) until the first sequential site not
yet fixed, then branches on that site's support.  Later sites may depend on
earlier values, so each branch is explored by a fresh run.  The ELBO then runs
guide and model once per complete assignment, replaying its values, and weighs
each run by the guide probability of the values it fixed.

Sequential enumeration costs one guide run per assignment (times the number of
sequential sites), so it suits a few small sites; ``"parallel"`` is the fast way.
"""

from probpl.poutine.escape_messenger import EscapeMessenger
from probpl.poutine.handlers import block
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.trace_struct import Trace
from probpl.poutine.util import NonlocalExit


def is_sequential(site):
    return site["type"] == "sample" and site["infer"].get("enumerate") == "sequential" \
        and not site["is_observed"]


def _site_values(msg):
    fn = msg["fn"]
    if not getattr(fn, "has_enumerate_support", False):
        raise ValueError(
            f"guide site '{msg['name']}' is marked infer={{'enumerate': 'sequential'}} but its "
            f"distribution {type(fn).__name__} has no enumerable support; enumerate only "
            "discrete sites with finite support, or remove the hint"
        )
    batch_shape = tuple(fn.batch_shape)
    if any(n != 1 for n in batch_shape):
        raise ValueError(
            f"guide site '{msg['name']}' is marked infer={{'enumerate': 'sequential'}} but has "
            f"batch_shape {batch_shape} (plates "
            f"{[(f.name, f.dim, f.size) for f in msg['cond_indep_stack']]}): one run per value "
            "would give every batch element the same value; use "
            "infer={'enumerate': 'parallel'} for sites in plates"
        )
    return fn.enumerate_support(expand=False)


def sequential_assignments(guide, args, kwargs):
    """Yield one partial :class:`~probpl.poutine.trace_struct.Trace` per complete
    assignment of ``guide``'s sequentially enumerated sites (replay it to fix
    them); a guide without such sites yields one empty trace."""
    pending = [Trace()]
    while pending:
        fixed = pending.pop()

        def escape_fn(msg, fixed=fixed):
            return is_sequential(msg) and msg["name"] not in fixed

        try:
            with block():
                EscapeMessenger(escape_fn)(ReplayMessenger(trace=fixed)(guide))(*args, **kwargs)
        except NonlocalExit as exit_:
            msg = exit_.site
            values = _site_values(msg)
            # Reversed, so that the stack pops values in support order.
            for value in reversed(list(values)):
                extended = fixed.copy()
                site = dict(msg)
                site.update(value=value, infer=dict(msg["infer"]), done=True, stop=False,
                            continuation=None)
                extended.add_node(msg["name"], **site)
                pending.append(extended)
            continue
        yield fixed
