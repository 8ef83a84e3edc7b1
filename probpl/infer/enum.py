"""Exact enumeration of discrete latent sites: configuration and log-densities.

:func:`config_enumerate` marks a model's discrete sites for enumeration.
:func:`trace_factors` turns a trace recorded under
:class:`~probpl.poutine.enum_messenger.EnumMessenger` into packed factors
(:mod:`probpl.ops.contract`), naming each plate and each enumeration dim by a
symbol; their log-densities come from :func:`compute_log_probs`
(:mod:`probpl.infer.enum_log_prob`). :func:`log_density_sum_enumerated` and
:func:`enumerated_log_density` give the log joint density of a model with its
enumerated sites summed out, which is what an MCMC potential needs when a model
mixes continuous latents with discrete ones.
"""

from collections import OrderedDict

import torch

from probpl.distributions.util import scale_and_mask
from probpl.infer.enum_log_prob import compute_log_probs
from probpl.ops.contract import Factor, contract_to_tensor, get_symbol
from probpl.poutine.enum_messenger import EnumMessenger
from probpl.poutine.handlers import block, infer_config, substitute, trace

__all__ = [
    "compute_log_probs",
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


class Symbols:
    """Stable one-character names for plates (by name) and enumeration ids."""

    def __init__(self):
        self._table = {}
        self._enum = {}  # enumeration id -> symbol (a fast path into _table)
        self._frames = {}  # cond_indep_stack -> (ordinal, plate dim -> symbol, sizes)
        # (cond_indep_stack, enumeration dims and ids, shape) -> how to pack a
        # site's log-density: the same at every step of an inference loop.
        self._packs = {}

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

    def pack(self, name, site, tensor):
        """``(ordinal, Factor, plate sizes)`` of a site's right-aligned batch
        ``tensor`` (see :func:`pack_site`), the work remembered per layout."""
        frames = site["cond_indep_stack"]
        dim_to_id = site["infer"].get("_dim_to_id")
        shape = tensor.shape
        key = (frames, tuple(dim_to_id.items()) if dim_to_id else (), shape)
        found = self._packs.get(key)
        if found is None:
            ordinal, plate_dims, sizes = self.plates(frames)
            dim_to_symbol = dict(plate_dims)
            for d, i in key[1]:
                dim_to_symbol[d] = self.enum(i)
            factor = pack_site(name, site, tensor, dim_to_symbol)
            squeezed = factor.tensor.shape if factor.tensor.shape != shape else None
            if len(self._packs) > 65536:
                self._packs.clear()
            found = self._packs[key] = (ordinal, factor.dims, squeezed, sizes)
            return ordinal, factor, sizes
        ordinal, dims, squeezed, sizes = found
        if squeezed is not None:
            tensor = tensor.reshape(squeezed)
        return ordinal, Factor(tensor, dims), sizes


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
    last_sizes = None
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        infer = site["infer"]
        if infer.get("_subsample"):
            continue
        log_prob = site["log_prob"]
        if not isinstance(log_prob, torch.Tensor):
            log_prob = torch.as_tensor(log_prob)
        ordinal, factor, sizes = symbols.pack(name, site, log_prob)
        if sizes is not last_sizes:
            plate_sizes.update(sizes)
            last_sizes = sizes
        enum_dim = infer.get("_enumerate_dim")
        if enum_dim is not None and name not in exclude and not site["is_observed"]:
            sym = symbols.enum(infer["_dim_to_id"][enum_dim])
            sum_dims.add(sym)
            enum_sites[name] = sym
        if not sum_dims.isdisjoint(factor.dims):
            scale = site["scale"]
            if not (isinstance(scale, (int, float)) and scale == 1):
                factor = symbols.pack(
                    name, site, scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
                )[1]
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
