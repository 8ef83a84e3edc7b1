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

from probpl.poutine.enum_messenger import enumerate_site
from probpl.poutine.escape_messenger import EscapeMessenger
from probpl.poutine.handlers import block
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.trace_struct import Trace
from probpl.poutine.util import NonlocalExit, enum_extend


def is_sequential(site):
    return site["type"] == "sample" and site["infer"].get("enumerate") == "sequential" \
        and not site["is_observed"]


def _check_site(msg):
    enumerate_site(msg)  # raises for a distribution without enumerable support
    batch_shape = tuple(msg["fn"].batch_shape)
    if any(n != 1 for n in batch_shape):
        raise ValueError(
            f"guide site '{msg['name']}' is marked infer={{'enumerate': 'sequential'}} but has "
            f"batch_shape {batch_shape} (plates "
            f"{[(f.name, f.dim, f.size) for f in msg['cond_indep_stack']]}): one run per value "
            "would give every batch element the same value; use "
            "infer={'enumerate': 'parallel'} for sites in plates"
        )


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
            _check_site(exit_.site)
            # Reversed, so that the stack pops values in support order.
            pending.extend(reversed(enum_extend(fixed, exit_.site)))
            continue
        yield fixed
