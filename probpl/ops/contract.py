"""Sum-product contraction of log-space factors that live in plates.

A model with enumerated discrete variables yields a set of factor tensors.  Each
factor is *packed*: a tensor together with a string naming each of its dims by a
one-character symbol.  Some symbols are *sum dims* (enumerated variables, to be
eliminated by log-sum-exp or max) and the others are *plate dims* (conditionally
independent copies, to be eliminated by a product, i.e. a sum in log space).  A
factor's *ordinal* is the frozenset of plates it lives in; a factor may lack a
plate dim of its ordinal when it is constant along that plate.

:func:`contract_tensor_tree` eliminates the sum dims by variable elimination on
this plated factor graph, working from the innermost plates outwards: at each
leaf ordinal it sums out the variables local to that ordinal (along an
opt-einsum contraction path), then multiplies out the plates its parent lacks.
Elimination along a markov chain is pairwise, so memory stays linear in the
chain length.  A connected group of factors that forms a plain chain (each
factor on one variable or two neighbours, all in one ordinal, e.g. the steps of
a ``markov`` loop) is instead eliminated in one go: its per-step factors are
stacked and multiplied by a parallel scan (see
:mod:`probpl.ops.einsum.engine`), a few batched kernels rather than a few per
step, forward and backward.  The work is first planned symbolically and the
plan is cached per trace structure, so that repeated contractions do little
Python work.

A plan can also run in *recording* mode, keeping each elimination's joint
factor so that :func:`sample_tensor_tree` can draw the eliminated variables
backwards (forward-filter backward-sample), or take their argmax under the max
semiring (Viterbi).

References

1. Obermeyer, Bingham, Jankowiak, Chiu, Pradhan, Rush, Goodman (2019),
   "Tensor Variable Elimination for Plated Factor Graphs".
2. Koller and Friedman (2009), "Probabilistic Graphical Models", ch. 9 and 13.
"""

from collections import OrderedDict

import opt_einsum
import torch

from probpl.ops.einsum.engine import (
    BROADCAST_LIMIT,
    CHAIN_MIN_LENGTH,
    Factor,
    Program,
    run,
)

__all__ = [
    "Factor",
    "pack",
    "contract_tensor_tree",
    "contract_to_tensor",
    "sample_tensor_tree",
    "get_symbol",
]


def get_symbol(i):
    """The ``i``-th einsum symbol (a single unicode character)."""
    return opt_einsum.get_symbol(i)


def pack(tensor, dim_to_symbol, name="factor"):
    """Name the non-singleton dims of a right-aligned ``tensor``.

    :param torch.Tensor tensor: a tensor whose dims are counted from the right
        (plate and enumeration dims, no event dims).
    :param dict dim_to_symbol: negative dim -> symbol.
    :param str name: used in error messages.
    :returns: a :class:`Factor` holding a view of ``tensor`` without its
        singleton dims.
    """
    shape = tensor.shape
    n = len(shape)
    dims = []
    sizes = []
    for i, size in enumerate(shape):
        if size != 1:
            dim = i - n
            symbol = dim_to_symbol.get(dim)
            if symbol is None:
                raise ValueError(
                    f"{name}: tensor of shape {tuple(shape)} has size {size} at dim {dim}, "
                    "which is neither a plate dim nor an enumeration dim. Declare the batch "
                    "dim with a plate, or use .to_event() for event dims."
                )
            dims.append(symbol)
            sizes.append(size)
    if len(sizes) != n:
        tensor = tensor.reshape(sizes)
    return Factor(tensor, "".join(dims))


def _partition(terms, sum_dims):
    """Split ``terms`` into groups that are connected through ``sum_dims``."""
    parent = list(range(len(terms)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = {}
    for i, term in enumerate(terms):
        for d in term.dims:
            if d in sum_dims:
                j = owner.setdefault(d, i)
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups = OrderedDict()
    for i in range(len(terms)):
        groups.setdefault(find(i), []).append(i)
    result = []
    for idx in groups.values():
        dims = {d for i in idx for d in terms[i].dims if d in sum_dims}
        result.append((idx, dims))
    return result


class _Plan:
    """A cached :class:`~probpl.ops.einsum.engine.Program` for one tree structure."""

    def __init__(self, program, outputs, plate_sizes):
        self.program = program
        self.outputs = outputs  # list of (register, ordinal, dims, multiplier)
        self.plate_sizes = plate_sizes


def _leaf_key(ordinal):
    return (len(ordinal), tuple(sorted(ordinal)))


def _build_plan(spec, sum_dims, plate_sizes, ring, allow_chain=True):
    """Plan the contraction of ``spec``: a list of (ordinal, [(dims, shape)])."""
    input_dims, ordinals, sizes = [], [], dict(plate_sizes)
    all_plates = frozenset().union(*(ordinal for ordinal, _ in spec))
    for ordinal, terms in spec:
        for dims, shape in terms:
            for d, n in zip(dims, shape):
                if sizes.setdefault(d, n) != n:
                    raise ValueError(
                        f"dim {d!r} has size {n} in one factor and {sizes[d]} in another"
                    )
                if d not in sum_dims and d in all_plates and d not in ordinal:
                    raise ValueError(
                        f"factor with dims {dims!r} and shape {tuple(shape)} has a dim {d!r} "
                        f"from a plate outside its ordinal {sorted(ordinal)}"
                    )
            input_dims.append(dims)
            ordinals.append(ordinal)
    program = Program(input_dims, sizes, ring)
    terms = [Factor(None, dims) for dims in input_dims]
    outputs = []
    for idx, dims in _partition(terms, sum_dims):
        tree = OrderedDict()
        for i in idx:
            tree.setdefault(ordinals[i], []).append(i)
        chain = _find_chain(input_dims, idx, dims, sizes) if allow_chain and len(tree) == 1 \
            else None
        if chain is not None:
            order, plates = chain
            (ordinal,) = tree
            planned = [(ordinal, program.chain(idx, order, plates, ordinal))]
        else:
            planned = _plan_component(program, tree, dims)
        for ordinal, reg in planned:
            dims_out = program.dims[reg]
            multiplier = 1
            for p in ordinal:
                if p not in dims_out:
                    multiplier *= _plate_size(sizes, p)
            outputs.append((reg, ordinal, dims_out, multiplier))
    return _Plan(program, outputs, {p: n for p, n in sizes.items() if p not in sum_dims})


def _find_chain(input_dims, idx, sum_dims, sizes):
    """``(order, plates)`` when the factors ``idx`` (all in one ordinal) form a
    markov chain over ``sum_dims``: each factor holds one variable or two
    neighbours of the path ``order``, every variable has the same size, and the
    other dims are ``plates``.  ``None`` otherwise."""
    n = len(sum_dims)
    if n < CHAIN_MIN_LENGTH:
        return None
    size = None
    neighbours = {d: set() for d in sum_dims}
    plates = []
    for i in idx:
        local = [d for d in input_dims[i] if d in sum_dims]
        if len(local) > 2:
            return None
        if len(local) == 2:
            a, b = local
            neighbours[a].add(b)
            neighbours[b].add(a)
        for d in input_dims[i]:
            if d in sum_dims:
                if size is None:
                    size = sizes[d]
                elif sizes[d] != size:
                    return None
            elif d not in plates:
                plates.append(d)
    ends = [d for d, nb in neighbours.items() if len(nb) == 1]
    if len(ends) != 2 or any(len(nb) > 2 for nb in neighbours.values()):
        return None
    # Start from the end that appears first among the factors.
    first_seen = {}
    for i in idx:
        for d in input_dims[i]:
            first_seen.setdefault(d, len(first_seen))
    start = min(ends, key=first_seen.__getitem__)
    order, prev = [start], None
    while len(order) < n:
        nxt = [d for d in neighbours[order[-1]] if d != prev]
        if len(nxt) != 1:
            return None  # a cycle, or a variable that is not on the path
        prev = order[-1]
        order.append(nxt[0])
    numel = (n - 1) // 2 * size ** 3
    for p in plates:
        numel *= sizes[p]
    if numel > 4 * BROADCAST_LIMIT:
        return None
    return "".join(order), "".join(plates)


def _plate_size(sizes, p):
    try:
        return sizes[p]
    except KeyError:
        raise ValueError(
            f"plate {p!r} appears in an ordinal but in no factor's tensor; pass its size in "
            "plate_sizes"
        ) from None


def _plan_component(program, tree, sum_dims):
    """Plan variable elimination for one connected component; innermost plates first."""
    dims_of = program.dims
    dim_ordinal = {}
    for ordinal, regs in tree.items():
        for r in regs:
            for d in dims_of[r]:
                if d in sum_dims:
                    dim_ordinal[d] = dim_ordinal.get(d, ordinal) & ordinal
    dims_at = {}
    for d, ordinal in dim_ordinal.items():
        dims_at.setdefault(ordinal, set()).add(d)
    root = frozenset.intersection(*tree)
    while any(dims_at.values()):
        leaf = max(tree, key=_leaf_key)
        regs = tree.pop(leaf)
        leaf_dims = dims_at.pop(leaf, set())
        terms = [Factor(None, dims_of[r]) for r in regs]
        for idx, dims in _partition(terms, leaf_dims):
            reg = program.sumproduct([regs[i] for i in idx], dims, leaf)
            parent = leaf
            if leaf != root:
                pending = [d for d in dims_of[reg] if d in sum_dims and d not in dims]
                if pending:
                    parent = frozenset().union(*(dim_ordinal[d] for d in pending))
                    if parent == leaf:
                        raise ValueError(
                            "expected tree-structured plates, but variables "
                            f"{sorted(pending)} from independent plates "
                            f"{sorted(leaf)} meet in one factor; make one of those plates "
                            "sequential (at a cost exponential in its size)"
                        )
                    multiplier = 1
                    for p in leaf - parent:
                        if p not in dims_of[reg]:
                            multiplier *= _plate_size(program.sizes, p)
                    reg = program.plate(reg, leaf - parent, multiplier)
            tree.setdefault(parent, []).append(reg)
    return [(ordinal, reg) for ordinal, regs in tree.items() for reg in regs]


_PLAN_CACHE = {}
_PLAN_CACHE_SIZE = 256


def _get_plan(tensor_tree, sum_dims, plate_sizes, ring, allow_chain=True):
    key = (
        ring,
        allow_chain,
        frozenset(sum_dims),
        tuple(sorted(plate_sizes.items())) if plate_sizes else (),
        tuple(
            (t, tuple((term.dims, term.tensor.shape) for term in terms))
            for t, terms in tensor_tree.items()
        ),
    )
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        if len(_PLAN_CACHE) >= _PLAN_CACHE_SIZE:
            _PLAN_CACHE.clear()
        spec = [(t, [(term.dims, tuple(term.tensor.shape)) for term in terms])
                for t, terms in tensor_tree.items()]
        plan = _build_plan(spec, frozenset(sum_dims), dict(plate_sizes or {}), ring, allow_chain)
        _PLAN_CACHE[key] = plan
    return plan


def _flatten(tensor_tree):
    return [term.tensor for terms in tensor_tree.values() for term in terms]


def _run(plan, tensors, total=False, records=None):
    regs = run(plan.program, tensors, records)
    if not total:
        return [regs[reg] for reg, _, _, _ in plan.outputs]
    result = None
    for reg, _, dims, multiplier in plan.outputs:
        t = regs[reg]
        t = t.sum() if dims else t
        if multiplier != 1:
            t = t * multiplier
        result = t if result is None else result + t
    return result


def contract_tensor_tree(tensor_tree, sum_dims, plate_sizes=None, ring="log"):
    """Eliminate ``sum_dims`` from a tree of plated factors.

    :param dict tensor_tree: ordinal (frozenset of plate symbols) -> list of
        :class:`Factor`.
    :param set sum_dims: the symbols of enumerated variables to eliminate.
    :param dict plate_sizes: plate symbol -> size, needed for plates along
        which a factor is constant (missing from its tensor).
    :param str ring: ``"log"`` (log-sum-exp; marginal likelihood) or ``"max"``
        (max-sum; MAP value).
    Dims that are neither in ``sum_dims`` nor plates of any ordinal are kept
    as batch dims of the results.

    :returns: an ordinal -> list of :class:`Factor` dict of the contracted
        terms, each at the smallest ordinal its dependencies allow; a term may
        lack plate dims of its ordinal along which it is constant.
    :raises ValueError: when plates are not tree-structured with respect to
        the variables (a variable shared by factors in two independent plates
        that are otherwise connected).
    """
    plan = _get_plan(tensor_tree, sum_dims, plate_sizes, ring)
    result = OrderedDict()
    for (_, ordinal, dims, _), tensor in zip(plan.outputs, _run(plan, _flatten(tensor_tree))):
        result.setdefault(ordinal, []).append(Factor(tensor, dims))
    return result


def contract_to_tensor(tensor_tree, sum_dims, plate_sizes=None, ring="log"):
    """Eliminate all sum dims and all plates, returning a scalar.

    Under the log ring this is the log normaliser (log marginal likelihood)
    of the product of all factors; under the max ring it is the log of the
    largest unnormalised joint value.
    """
    plan = _get_plan(tensor_tree, sum_dims, plate_sizes, ring)
    return _run(plan, _flatten(tensor_tree), total=True)


def sample_tensor_tree(tensor_tree, sum_dims, plate_sizes=None, temperature=1, generator=None):
    """Draw every variable in ``sum_dims`` from the distribution the factors define.

    With ``temperature=1`` this is forward-filter backward-sample: the forward
    pass runs under the log ring, then each variable is drawn from its
    conditional given the variables eliminated after it.  With
    ``temperature=0`` the forward pass runs under the max ring and each
    variable takes its argmax (the joint MAP assignment, as in Viterbi).

    :returns: a tuple ``(samples, log_z)`` where ``samples`` maps each sum
        symbol to a :class:`Factor` of integer indices whose dims are plate
        symbols (every plate of the variable's ordinal is present), and
        ``log_z`` is the scalar result of the forward pass.
    """
    if temperature not in (0, 1):
        raise ValueError(f"temperature must be 0 or 1, but got {temperature}")
    ring = "max" if temperature == 0 else "log"
    # Backward sampling needs every elimination's joint factor: no chain scans.
    plan = _get_plan(tensor_tree, sum_dims, plate_sizes, ring, allow_chain=False)
    records = []
    with torch.no_grad():
        log_z = _run(plan, _flatten(tensor_tree), total=True, records=records)
        samples = _backward_sample(records, dict(plan.plate_sizes), temperature, generator)
    return samples, log_z


def _align(tensor, dims, target, sizes=None):
    """View ``tensor`` (named by ``dims``) with the dim order of ``target``.

    Missing dims get size 1, or ``sizes[d]`` (expanded, no copy) when given.
    """
    perm = [dims.index(d) for d in target if d in dims]
    if perm != list(range(len(perm))):
        tensor = tensor.permute(perm)
    shape = []
    it = iter(tensor.shape)
    for d in target:
        shape.append(next(it) if d in dims else 1)
    tensor = tensor.reshape(shape)
    if sizes is not None:
        tensor = tensor.expand([sizes[d] for d in target])
    return tensor


def _backward_sample(records, sizes, temperature, generator):
    samples = {}
    for joint, dims, elim, ordinal in reversed(records):
        for d, n in zip(dims, joint.shape):
            sizes[d] = n
        known = [d for d in dims if d in samples]
        batch = [d for d in dims if d not in elim and d not in samples]
        for d in known:
            for b in samples[d].dims:
                if b not in batch:
                    batch.append(b)
        for p in sorted(ordinal):
            if p not in batch and p in sizes:
                batch.append(p)
        batch = "".join(batch)
        # Index the joint factor at the already-drawn values, one dim at a time.
        cur, cur_dims = joint, dims
        for d in known:
            full = "".join(x for x in cur_dims if x != d)
            full = full + "".join(b for b in batch if b not in full)
            target = d + full
            tgt_sizes = {x: sizes[x] for x in full}
            tgt_sizes[d] = sizes[d]
            val = samples[d]
            cur = _align(cur, cur_dims, target, tgt_sizes)
            idx_sizes = dict(tgt_sizes)
            idx_sizes[d] = 1
            idx = _align(val.tensor, val.dims, target, idx_sizes)
            cur = cur.gather(0, idx).squeeze(0)
            cur_dims = full
        out = "".join(b for b in batch) + "".join(elim)
        cur = _align(cur, cur_dims, out, {x: sizes[x] for x in out})
        batch_shape = cur.shape[: len(batch)]
        flat = cur.reshape(batch_shape + (-1,))
        if temperature == 0:
            index = flat.argmax(-1)
        else:
            probs = (flat - flat.logsumexp(-1, keepdim=True)).exp()
            index = torch.multinomial(
                probs.reshape(-1, probs.shape[-1]), 1, generator=generator
            ).reshape(batch_shape)
        elim_sizes = [sizes[d] for d in elim]
        for d, n in reversed(list(zip(elim, elim_sizes))):
            samples[d] = Factor(index % n, batch)
            index = torch.div(index, n, rounding_mode="floor")
    return samples
