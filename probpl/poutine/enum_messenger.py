"""``enum``: give each enumerated discrete site its own tensor dim.

A sample site marked ``infer={"enumerate": "parallel"}`` takes as its value the
whole support of its distribution, laid along a fresh dim to the left of all
plates (``first_available_dim`` and further left).  Downstream computations
then broadcast over every value at once, and an inference algorithm can sum the
dim out of the log-densities.

Dims are allocated by this handler, not globally.  A site outside any
``markov`` context keeps its dim for the rest of the run.  A site inside one
may reuse a dim whose previous owner it cannot see (see
:mod:`~probpl.poutine.markov_messenger`), so a chain of any length uses a
bounded number of dims.  Because a dim may be reused, each allocation also gets
a unique id: every sample site records ``infer["_dim_to_id"]``, the ids of the
enumeration dims its log-density may depend on, and an enumerated site records
its own dim under ``infer["_enumerate_dim"]``.
"""

import functools

import torch

from probpl.poutine.messenger import Messenger


@functools.lru_cache(maxsize=1024)
def _categorical_support(size, dim, device):
    """``arange(size)`` along ``dim``: shared and never written to."""
    return torch.arange(size, device=device).reshape((size,) + (1,) * (-1 - dim))


def enumerate_site(msg):
    """The support of a site's distribution, shaped ``(K,) + batch + event``
    (``expand=True``) or ``(K,) + (1,) * len(batch) + event``."""
    fn = msg["fn"]
    if not getattr(fn, "has_enumerate_support", False):
        raise ValueError(
            f"sample site '{msg['name']}' is marked infer={{'enumerate': "
            f"{msg['infer'].get('enumerate')!r}}} but its distribution {type(fn).__name__} has "
            "no enumerable support; enumerate only discrete sites with finite support "
            "(Categorical, Bernoulli, ...) or remove the 'enumerate' hint"
        )
    return fn.enumerate_support(expand=msg["infer"].get("expand", False))


class EnumMessenger(Messenger):
    """Enumerates in parallel over sites marked ``infer={"enumerate": "parallel"}``.

    :param int first_available_dim: the rightmost dim (negative) free for
        enumeration; usually ``-1 - max_plate_nesting``.  Every plate must use
        dims to its right.
    """

    def __init__(self, first_available_dim=None):
        super().__init__()
        if first_available_dim is not None and first_available_dim >= 0:
            raise ValueError(
                f"enum: first_available_dim must be negative, got {first_available_dim}"
            )
        self.first_available_dim = first_available_dim

    def __enter__(self):
        self._next_id = 0
        self._global_dims = {}  # dim -> id, for sites outside markov contexts
        self._latest = {}  # dim -> id of its most recent owner
        self._leftmost = 0 if self.first_available_dim is None else self.first_available_dim + 1
        self._value_dims = {}  # site name -> {dim: id} carried by its value
        self._depths = {}  # site name -> number of markov contexts around it
        return super().__enter__()

    def _visible_dims(self, scope):
        if scope is None:
            # Outside markov contexts a dim can only hold its latest owner.
            return dict(self._latest)
        dims = dict(self._global_dims)
        depths, value_dims = self._depths, self._value_dims
        for name, count in scope.items():
            if depths.get(name) == count:
                own = value_dims.get(name)
                if own:
                    dims.update(own)
        return dims

    def _check_plates(self, msg):
        first = self.first_available_dim
        for f in msg["cond_indep_stack"]:
            if f.dim is not None and f.dim <= first:
                raise ValueError(
                    f"sample site '{msg['name']}' is in plate '{f.name}' at dim {f.dim}, which "
                    f"collides with enumeration dims (first_available_dim={first}); increase "
                    f"max_plate_nesting to at least {-f.dim}"
                )

    def _allocate(self, visible, in_markov):
        if self.first_available_dim is None:
            raise ValueError(
                "enum needs first_available_dim (usually -1 - max_plate_nesting) to enumerate"
            )
        if in_markov:
            dim = self.first_available_dim
            while dim in visible or dim in self._global_dims:
                dim -= 1
        else:
            # Left of every dim ever used, so no live site can share it.
            dim = self._leftmost - 1
            while dim in visible:
                dim -= 1
        self._leftmost = min(self._leftmost, dim)
        id_ = self._next_id
        self._next_id += 1
        if not in_markov:
            self._global_dims[dim] = id_
        self._latest[dim] = id_
        return dim, id_

    def adopt(self, other):
        """Treat the dims allocated by ``other`` (e.g. the guide's enumeration,
        whose values are replayed here) as permanently taken; call after entering."""
        self._global_dims.update(other._global_dims)
        self._global_dims.update(other._latest)
        self._latest.update(other._latest)
        self._leftmost = min(self._leftmost, other._leftmost)
        self._next_id = max(self._next_id, other._next_id)

    def _pyro_sample(self, msg):
        if msg["infer"].get("_subsample"):
            return
        infer = msg["infer"]
        depth = infer.get("_markov_depth")
        if depth:
            self._depths[msg["name"]] = depth
        visible = self._visible_dims(infer.get("_markov_scope"))
        infer["_dim_to_id"] = visible
        if msg["done"] or msg["is_observed"] or infer.get("enumerate") != "parallel":
            return
        if self.first_available_dim is not None:
            self._check_plates(msg)
        fn = msg["fn"]
        if type(fn).__mro__[1] is torch.distributions.Categorical and not infer.get("expand"):
            # Plain categorical: the support is a cached arange, and its log_prob is
            # the logits themselves (see probpl.infer.enum.compute_log_probs).
            dim, id_ = self._allocate(visible, bool(infer.get("_markov_depth")))
            batch = fn.batch_shape
            if len(batch) >= -dim and batch[dim] != 1:
                raise ValueError(
                    f"sample site '{msg['name']}': enumeration dim {dim} is already used by its "
                    f"distribution's batch shape {tuple(batch)}; increase max_plate_nesting or "
                    "check the markov history"
                )
            value = _categorical_support(fn._num_events, dim, fn._param.device)
            own = dict(visible)
            own[dim] = id_
            infer["_dim_to_id"] = own
            infer["_enumerate_dim"] = dim
            infer["_enum_support"] = value
            msg["value"] = value
            msg["done"] = True
            return
        value = enumerate_site(msg)
        event_dim = len(fn.event_shape)
        dim, id_ = self._allocate(visible, bool(infer.get("_markov_depth")))
        size = value.shape[0]
        batch = value.shape[1: value.dim() - event_dim]
        event = value.shape[value.dim() - event_dim:]
        if len(batch) < -dim:
            value = value.reshape((size,) + (1,) * (-1 - dim - len(batch)) + batch + event)
        else:
            pos = len(batch) + dim
            if batch[pos] != 1:
                raise ValueError(
                    f"sample site '{msg['name']}': enumeration dim {dim} is already used by its "
                    f"distribution's batch shape {tuple(batch)}; increase max_plate_nesting or "
                    "check the markov history"
                )
            value = value.transpose(0, 1 + pos)
            while value.dim() > event_dim and value.shape[0] == 1:
                value = value[0]
        value_dims = {d: i for d, i in visible.items() if value.dim() - event_dim >= -d
                      and value.shape[d - event_dim] > 1}
        value_dims[dim] = id_
        own = dict(visible)
        own[dim] = id_
        infer["_dim_to_id"] = own
        infer["_enumerate_dim"] = dim
        msg["value"] = value
        msg["done"] = True

    def _pyro_post_sample(self, msg):
        infer = msg["infer"]
        if infer.get("_subsample"):
            return
        dims = infer.get("_dim_to_id")
        value = msg["value"]
        if dims is None or not hasattr(value, "shape"):
            return
        name = msg["name"]
        if infer.get("_enum_support") is value:
            dim = infer["_enumerate_dim"]
            self._value_dims[name] = {dim: dims[dim]}
            return
        event_dim = len(getattr(msg["fn"], "event_shape", ()))
        n = value.dim() - event_dim
        first = self.first_available_dim
        if first is not None and n < -first:
            # Too few dims to reach any enumeration dim.
            self._value_dims[name] = {}
            return
        self._value_dims[name] = {
            d: i for d, i in dims.items() if n >= -d and value.shape[d - event_dim] > 1
        }


def enum(fn=None, first_available_dim=None):
    """Enumerate discrete sites marked ``infer={"enumerate": "parallel"}``.

    :param fn: a model or guide (omit to get a context manager).
    :param int first_available_dim: rightmost dim free for enumeration
        (negative), usually ``-1 - max_plate_nesting``.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.poutine.enum_messenger import enum
        >>> def model():
        ...     return probpl.sample("z", dist.Categorical(torch.ones(3)),
        ...                          infer={"enumerate": "parallel"})
        >>> enum(model, first_available_dim=-1)()
        tensor([0, 1, 2])
    """
    msngr = EnumMessenger(first_available_dim=first_available_dim)
    return msngr(fn) if fn is not None else msngr
