"""Planned semiring contractions of named log-space tensors.

A :class:`Program` is a straight-line list of tensor instructions over a
register file, built symbolically (from dim names and sizes only) and then run
any number of times on fresh tensors.  Three instructions suffice for
variable elimination in log space:

- ``PAIR``: the semiring product of two factors (a broadcast sum of log
  values), optionally followed by a semiring sum over some dims;
- ``REDUCE``: a semiring sum over dims of one factor;
- ``PLATE``: a product over plate dims (a plain sum of log values, scaled by
  the size of plates along which the factor is constant);
- ``CHAIN``: the elimination of every variable of a markov chain at once.  The
  factors of each step are stacked into one tensor of transition matrices and
  multiplied in log space by a parallel (tree-shaped) scan: a few batched
  kernels and a few autograd nodes for the whole chain instead of a handful
  per step.

The semiring sum is ``logsumexp`` under the ``"log"`` ring and ``amax`` under
the ``"max"`` ring.  Small pairwise contractions broadcast and reduce (two
kernels); large log-ring ones shift by a max, exponentiate and call
``torch.einsum`` so that the broadcast product is never materialised.

Pairwise orders come from :func:`opt_einsum.contract_path`.
"""

from collections import namedtuple
from itertools import repeat
from operator import is_

import opt_einsum
import torch

Factor = namedtuple("Factor", ["tensor", "dims"])
Factor.__doc__ = """A tensor with one single-character symbol per dim in ``dims``."""

PAIR, REDUCE, PLATE, CHAIN = 0, 1, 2, 3

# Broadcast products above this many elements use the exp-einsum-log kernel.
BROADCAST_LIMIT = 1 << 18

# A markov chain is eliminated by a parallel scan when it has at least this many
# variables and the first level of the scan stays under BROADCAST_LIMIT * 4 elements.
CHAIN_MIN_LENGTH = 4


class Program:
    """A growing instruction list over registers holding named tensors.

    :param int num_inputs: number of input registers.
    :param list input_dims: dims string of each input.
    :param dict sizes: symbol -> size.
    :param str ring: ``"log"`` or ``"max"``.
    """

    def __init__(self, input_dims, sizes, ring):
        if ring not in ("log", "max"):
            raise ValueError(f"unknown ring {ring!r}; expected 'log' or 'max'")
        self.ring = ring
        self.sizes = sizes
        self.dims = list(input_dims)
        self.num_inputs = len(self.dims)
        self.instructions = []

    def _new(self, dims):
        self.dims.append(dims)
        return len(self.dims) - 1

    def reduce(self, a, elim, ordinal=frozenset()):
        """Semiring-sum register ``a`` over the symbols in ``elim``."""
        dims = self.dims[a]
        elim = "".join(d for d in dims if d in elim)
        if not elim:
            return a
        red = tuple(dims.index(d) for d in elim)
        out = self._new("".join(d for d in dims if d not in elim))
        self.instructions.append((REDUCE, a, out, red, dims, elim, ordinal))
        return out

    def pair(self, a, b, elim, ordinal=frozenset()):
        """Semiring product of registers ``a`` and ``b``, then sum ``elim``."""
        adims, bdims = self.dims[a], self.dims[b]
        if len(bdims) > len(adims):
            a, b, adims, bdims = b, a, bdims, adims
        new = "".join(d for d in bdims if d not in adims)
        udims = adims + new
        elim = "".join(d for d in udims if d in elim)
        sizes = self.sizes
        a_shape = None
        if new:
            a_shape = tuple(sizes[d] for d in adims) + (1,) * len(new)
        b_perm = [bdims.index(d) for d in udims if d in bdims]
        b_perm = None if b_perm == list(range(len(bdims))) else tuple(b_perm)
        b_shape = tuple(sizes[d] if d in bdims else 1 for d in udims)
        if len(b_shape) == len(bdims):
            b_shape = None
        red = tuple(udims.index(d) for d in elim)
        out_dims = "".join(d for d in udims if d not in elim)
        numel = 1
        for d in udims:
            numel *= sizes[d]
        equation = None
        if self.ring == "log" and elim and numel > BROADCAST_LIMIT:
            equation = _letters_equation(adims, bdims, out_dims)
        out = self._new(out_dims)
        self.instructions.append(
            (PAIR, a, b, out, a_shape, b_perm, b_shape, red, udims, elim, ordinal, equation)
        )
        return out

    def plate(self, a, plates, multiplier):
        """Product over ``plates``: sum those present, scale for the others."""
        dims = self.dims[a]
        red = tuple(dims.index(d) for d in dims if d in plates)
        if not red and multiplier == 1:
            return a
        out = self._new("".join(d for d in dims if d not in plates))
        self.instructions.append((PLATE, a, out, red, multiplier))
        return out

    def chain(self, regs, order, plates, ordinal=frozenset()):
        """Eliminate the chain variables ``order`` (symbols ``v_0 ... v_{n-1}``)
        from registers ``regs``, each holding one or two consecutive variables
        plus plate symbols from ``plates``; the result is named by ``plates``.

        Factors are put in step slots: those on ``v_0`` alone make the initial
        factor; those on ``v_t`` (and possibly ``v_{t-1}``) make the step-``t``
        transition, laid out ``(v_{t-1}, v_t) + plates``.  Factors with the same
        layout are stacked together at run time.
        """
        sizes = self.sizes
        pos = {v: i for i, v in enumerate(order)}
        size = sizes[order[0]]
        plate_shape = tuple(sizes[p] for p in plates)
        init, groups = [], {}
        for r in regs:
            dims = self.dims[r]
            slot = max(pos[d] for d in dims if d in pos)
            if slot == 0:
                target = order[0] + plates
                kind = "init"
            elif order[slot - 1] in dims:
                target = order[slot - 1] + order[slot] + plates
                kind = "pair"
            else:
                target = order[slot] + plates
                kind = "unary"
            perm = tuple(dims.index(d) for d in target if d in dims)
            shape = tuple(sizes[d] if d in dims else 1 for d in target)
            if kind == "init":
                init.append((r, perm, shape))
            else:
                key = (kind, perm, tuple(sizes[d] for d in dims), shape)
                groups.setdefault(key, []).append((slot, r))
        steps = []
        for (kind, perm, _, shape), members in groups.items():
            slots = [slot for slot, _ in members]
            in_order = slots == list(range(1, len(order)))
            if kind == "unary":
                shape = (1,) + shape
            steps.append((tuple(r for _, r in members), perm, shape, slots, in_order))
        out = self._new(plates)
        self.instructions.append(
            (CHAIN, tuple(init), steps, out, len(order), size, plate_shape, {})
        )
        return out

    def sumproduct(self, regs, elim, ordinal=frozenset()):
        """Contract registers ``regs`` along an opt-einsum path, summing ``elim``."""
        if len(regs) == 1:
            return self.reduce(regs[0], elim, ordinal)
        all_dims = []
        for r in regs:
            for d in self.dims[r]:
                if d not in all_dims:
                    all_dims.append(d)
        output = "".join(d for d in all_dims if d not in elim)
        if len(regs) == 2:
            return self.pair(regs[0], regs[1], elim, ordinal)
        path = _contract_path([self.dims[r] for r in regs], output, self.sizes)
        pending = list(regs)
        for step in path:
            chosen = [pending[i] for i in step]
            for i in sorted(step, reverse=True):
                del pending[i]
            keep = set(output)
            for r in pending:
                keep.update(self.dims[r])
            for k, r in enumerate(chosen[1:]):
                later = set(keep)
                for r2 in chosen[k + 2:]:
                    later.update(self.dims[r2])
                dims = set(self.dims[chosen[0]]) | set(self.dims[r])
                chosen[0] = self.pair(chosen[0], r, dims - later, ordinal)
            if len(chosen) == 1:
                chosen[0] = self.reduce(chosen[0], set(self.dims[chosen[0]]) - keep, ordinal)
            pending.append(chosen[0])
        (result,) = pending
        return result


def _letters_equation(adims, bdims, out_dims):
    letters = {}
    for d in adims + bdims:
        if d not in letters:
            letters[d] = opt_einsum.get_symbol(len(letters))
    tr = lambda s: "".join(letters[d] for d in s)
    return f"{tr(adims)},{tr(bdims)}->{tr(out_dims)}"


_PATH_CACHE = {}


def _contract_path(inputs, output, sizes):
    key = (tuple(inputs), output, tuple(sizes[d] for s in inputs for d in s))
    path = _PATH_CACHE.get(key)
    if path is None:
        # opt_einsum's symbol set is large but rejects some characters; rename.
        letters = {}
        for s in inputs:
            for d in s:
                letters.setdefault(d, opt_einsum.get_symbol(len(letters)))
        eq = ",".join("".join(letters[d] for d in s) for s in inputs)
        eq += "->" + "".join(letters[d] for d in output)
        shapes = [tuple(sizes[d] for d in s) for s in inputs]
        path, _ = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize="auto")
        _PATH_CACHE[key] = path = [tuple(step) for step in path]
    return path


def _safe_shift(x, red):
    shift = x.detach().amax(dim=red, keepdim=True)
    return shift.masked_fill(~torch.isfinite(shift), 0.0)


def run(program, tensors, records=None):
    """Run ``program`` on input ``tensors``; returns the register file.

    When ``records`` is a list, every elimination appends
    ``(joint, dims, elim, ordinal)`` with the joint factor before its sum.
    """
    regs = list(tensors)
    regs.extend([None] * (len(program.dims) - len(regs)))
    semiring_sum = torch.logsumexp if program.ring == "log" else torch.amax
    for ins in program.instructions:
        op = ins[0]
        if op == PAIR:
            _, a, b, out, a_shape, b_perm, b_shape, red, udims, elim, ordinal, eq = ins
            x, y = regs[a], regs[b]
            if eq is not None and records is None:
                regs[out] = _pair_einsum(eq, x, y)
                continue
            if a_shape is not None:
                x = x.reshape(a_shape)
            if b_perm is not None:
                y = y.permute(b_perm)
            if b_shape is not None:
                y = y.reshape(b_shape)
            z = x + y
            if red:
                if records is not None:
                    records.append((z, udims, elim, ordinal))
                z = semiring_sum(z, red)
            regs[out] = z
        elif op == REDUCE:
            _, a, out, red, dims, elim, ordinal = ins
            if records is not None:
                records.append((regs[a], dims, elim, ordinal))
            regs[out] = semiring_sum(regs[a], red)
        elif op == PLATE:
            _, a, out, red, multiplier = ins
            z = regs[a].sum(red) if red else regs[a]
            regs[out] = z * multiplier if multiplier != 1 else z
        else:
            regs[ins[3]] = _run_chain(ins, regs, program.ring)
    return regs


def _canonical(t, perm, shape, lead=0):
    if perm != tuple(range(len(perm))):
        t = t.permute(tuple(range(lead)) + tuple(lead + i for i in perm))
    if t.shape[lead:] != shape:
        t = t.reshape(t.shape[:lead] + shape)
    return t


def _stack(tensors):
    """``torch.stack(tensors)``, or a view when the tensors are evenly spaced
    slices of one batch (or of a few interleaved ones), as the per-step
    log-densities of a chain computed in batches are: the per-step slices, and
    a second copy of their values, then stay out of the autograd graph."""
    if len(tensors) == 1:
        return tensors[0].unsqueeze(0)
    x = _as_slices(tensors) if len(tensors) >= 4 and tensors[0]._base is not None else None
    return torch.stack(tensors) if x is None else x


def _as_slices(tensors):
    bases = [t._base for t in tensors]
    first = bases[0]
    k = 1
    while k < len(bases) and bases[k] is not first:
        k += 1
    if k > 4 or 2 * k > len(bases):
        return None
    stride = tensors[0].stride()
    strides = [t.stride() for t in tensors]
    if strides.count(stride) != len(strides):
        return None
    shape = tensors[0].shape
    views = []
    for j in range(k):
        base = bases[j]
        if base is None or base.dtype != tensors[0].dtype \
                or not all(map(is_, bases[j::k], repeat(base))):
            return None
        offsets = [t.storage_offset() for t in tensors[j::k]]
        step = offsets[1] - offsets[0]
        if step <= 0 or offsets != list(range(offsets[0], offsets[0] + step * len(offsets), step)):
            return None
        views.append(base.as_strided((len(offsets),) + shape, (step,) + stride, offsets[0]))
    if k == 1:
        return views[0]
    full = views[-1].shape[0]
    x = torch.stack([v[:full] for v in views], 1).reshape((full * k,) + shape)
    if full * k < len(tensors):
        x = torch.cat([x, torch.stack(tensors[full * k:])])
    return x


def _run_chain(ins, regs, ring):
    _, init, steps, _, length, size, plate_shape, index_cache = ins
    full = (length - 1, size, size) + plate_shape
    trans = None
    for members, perm, shape, slots, in_order in steps:
        tensors = [regs[r] for r in members]
        x = _canonical(_stack(tensors), perm, shape, lead=1)
        if in_order:
            trans = x if trans is None else trans + x
            continue
        if trans is None:
            trans = x.new_zeros(())
        elif trans.dtype != x.dtype:
            dtype = torch.promote_types(trans.dtype, x.dtype)
            trans, x = trans.to(dtype), x.to(dtype)
        trans = trans.expand(full) if trans.shape != full else trans
        key = (id(members), x.device)
        index = index_cache.get(key)
        if index is None:
            index = index_cache[key] = torch.tensor([s - 1 for s in slots], device=x.device)
        trans = trans.index_add(0, index, x.expand((len(slots),) + full[1:]))
    if trans.shape != full:
        trans = trans.expand(full)
    semiring_sum = torch.logsumexp if ring == "log" else torch.amax
    # Parallel scan: multiply neighbouring transition matrices, level by level.
    while trans.shape[0] > 1:
        m = trans.shape[0]
        h = m // 2
        left = trans[0:2 * h:2].unsqueeze(3)
        right = trans[1:2 * h:2].unsqueeze(1)
        paired = semiring_sum(left + right, 2)
        trans = torch.cat([paired, trans[2 * h:]]) if m % 2 else paired
    trans = trans[0]
    first = None
    for r, perm, shape in init:
        x = _canonical(regs[r], perm, shape)
        first = x if first is None else first + x
    if first is not None:
        trans = trans + first.unsqueeze(1)
    return semiring_sum(trans, (0, 1))


def _pair_einsum(equation, x, y):
    lhs, out = equation.split("->")
    operands, shifts = [], []
    for t, letters in zip((x, y), lhs.split(",")):
        red = tuple(i for i, c in enumerate(letters) if c not in out)
        if red:
            shift = _safe_shift(t, red)
            t = t - shift
            kept = "".join(c for c in letters if c in out)
            shifts.append(_expand_to(shift.reshape([t.shape[i] for i, c in enumerate(letters)
                                                    if c in out]), kept, out))
        operands.append(t.exp())
    z = torch.einsum(equation, *operands).log()
    for shift in shifts:
        z = z + shift
    return z


def _expand_to(t, dims, out):
    perm = [dims.index(c) for c in out if c in dims]
    t = t.permute(perm)
    shape = []
    it = iter(t.shape)
    for c in out:
        shape.append(next(it) if c in dims else 1)
    return t.reshape(shape)
