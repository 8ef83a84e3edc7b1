"""Einsum over semirings of log-space tensors.

``einsum("ab,bc->ac", x, y, backend="log")`` computes
``log(einsum("ab,bc->ac", exp(x), exp(y)))`` without leaving log space;
``backend="max"`` replaces the sum by a max (max-plus, as in Viterbi).  Pyro's
backend names ``"pyro.ops.einsum.torch_log"`` and ``"pyro.ops.einsum.torch_map"``
are accepted too, and ``"torch"`` falls through to :func:`torch.einsum`.  The
pairwise contraction order comes from opt-einsum and is cached per equation and
shapes.
"""

import torch

from probpl.ops.einsum.engine import Factor, Program, run

__all__ = ["einsum", "contract", "Factor"]

_BACKENDS = {
    "log": "log",
    "torch_log": "log",
    "pyro.ops.einsum.torch_log": "log",
    "probpl.ops.einsum.torch_log": "log",
    "max": "max",
    "map": "max",
    "torch_map": "max",
    "pyro.ops.einsum.torch_map": "max",
    "probpl.ops.einsum.torch_map": "max",
}

_CACHE = {}


def _parse(equation, operands):
    equation = equation.replace(" ", "")
    if "->" in equation:
        lhs, output = equation.split("->")
    else:
        lhs = equation
        counts = {}
        for c in lhs.replace(",", ""):
            counts[c] = counts.get(c, 0) + 1
        output = "".join(sorted(c for c, n in counts.items() if n == 1))
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise ValueError(
            f"einsum equation {equation!r} names {len(inputs)} operands but got {len(operands)}"
        )
    for spec, x in zip(inputs, operands):
        if len(set(spec)) != len(spec):
            raise NotImplementedError(f"repeated dims in one operand {spec!r} are not supported")
        if "." in spec:
            raise NotImplementedError("ellipsis is not supported in semiring einsum")
        if len(spec) != x.dim():
            raise ValueError(
                f"einsum operand {spec!r} expects {len(spec)} dims but has shape {tuple(x.shape)}"
            )
    return inputs, output


def einsum(equation, *operands, backend="log", **kwargs):
    """Semiring einsum of log-space ``operands``.

    :param str equation: an einsum equation (no ellipsis).
    :param operands: tensors, one per input of ``equation``.
    :param str backend: ``"log"`` (log-sum-exp), ``"max"`` (max-plus) or
        ``"torch"`` (plain :func:`torch.einsum`).
    :returns: the contracted tensor, dims in the order of the output spec.

    Example::

        >>> x = torch.randn(2, 3)
        >>> y = torch.randn(3, 4)
        >>> z = einsum("ab,bc->ac", x, y)
        >>> torch.allclose(z, (x.unsqueeze(-1) + y).logsumexp(1))
        True
    """
    if backend in ("torch", "torch.einsum"):
        return torch.einsum(equation, *operands)
    ring = _BACKENDS.get(backend)
    if ring is None:
        raise ValueError(f"unknown einsum backend {backend!r}; expected one of {sorted(_BACKENDS)}")
    inputs, output = _parse(equation, operands)
    shapes = tuple(tuple(x.shape) for x in operands)
    key = (equation, shapes, ring)
    entry = _CACHE.get(key)
    if entry is None:
        sizes = {}
        for spec, shape in zip(inputs, shapes):
            for c, n in zip(spec, shape):
                if sizes.setdefault(c, n) != n and n != 1 and sizes[c] != 1:
                    raise ValueError(f"einsum dim {c!r} has sizes {sizes[c]} and {n}")
                sizes[c] = max(sizes[c], n)
        program = Program(inputs, sizes, ring)
        elim = set("".join(inputs)) - set(output)
        reg = program.sumproduct(list(range(len(inputs))), elim)
        got = program.dims[reg]
        missing = [c for c in output if c not in got]
        if missing:
            raise ValueError(f"einsum output dims {missing} appear in no input")
        perm = tuple(got.index(c) for c in output)
        entry = _CACHE[key] = (program, reg, perm)
    program, reg, perm = entry
    operands = [_squeeze_broadcast(x, spec, program.sizes) for x, spec in zip(operands, inputs)]
    result = run(program, operands)[reg]
    if perm != tuple(range(len(perm))):
        result = result.permute(perm)
    return result


def _squeeze_broadcast(x, spec, sizes):
    if any(n == 1 and sizes[c] != 1 for c, n in zip(spec, x.shape)):
        return x.expand([sizes[c] for c in spec])
    return x


contract = einsum
