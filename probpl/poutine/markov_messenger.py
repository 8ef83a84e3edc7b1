"""``markov``: declare that sites depend only on the last few steps of a chain.

Used as a context manager around each step, or as an iterator over the steps.
Enumeration uses the declaration to recycle tensor dims so that a chain of any
length needs a bounded number of them; without enumeration it changes nothing.

Each entry of a markov context opens a *step*; entries nest (the iterator form
enters once per step and exits all steps when the loop ends, as recursion
does).  A sample site records in ``infer["_markov_scope"]`` how many enclosing
markov contexts let it see each earlier site (the sites of the current step and
of the ``history`` steps before it), and in ``infer["_markov_depth"]`` how many
markov contexts enclose it.  An earlier site is visible when every markov
context that enclosed it still sees it; sites that are not visible may share
enumeration dims with the current one.
"""

from itertools import chain

from probpl.poutine.messenger import Messenger
from probpl.poutine.runtime import _PYRO_STACK


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
        if dim is not None:
            raise NotImplementedError(
                "markov(dim=...) (vectorized markov) is not supported; use a markov loop"
            )
        self.history = history
        self.keep = keep
        self.dim = dim
        self.name = name
        self._pos = -1
        self._steps = []  # site names sampled in each open step

    def __enter__(self):
        self._pos += 1
        if len(self._steps) <= self._pos:
            self._steps.append(set())
        if self._pos == 0:
            super().__enter__()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if not self.keep:
            self._steps.pop()
        self._pos -= 1
        if self._pos < 0:
            self._steps = []
            return super().__exit__(exc_type, exc_value, traceback)
        if exc_type is not None and self in _PYRO_STACK:
            # An exception left nested steps open: unwind them all at once.
            self._pos = -1
            self._steps = []
            return super().__exit__(exc_type, exc_value, traceback)
        return False

    def generator(self, iterable):
        depth = 0
        try:
            for i in iterable:
                self.__enter__()
                depth += 1
                yield i
        finally:
            for _ in range(depth):
                if self._pos < 0:
                    break
                self.__exit__(None, None, None)

    def _pyro_sample(self, msg):
        infer = msg["infer"]
        if msg["done"] or infer.get("_subsample"):
            return
        pos = self._pos
        window = self._steps[max(0, pos - self.history):pos + 1]
        scope = infer.get("_markov_scope")
        if scope is None:
            # The innermost markov context: every name in its window once.
            infer["_markov_scope"] = dict.fromkeys(chain.from_iterable(window), 1)
        else:
            for names in window:
                for name in names:
                    scope[name] = scope.get(name, 0) + 1
        infer["_markov_depth"] = infer.get("_markov_depth", 0) + 1
        self._steps[pos].add(msg["name"])


def markov(fn=None, history=1, keep=False, dim=None, name=None):
    """Markov context manager, iterator (``for t in markov(range(T))``) or decorator."""
    if fn is None:
        return MarkovMessenger(history=history, keep=keep, dim=dim, name=name)
    if not callable(fn):
        return MarkovMessenger(history=history, keep=keep, dim=dim, name=name).generator(fn)
    return MarkovMessenger(history=history, keep=keep, dim=dim, name=name)(fn)
