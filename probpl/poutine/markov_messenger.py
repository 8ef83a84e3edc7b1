"""``markov``: declare that sites depend only on the last few steps of a chain.

Used as a context manager around each step, or as an iterator over the steps.
Enumeration uses the declaration to recycle tensor dims so that a chain of any
length needs a bounded number of them; without enumeration it changes nothing.
"""

from probpl.poutine.messenger import Messenger


class MarkovMessenger(Messenger):
    """See :func:`probpl.markov`.

    :param int history: how many previous steps a step may depend on.
    :param bool keep: whether sibling markov contexts may share dims.
    :param int dim: for a vectorised markov plate, its dim.
    :param str name: optional name.
    """

    def __init__(self, history=1, keep=False, dim=None, name=None):
        super().__init__()
        if history < 0:
            raise ValueError(f"markov: history must be >= 0, got {history}")
        self.history = history
        self.keep = keep
        self.dim = dim
        self.name = name

    def generator(self, iterable):
        for i in iterable:
            with self:
                yield i


def markov(fn=None, history=1, keep=False, dim=None, name=None):
    """Markov context manager, iterator (``for t in markov(range(T))``) or decorator."""
    if fn is None:
        return MarkovMessenger(history=history, keep=keep, dim=dim, name=name)
    if not callable(fn):
        return MarkovMessenger(history=history, keep=keep, dim=dim, name=name).generator(fn)
    return MarkovMessenger(history=history, keep=keep, dim=dim, name=name)(fn)
