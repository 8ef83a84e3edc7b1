"""Exact enumeration of discrete latent sites: configuration and log-densities.

:func:`config_enumerate` marks a model's discrete sites for enumeration.
:func:`trace_factors` turns a trace recorded under
:class:`~probpl.poutine.enum_messenger.EnumMessenger` into packed factors
(:mod:`probpl.ops.contract`), naming each plate and each enumeration dim by a
symbol.  :func:`compute_log_probs` computes the log-densities of such a trace
in groups: sites with the same distribution type and shapes (the steps of a
``markov`` loop) are evaluated as one stacked batch, and an enumerated
categorical's log-density is its normalised logits, moved to its enumeration
dim.  :func:`log_density_sum_enumerated` and :func:`enumerated_log_density`
give the log joint density of a model with its enumerated sites summed out,
which is what an MCMC potential needs when a model mixes continuous latents
with discrete ones.
"""

from collections import OrderedDict

import torch

from probpl.distributions.util import scale_and_mask
from probpl.ops.contract import Factor, contract_to_tensor, get_symbol
from probpl.poutine.enum_messenger import EnumMessenger
from probpl.poutine.handlers import block, infer_config, substitute, trace

__all__ = [
    "config_enumerate",
    "trace_factors",
    "log_density_sum_enumerated",
    "enumerated_log_density",
]


def config_enumerate(fn=None, default="parallel", expand=False, num_samples=None, tmc=None):
    """Mark every latent site with enumerable support for enumeration.

    Sites that already carry an ``"enumerate"`` hint keep it.  Usable as a
    decorator with or without arguments, or as a function.

    :param fn: a model or guide.
    :param str default: ``"parallel"`` (a tensor dim per site) or
        ``"sequential"``; ``None`` leaves sites alone.
    :param bool expand: whether enumerated values are expanded to the
        distribution's batch shape (costs memory; rarely needed).

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> @config_enumerate
        ... def model():
        ...     return probpl.sample("z", dist.Bernoulli(0.3))
        >>> from probpl import poutine
        >>> tr = poutine.trace(model).get_trace()
        >>> tr.nodes["z"]["infer"]["enumerate"]
        'parallel'
    """
    if default not in ("parallel", "sequential", None):
        raise ValueError(
            f"config_enumerate: default must be 'parallel', 'sequential' or None, got {default!r}"
        )
    if num_samples is not None or tmc is not None:
        raise NotImplementedError("config_enumerate: Monte Carlo enumeration (num_samples) "
                                  "is not supported; enumerate the full support instead")
    if fn is None:
        return lambda fn: config_enumerate(fn, default=default, expand=expand)

    def config_fn(site):
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("_subsample"):
            return {}
        if not getattr(site["fn"], "has_enumerate_support", False):
            return {}
        infer = site["infer"]
        return {"enumerate": infer.get("enumerate", default), "expand": infer.get("expand", expand)}

    return infer_config(fn, config_fn)


def _enumerated_logits_to_log_prob(logits, dim, lead=0):
    """Log-probabilities of ``arange(K)`` laid along ``dim`` (a negative batch dim):
    the normalised ``logits`` (``lead`` stacking dims + batch + (K,)) with the
    category dim moved there."""
    batch = logits.dim() - 1 - lead
    if -dim > batch:
        lp = logits.movedim(-1, lead)
        shape = lp.shape
        return lp.reshape(shape[:lead + 1] + (1,) * (-1 - dim - batch) + shape[lead + 1:])
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


_BROADCAST = {}


def _broadcast_shape(a, b):
    key = (a, b)
    shape = _BROADCAST.get(key)
    if shape is None:
        if len(_BROADCAST) > 4096:
            _BROADCAST.clear()
        shape = _BROADCAST[key] = torch.broadcast_shapes(a, b)
    return shape


_CLASS_PARAMS = {}  # distribution class -> parameter names; () when not grouped
_ENUM_SHAPES = {}  # (logits shape, enumeration dim) -> log-density shape


def _class_params(cls):
    names = _CLASS_PARAMS.get(cls)
    if names is None:
        base = cls if cls in _STACKABLE else cls.__mro__[1]
        names = _STACKABLE.get(base, ())
        # A subclass that computes differently is evaluated on its own.
        if cls is not base and ("log_prob" in cls.__dict__ or "__init__" in cls.__dict__):
            names = ()
        _CLASS_PARAMS[cls] = names
    return names


def _enum_shape(shape, dim):
    key = (shape, dim)
    found = _ENUM_SHAPES.get(key)
    if found is None:
        if len(_ENUM_SHAPES) > 4096:
            _ENUM_SHAPES.clear()
        batch, size = shape[:-1], shape[-1]
        if -dim > len(batch):
            found = (size,) + (1,) * (-1 - dim - len(batch)) + batch
        else:
            found = batch[:len(batch) + dim] + (size,) + batch[len(batch) + dim + 1:]
        _ENUM_SHAPES[key] = found = torch.Size(found)
    return found


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
        if "logits" in params:
            t, kind = params["logits"], "logits"
        else:
            t, kind = params["probs"], "probs"
        dim = infer["_enumerate_dim"]
        shape = _enum_shape(t.shape, dim)
        t = _unexpand(t)
        return ("enum", kind, t.shape, t.dtype, t.device, dim, shape), (t,)
    cls = type(fn)
    names = _class_params(cls)
    if not names or fn._validate_args or not isinstance(value, torch.Tensor):
        # (A validating distribution checks its value's support in log_prob.)
        return None
    tensors = [_unexpand(params[n]) for n in names]
    tensors.append(value)
    key = (cls, tuple(t.shape for t in tensors), value.dtype, tensors[0].dtype, value.device,
           _broadcast_shape(fn.batch_shape, value.shape))
    return key, tensors


def _grouped_log_probs(key, members):
    """Log-densities of same-key sites from one batched evaluation (a stack along
    a new leading dim, unless there is a single site)."""
    n = len(members)
    if n == 1:
        stacked, lead = list(members[0][1]), 0
    else:
        stacked, lead = [torch.stack(c) for c in zip(*(tensors for _, tensors in members))], 1
    if key[0] == "enum":
        kind, dim = key[1], key[5]
        t = stacked[0]
        if kind == "probs":
            eps = torch.finfo(t.dtype).eps
            t = t.clamp(min=eps, max=1 - eps).log()
        lp = _enumerated_logits_to_log_prob(t, dim, lead=lead)
    else:
        if lead:
            # Right-align parameters and value behind the stacking dim.
            rank = max(len(shape) for shape in key[1])
            stacked = [
                t if len(shape) == rank else t.reshape((n,) + (1,) * (rank - len(shape)) + shape)
                for t, shape in zip(stacked, key[1])
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
        for (site, _), lp in zip(members, _grouped_log_probs(key, members)):
            _store(site, lp)


def _store(site, lp):
    site["unscaled_log_prob"] = lp
    scale, mask = site["scale"], site["mask"]
    if mask is None and type(scale) in (int, float) and scale == 1:
        site["log_prob"] = lp
    else:
        site["log_prob"] = scale_and_mask(lp, scale, mask)


class Symbols:
    """Stable one-character names for plates (by name) and enumeration ids."""

    def __init__(self):
        self._table = {}
        self._enum = {}  # enumeration id -> symbol (a fast path into _table)
        self._frames = {}  # cond_indep_stack -> (ordinal, plate dim -> symbol, sizes)

    def __call__(self, key):
        sym = self._table.get(key)
        if sym is None:
            sym = self._table[key] = get_symbol(len(self._table))
        return sym

    def enum(self, id_):
        sym = self._enum.get(id_)
        if sym is None:
            sym = self._enum[id_] = self(("enum", id_))
        return sym

    def plates(self, frames):
        """``(ordinal, {dim: symbol}, {symbol: size})`` of a cond_indep_stack."""
        found = self._frames.get(frames)
        if found is None:
            dims, sizes = {}, {}
            for f in frames:
                if f.dim is not None:
                    s = self(("plate", f.name))
                    dims[f.dim] = s
                    sizes[s] = f.size
            found = self._frames[frames] = (frozenset(sizes), dims, sizes)
        return found


def site_ordinal_and_dims(site, symbols, plate_sizes):
    """A site's ordinal (plate symbols) and its dim -> symbol table."""
    ordinal, plate_dims, sizes = symbols.plates(site["cond_indep_stack"])
    plate_sizes.update(sizes)
    dim_to_symbol = dict(plate_dims)
    enum = symbols.enum
    for d, i in site["infer"].get("_dim_to_id", {}).items():
        dim_to_symbol[d] = enum(i)
    return ordinal, dim_to_symbol


def pack_site(name, site, tensor, dim_to_symbol):
    """Pack a right-aligned batch tensor of ``site`` with an error that names it."""
    shape = tensor.shape
    n = len(shape)
    dims = []
    get = dim_to_symbol.get
    squeeze = False
    for i, size in enumerate(shape):
        if size == 1:
            squeeze = True
            continue
        sym = get(i - n)
        if sym is None:
            plates = ", ".join(
                f"'{f.name}' (dim {f.dim}, size {f.size})"
                for f in site["cond_indep_stack"] if f.dim is not None
            ) or "none"
            raise ValueError(
                f"sample site '{name}': log_prob of shape {tuple(shape)} has size {size} at "
                f"dim {i - n}, which is neither a plate dim nor an enumeration dim "
                f"(plates: {plates}); wrap the site in a plate for that dim, use "
                ".to_event() for event dims, or raise max_plate_nesting if enumeration dims "
                "were placed where plates live"
            )
        dims.append(sym)
    if squeeze:
        tensor = tensor.reshape([size for size in shape if size != 1])
    return Factor(tensor, "".join(dims))


def _common_scale(scales, names):
    first = scales[0]
    for s, name in zip(scales, names):
        if s is not first and not (
            isinstance(s, (int, float)) and isinstance(first, (int, float)) and s == first
        ) and not (isinstance(s, torch.Tensor) and isinstance(first, torch.Tensor)
                   and s.shape == first.shape and bool((s == first).all())):
            raise ValueError(
                f"enumerated sites {names[0]!r} and {name!r} have different scales ({first} "
                f"and {s}); sites coupled by enumeration must share one scale (e.g. do not put "
                "a subsampled plate around only part of an enumerated model)"
            )
    return first


def trace_factors(model_trace, exclude=(), symbols=None):
    """Split a model trace's log-densities into enumerated and plain factors.

    Needs ``compute_log_prob()`` to have run on ``model_trace``.

    :param Trace model_trace: recorded under an ``EnumMessenger``.
    :param exclude: names of sites whose enumeration belongs elsewhere (a
        guide's enumerated sites replayed into the model).
    :param Symbols symbols: shared symbol table (a fresh one when omitted).
    :returns: a dict with ``tree`` (ordinal -> [Factor]) of the sites whose
        log-density involves the model's enumeration dims (unscaled), their
        common ``scale``, ``sum_dims`` (symbols of those dims), ``others`` (a
        list of ``(ordinal, Factor)`` of the remaining scaled log-densities),
        ``plate_sizes``, ``enum_sites`` (name -> symbol) and ``symbols``.
    """
    if symbols is None:
        symbols = Symbols()
    plate_sizes = {}
    tree = OrderedDict()
    sum_dims = set()
    others = []
    enum_sites = OrderedDict()
    scales, scale_names = [], []
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["infer"].get("_subsample"):
            continue
        ordinal, dim_to_symbol = site_ordinal_and_dims(site, symbols, plate_sizes)
        infer = site["infer"]
        enum_dim = infer.get("_enumerate_dim")
        if enum_dim is not None and name not in exclude and not site["is_observed"]:
            sym = dim_to_symbol[enum_dim]
            sum_dims.add(sym)
            enum_sites[name] = sym
        log_prob = site["log_prob"]
        if not isinstance(log_prob, torch.Tensor):
            log_prob = torch.as_tensor(log_prob)
        factor = pack_site(name, site, log_prob, dim_to_symbol)
        if not sum_dims.isdisjoint(factor.dims):
            scale = site["scale"]
            if not (isinstance(scale, (int, float)) and scale == 1):
                factor = pack_site(
                    name, site, scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"]),
                    dim_to_symbol,
                )
            scales.append(scale)
            scale_names.append(name)
            tree.setdefault(ordinal, []).append(factor)
        else:
            others.append((ordinal, factor))
    scale = _common_scale(scales, scale_names) if scales else 1.0
    return {
        "tree": tree, "scale": scale, "sum_dims": sum_dims, "others": others,
        "plate_sizes": plate_sizes, "enum_sites": enum_sites, "symbols": symbols,
    }


def _full_sum(factor, ordinal, plate_sizes):
    total = factor.tensor.sum() if factor.dims else factor.tensor
    missing = 1
    for p in ordinal:
        if p not in factor.dims:
            missing *= plate_sizes[p]
    return total * missing if missing != 1 else total


def log_density_sum_enumerated(model_trace):
    """The log joint density of a trace with its enumerated sites summed out.

    :param Trace model_trace: recorded under an ``EnumMessenger``, with
        :func:`compute_log_probs` (or ``Trace.compute_log_prob``) already run.
    :returns: a scalar tensor, differentiable in the continuous values.
    """
    parts = trace_factors(model_trace)
    total = 0.0
    for ordinal, factor in parts["others"]:
        total = total + _full_sum(factor, ordinal, parts["plate_sizes"])
    if parts["tree"]:
        z = contract_to_tensor(parts["tree"], parts["sum_dims"], parts["plate_sizes"])
        total = total + z * parts["scale"]
    return total


def enumerated_log_density(model, model_args=(), model_kwargs=None, params=None,
                           max_plate_nesting=None):
    """Log joint density of ``model`` at ``params``, discrete sites summed out.

    Sites marked ``infer={"enumerate": "parallel"}`` (see
    :func:`config_enumerate`) are summed out exactly; every other latent site
    takes its value from ``params``.  This is the potential an MCMC kernel
    needs for models that mix continuous and discrete latents.

    :param callable model: the model.
    :param tuple model_args: its positional arguments.
    :param dict model_kwargs: its keyword arguments.
    :param dict params: site name -> value (constrained space) for the
        non-enumerated latent sites.
    :param int max_plate_nesting: number of plate dims the model uses;
        enumeration dims start left of them.  Found by a trial run if omitted.
    :returns: a tuple ``(log_density, trace)``; ``log_density`` is a scalar
        tensor differentiable in ``params``.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    params = {} if params is None else params
    if max_plate_nesting is None:
        with block():
            tr = trace(substitute(model, data=params)).get_trace(*model_args, **model_kwargs)
        max_plate_nesting = max(
            [-f.dim for s in tr.nodes.values() if s["type"] == "sample"
             for f in s["cond_indep_stack"] if f.dim is not None],
            default=0,
        )
    with block(), EnumMessenger(first_available_dim=-1 - max_plate_nesting):
        tr = trace(substitute(model, data=params)).get_trace(*model_args, **model_kwargs)
    for name, site in tr.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name not in params \
                and site["infer"].get("_enumerate_dim") is None \
                and not site["infer"].get("_subsample"):
            raise ValueError(
                f"enumerated_log_density: latent site '{name}' is neither in params nor "
                "enumerated; pass its value or mark it infer={'enumerate': 'parallel'}"
            )
    compute_log_probs(tr)
    return log_density_sum_enumerated(tr), tr
