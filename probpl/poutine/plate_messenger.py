"""``plate``: a set of conditionally independent sites, vectorised or sequential.

A vectorised plate owns one tensor dim, found through the handler stack: the
rightmost dim not claimed by an enclosing plate, unless given. On entry it
draws its subsample indices through a ``sample`` message (so a guide's indices
are replayed in the model), then, for every site inside, it records itself in
``cond_indep_stack``, scales log-densities by ``size / subsample_size`` and
expands distributions to its size. Iterating over a plate instead runs its
body once per index, each iteration independent of the others.
"""

import torch

from probpl.poutine.broadcast_messenger import broadcast_to_plates
from probpl.poutine.messenger import Messenger
from probpl.poutine.runtime import _PYRO_STACK, CondIndepStackFrame, apply_stack, new_message


class _Subsample:
    """Draws ``subsample_size`` distinct indices out of ``size``, uniformly."""

    has_rsample = False
    has_enumerate_support = False
    batch_shape = torch.Size()
    event_shape = torch.Size()

    def __init__(self, size, subsample_size, device=None):
        self.size = size
        self.subsample_size = subsample_size
        self.device = device

    def __call__(self, sample_shape=()):
        if self.subsample_size >= self.size:
            return torch.arange(self.size, device=self.device)
        return torch.randperm(self.size, device=self.device)[: self.subsample_size]

    sample = __call__

    def log_prob(self, value):
        return torch.zeros((), device=value.device)


_ARANGE_CACHE = {}


def _full_indices(size, device):
    """``arange(size)``, cached: plates without subsampling are entered on every
    model run and their indices never change. Callers must not modify them."""
    key = (size, str(device))
    indices = _ARANGE_CACHE.get(key)
    if indices is None:
        indices = torch.arange(size, device=device)
        if len(_ARANGE_CACHE) < 256:
            _ARANGE_CACHE[key] = indices
    return indices


class PlateMessenger(Messenger):
    """See :func:`probpl.plate`."""

    def __init__(
        self, name, size=None, subsample_size=None, subsample=None, dim=None, use_cuda=None,
        device=None,
    ):
        super().__init__()
        if not isinstance(name, str):
            raise TypeError(f"plate name must be a string, got {type(name).__name__}")
        if dim is not None and dim >= 0:
            raise ValueError(f"plate '{name}': dim must be negative (counted from the right), "
                             f"got {dim}")
        if size is None:
            if subsample is None:
                raise ValueError(f"plate '{name}' needs a size or a subsample")
            size = len(subsample)
        if subsample is not None:
            subsample_size = len(subsample)
        elif subsample_size is None:
            subsample_size = size
        if subsample_size > size and size != -1:
            raise ValueError(f"plate '{name}': subsample_size {subsample_size} exceeds size {size}")
        if device is None and use_cuda:
            device = "cuda"
        self.name = name
        self.size = size
        self.subsample_size = subsample_size
        self._given_subsample = subsample
        self.dim = dim
        self._user_dim = dim
        self.device = device
        self._vectorized = None
        self.counter = 0
        self._indices = None
        self._frame = None  # the CondIndepStackFrame, built once per entry
        self._scale = size / subsample_size if subsample_size not in (size, 0) else None

    # ----- entering -----

    def _allocate_dim(self):
        taken = {}
        for h in _PYRO_STACK:
            if isinstance(h, PlateMessenger) and h._vectorized and h is not self:
                if h.name == self.name:
                    raise ValueError(f"plate '{self.name}' is already active; plate names "
                                     "must be unique among nested plates")
                taken[h.dim] = h.name
        if self._user_dim is not None:
            if self._user_dim in taken:
                raise ValueError(
                    f"plates '{taken[self._user_dim]}' and '{self.name}' both claim dim "
                    f"{self._user_dim}; give them different dims"
                )
            return self._user_dim
        dim = -1
        while dim in taken:
            dim -= 1
        return dim

    def _draw_indices(self):
        if self._given_subsample is not None:
            sub = self._given_subsample
            if not isinstance(sub, torch.Tensor):
                sub = torch.as_tensor(sub, device=self.device)
            return sub
        if self.subsample_size == self.size:
            # No randomness: no need to send a message.
            return _full_indices(self.size, self.device)
        msg = new_message(
            type="sample",
            name=self.name,
            fn=_Subsample(self.size, self.subsample_size, self.device),
            infer={"_subsample": True},
        )
        return apply_stack(msg)["value"]

    def __enter__(self):
        self._frame = None
        if self._vectorized is False:
            return super().__enter__()
        self._vectorized = True
        self.dim = self._allocate_dim()
        indices = self.indices
        super().__enter__()
        return indices

    def __iter__(self):
        if self._vectorized:
            raise ValueError(f"plate '{self.name}' is in use as a context; cannot iterate it")
        self._vectorized = False
        self.dim = None
        for i in self.indices.tolist():
            with self:
                yield i
            self.counter += 1

    @property
    def indices(self):
        """The subsample indices, drawn once per plate object."""
        if self._indices is None:
            self._indices = self._draw_indices()
        return self._indices

    # ----- sites inside -----

    @property
    def frame(self):
        frame = self._frame
        if frame is None:
            frame = self._frame = CondIndepStackFrame(
                self.name, self.dim, self.subsample_size, self.counter, self.size
            )
        return frame

    def _process_message(self, msg):
        frame = self._frame
        if frame is None:
            frame = self.frame
        msg["cond_indep_stack"] = (frame,) + msg["cond_indep_stack"]
        mtype = msg["type"]
        if mtype == "sample":
            if self._scale is not None:
                msg["scale"] = msg["scale"] * self._scale
            if self._vectorized and not msg["done"] and not msg["infer"].get("_subsample"):
                broadcast_to_plates(msg)
        elif mtype == "subsample":
            self._pyro_subsample(msg)
        elif mtype != "plate" and self._scale is not None:
            msg["scale"] = msg["scale"] * self._scale

    def _pyro_post_param(self, msg):
        if self._vectorized and self.subsample_size != self.size:
            self._subsample_param(msg)

    def _subsample_param(self, msg):
        """A param declared with ``event_dim`` inside a subsampled plate holds one
        entry per element of the full plate; the model sees the minibatch's."""
        event_dim = msg["kwargs"].get("event_dim")
        value = msg["value"]
        if event_dim is None or not isinstance(value, torch.Tensor):
            return
        dim = self.dim - event_dim
        if value.dim() < -dim or value.size(dim) == 1:
            return
        if value.size(dim) != self.size:
            raise ValueError(
                f"param '{msg['name']}' in plate '{self.name}' (dim {self.dim}, size "
                f"{self.size}): shape {tuple(value.shape)} has size {value.size(dim)} at dim "
                f"{dim}, expected the plate's full size {self.size}"
            )
        msg["value"] = value.index_select(dim, self.indices.to(value.device))

    def _pyro_subsample(self, msg):
        if not self._vectorized or self.subsample_size == self.size:
            return
        data = msg["value"]
        event_dim = msg["kwargs"].get("event_dim", 0)
        dim = self.dim - event_dim
        if data.dim() >= -dim and data.size(dim) == self.size:
            msg["value"] = data.index_select(dim, self._indices.to(data.device))


def plate(name, size=None, subsample_size=None, subsample=None, dim=None, use_cuda=None,
          device=None):
    """Declare conditionally independent sites.

    As a context manager, sites inside are vectorised along one tensor dim
    (``dim``, counted from the right; found automatically when omitted) and it
    yields the subsample indices. As an iterator (``for i in plate(...)``) the
    body runs once per index. With ``subsample_size`` (or ``subsample``) a random
    subset of ``size`` is used and log-densities are scaled by
    ``size / subsample_size``, keeping the objective unbiased.

    :param str name: unique name.
    :param int size: full size of the set.
    :param int subsample_size: size of the random minibatch.
    :param subsample: explicit subsample indices.
    :param int dim: tensor dim to use (negative).
    :param device: device of the indices.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> with probpl.plate("data", 100, subsample_size=10) as idx:
        ...     x = probpl.sample("x", dist.Normal(0., 1.))
        >>> x.shape, idx.shape
        (torch.Size([10]), torch.Size([10]))
    """
    return PlateMessenger(name, size, subsample_size, subsample, dim, use_cuda, device)
