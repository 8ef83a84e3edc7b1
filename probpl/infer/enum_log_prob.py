"""Log-densities of a trace recorded under enumeration, computed in groups.

Sites with the same distribution type and shapes (the steps of a ``markov``
loop) are evaluated as one stacked batch, which leaves one autograd node per
group instead of one per site, and an enumerated categorical's log-density is
its normalised logits moved to its enumeration dim (no gather). probpl's
:class:`~probpl.distributions.Categorical` normalises its parameter only when
read, so the steps of a chain are normalised here together, from their
parameters as the model gave them. Used by :mod:`probpl.infer.enum` and
everything that scores enumerated traces.
"""

import functools

import torch

from probpl.distributions.categorical import Categorical as _LeanCategorical
from probpl.distributions.util import scale_and_mask


def _enumerated_logits_to_log_prob(logits, dim, lead=0):
    """Log-probabilities of ``arange(K)`` laid along ``dim`` (a negative batch dim):
    the normalised ``logits`` (``lead`` stacking dims + batch + (K,)) with the
    category dim moved there."""
    shape = logits.shape
    batch = len(shape) - 1 - lead
    if -dim > batch:
        pos = lead  # the category dim goes first, left of the batch dims
        out = shape[:lead] + shape[-1:] + (1,) * (-1 - dim - batch) + shape[lead:-1]
    else:
        pos = len(shape) - 1 + dim  # it replaces the batch's size-1 dim there
        out = shape[:pos] + shape[-1:] + shape[pos + 1:-1]
    for size in shape[pos:-1]:
        if size != 1:
            break
    else:
        # Only size-1 dims lie between: moving the category dim is a reshape.
        return logits.reshape(out)
    if -dim > batch:
        return logits.movedim(-1, lead).reshape(out)
    return logits.transpose(dim - 1, -1).squeeze(-1)


def _site_log_prob(name, site):
    fn, value, infer = site["fn"], site["value"], site["infer"]
    if infer.get("_enum_support") is value:
        # The value is arange(K) along the enumeration dim: log_prob is the logits
        # with their last dim moved there (no gather).
        return _enumerated_logits_to_log_prob(fn.logits, infer["_enumerate_dim"])
    try:
        return fn.log_prob(value)
    except (ValueError, RuntimeError) as e:
        shape = tuple(getattr(value, "shape", ()))
        raise ValueError(
            f"Error computing log_prob at sample site '{name}' (batch_shape "
            f"{tuple(fn.batch_shape)}, value shape {shape}): {e}"
        ) from e


# torch distributions whose log_prob is elementwise in their parameters and
# whose constructor takes exactly these tensors: sites of one such type with
# equal shapes are evaluated together, as one stacked batch.
_STACKABLE = {
    torch.distributions.Normal: ("loc", "scale"),
    torch.distributions.Laplace: ("loc", "scale"),
    torch.distributions.Cauchy: ("loc", "scale"),
    torch.distributions.Poisson: ("rate",),
    torch.distributions.Exponential: ("rate",),
    torch.distributions.Gamma: ("concentration", "rate"),
}


def _unexpand(t):
    """The tensor that a plate expanded into ``t``, when that is certain; else
    ``t``.  ``_unexpand(t).expand(t.shape)`` equals ``t`` (the result may have
    fewer dims), and computing from it leaves the expansion out of the autograd
    graph.  Tensors without gradients are returned as they are."""
    if not t.requires_grad:
        return t
    b = t._base
    if b is None or not b.requires_grad or b.dtype != t.dtype \
            or b.storage_offset() != t.storage_offset():
        return t
    t_shape, b_shape, t_stride = t.shape, b.shape, t.stride()
    lead = len(t_shape) - len(b_shape)
    if lead < 0:
        return t
    for i in range(lead):
        if t_stride[i]:
            return t
    # b.expand(t.shape) must give t's strides exactly.
    for i, (bn, bs) in enumerate(zip(b_shape, b.stride())):
        j = lead + i
        if bn == t_shape[j]:
            if bs != t_stride[j]:
                return t
        elif bn != 1 or t_stride[j]:
            return t
    return b


@functools.lru_cache(maxsize=4096)
def _broadcast_shape(a, b):
    return torch.broadcast_shapes(a, b)


_NUMBER = "number"  # marks a Python-number parameter in a group key
_CLASS_PARAMS = {}  # distribution class -> ((name, "_" + name), ...); () when not grouped


def _class_params(cls):
    names = _CLASS_PARAMS.get(cls)
    if names is None:
        names = ()
        for base in cls.__mro__:
            if base in _STACKABLE:
                names = _STACKABLE[base]
                break
            # A subclass that computes differently is evaluated on its own;
            # probpl's own versions of these classes compute the same values.
            if ("log_prob" in base.__dict__ or "__init__" in base.__dict__) \
                    and not base.__module__.startswith("probpl.distributions"):
                break
        # Parameters are stored under their name, or under "_<name>" (possibly
        # as a Python number) by classes that expand lazily.
        names = _CLASS_PARAMS[cls] = tuple((n, "_" + n) for n in names)
    return names


@functools.lru_cache(maxsize=4096)
def _enum_shape(batch, size, dim):
    """The log-density shape of an enumerated Categorical: its batch shape with
    the ``size`` values along the enumeration dim ``dim``."""
    if -dim > len(batch):
        return torch.Size((size,) + (1,) * (-1 - dim - len(batch)) + batch)
    return torch.Size(batch[:len(batch) + dim] + (size,) + batch[len(batch) + dim + 1:])


def _stack_key(site):
    """``(key, tensors)`` when ``site``'s log-density can be computed in a batch
    with other sites of the same key, else ``None``.

    ``tensors`` are the inputs to stack (parameters, then the value, with any
    plate expansion undone); the key ends with the shape of the site's
    log-density.
    """
    fn, value, infer = site["fn"], site["value"], site["infer"]
    params = fn.__dict__
    if infer.get("_enum_support") is value:
        # An enumerated categorical: only its normalised logits are needed.
        dim = infer["_enumerate_dim"]
        shape = _enum_shape(fn._batch_shape, fn._num_events, dim)
        if isinstance(fn, _LeanCategorical):
            # The parameter as the model gave it (plates never expand it),
            # normalised later for the whole group at once.
            t = fn._param
            if t._base is not None:
                small = _unexpand(t)
                if small.shape[-1:] == t.shape[-1:]:  # (never along the categories)
                    t = small
            kind = "raw_logits" if fn._param_is_logits else "raw_probs"
            return ("enum", kind, t.shape, t.dtype, t.device, dim, shape), (t,)
        if "logits" in params:
            t, kind = params["logits"], "logits"
        else:
            t, kind = params["probs"], "probs"
        source = infer.get("_unexpanded")
        if source is not None and source[0] is fn:
            # The distribution as the model built it, before plates expanded it.
            t = source[1].__dict__[kind]
        else:
            t = _unexpand(t)
        return ("enum", kind, t.shape, t.dtype, t.device, dim, shape), (t,)
    cls = type(fn)
    names = _class_params(cls)
    if not names or fn._validate_args or not isinstance(value, torch.Tensor):
        # (A validating distribution checks its value's support in log_prob.)
        return None
    tensors, spec, dtypes = [], [], []
    for n, private in names:
        t = params.get(n)
        if t is None:
            t = params.get(private)
            if t is None:
                return None
        if isinstance(t, torch.Tensor):
            t = _unexpand(t)
            tensors.append(t)
            spec.append(t.shape)
            dtypes.append(t.dtype)
        elif type(t) in (int, float):
            # A number is the same for every member of a group: part of the key.
            tensors.append(t)
            spec.append((_NUMBER, t))
        else:
            return None
    tensors.append(value)
    spec.append(value.shape)
    key = (cls, tuple(spec), tuple(dtypes), value.dtype, value.device,
           _broadcast_shape(fn.batch_shape, value.shape))
    return key, tensors


def _grouped_log_probs(key, members):
    """Log-densities of same-key sites from one batched evaluation (a stack along
    a new leading dim, unless there is a single site)."""
    n = len(members)
    if n == 1:
        stacked, lead = list(members[0][1]), 0
    else:
        # (Numbers, equal across the group, are kept as they are.)
        stacked = [torch.stack(c) if isinstance(c[0], torch.Tensor) else (_NUMBER, c[0])
                   for c in zip(*(tensors for _, tensors in members))]
        lead = 1
    if key[0] == "enum":
        kind, dim = key[1], key[5]
        t = stacked[0]
        if kind == "raw_logits":
            t = t - t.logsumexp(-1, keepdim=True)
        elif kind != "logits":
            if kind == "raw_probs":
                t = t / t.sum(-1, keepdim=True)
            # torch's logits of probs: the log of probs clamped away from 0 and 1.
            eps = torch.finfo(t.dtype).eps
            t = t.clamp(min=eps, max=1 - eps).log()
        lp = _enumerated_logits_to_log_prob(t, dim, lead=lead)
    else:
        if lead:
            # Right-align parameters and value behind the stacking dim.
            spec = key[1]
            rank = max(len(shape) for shape in spec if type(shape) is torch.Size)
            stacked = [
                t[1] if type(shape) is not torch.Size
                else t if len(shape) == rank
                else t.reshape((n,) + (1,) * (rank - len(shape)) + shape)
                for t, shape in zip(stacked, spec)
            ]
        fn = key[0](*stacked[:-1], validate_args=False)
        lp = fn.log_prob(stacked[-1])
    shape = (n,) + tuple(key[-1]) if lead else key[-1]
    if lp.shape != shape:
        lp = lp.expand(shape)
    return lp.unbind(0) if lead else (lp,)


def compute_log_probs(tr):
    """Store ``log_prob`` (scaled, masked) and ``unscaled_log_prob`` on the sample
    sites of a trace recorded under enumeration, cheaply for enumerated sites.

    Sites with the same distribution type and shapes (the steps of a ``markov``
    chain) are evaluated together: one stacked computation, which also leaves
    one node per group rather than per site for the backward pass.
    """
    groups = {}
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or "log_prob" in site or site["infer"].get("_subsample"):
            continue
        found = _stack_key(site)
        if found is None:
            _store(site, _site_log_prob(name, site))
        else:
            groups.setdefault(found[0], []).append((site, found[1]))
    for key, members in groups.items():
        if len(members) == 1 and key[0] != "enum":
            # Nothing to batch: the distribution's own log_prob is the cheapest.
            site = members[0][0]
            _store(site, _site_log_prob(site["name"], site))
            continue
        for (site, _), lp in zip(members, _grouped_log_probs(key, members)):
            _store(site, lp)


def _store(site, lp):
    site["unscaled_log_prob"] = lp
    scale, mask = site["scale"], site["mask"]
    if mask is None and type(scale) in (int, float) and scale == 1:
        site["log_prob"] = lp
    else:
        site["log_prob"] = scale_and_mask(lp, scale, mask)
