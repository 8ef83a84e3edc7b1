"""Semiring einsum against explicit broadcast-and-reduce, and Vindex against loops."""

import pytest
import torch

from probpl.ops.einsum import einsum
from probpl.ops.indexing import Vindex

EQUATIONS = ["ab,bc->ac", "ab,bc,cd->ad", "abc,bc->a", "a,a->", "ab,cb,b->ac", "ab->ba"]


def reference(equation, operands, reduce):
    lhs, out = equation.split("->")
    letters = sorted(set(lhs.replace(",", "")))
    total = 0.0
    for spec, x in zip(lhs.split(","), operands):
        perm = sorted(range(len(spec)), key=lambda i: letters.index(spec[i]))
        x = x.permute(perm)
        shape = [x.shape[sorted(spec, key=letters.index).index(c)] if c in spec else 1
                 for c in letters]
        total = total + x.reshape(shape)
    summed = [i for i, c in enumerate(letters) if c not in out]
    if summed:
        total = reduce(total, summed)
    kept = [c for c in letters if c in out]
    return total.permute([kept.index(c) for c in out])


@pytest.mark.parametrize("equation", EQUATIONS)
@pytest.mark.parametrize("backend", ["log", "max", "pyro.ops.einsum.torch_log"])
def test_einsum_matches_reference(equation, backend):
    torch.manual_seed(0)
    sizes = dict(zip("abcd", (2, 3, 4, 5)))
    lhs = equation.split("->")[0]
    operands = [torch.randn([sizes[c] for c in s], dtype=torch.float64) for s in lhs.split(",")]
    reduce = torch.logsumexp if backend != "max" else torch.amax
    actual = einsum(equation, *operands, backend=backend)
    expected = reference(equation, operands, reduce)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected)


def test_einsum_torch_backend_and_errors():
    x, y = torch.randn(2, 3), torch.randn(3, 4)
    assert torch.allclose(einsum("ab,bc->ac", x, y, backend="torch"), x @ y)
    with pytest.raises(ValueError, match="backend"):
        einsum("ab,bc->ac", x, y, backend="nope")
    with pytest.raises(ValueError, match="expects 3 dims"):
        einsum("abc,bc->a", x, y)


def test_vindex_matches_loops():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4)
    i = torch.randint(0, 3, (5, 1))
    j = torch.randint(0, 4, (5, 2))
    out = Vindex(x)[..., i, j]
    assert out.shape == (5, 2)
    for e in range(5):
        for b in range(2):
            assert out[e, b] == x[b, i[e, 0], j[e, b]]
    out = Vindex(x)[..., i, :]
    assert out.shape == (5, 2, 4)
    for e in range(5):
        for b in range(2):
            assert torch.equal(out[e, b], x[b, i[e, 0]])
    out = Vindex(x)[torch.tensor([1, 0]), 2, j]
    assert out.shape == (5, 2)
    for e in range(5):
        assert out[e, 0] == x[1, 2, j[e, 0]] and out[e, 1] == x[0, 2, j[e, 1]]


@pytest.mark.parametrize("k,n", [(1, 6), (2, 8), (2, 9), (3, 10), (3, 11)])
def test_chain_stack_of_batched_slices_matches_torch_stack(k, n):
    from probpl.ops.einsum.engine import _stack

    torch.manual_seed(0)
    # Member i is row i // k of batch i % k, viewed without its singleton dim,
    # as the per-step log-densities of a chain computed in k batches are.
    leaves = [torch.randn(-(-n // k), 3, 1, 4, dtype=torch.float64, requires_grad=True)
              for _ in range(k)]
    batches = [2.0 * leaf for leaf in leaves]
    rows = [b.unbind(0) for b in batches]
    members = [rows[i % k][i // k].reshape(3, 4) for i in range(n)]
    got = _stack(members)
    if k == 1:
        assert got._base is batches[0]  # a view of the batch, not a copy of the members
    expected = torch.stack(members)
    assert torch.equal(got, expected)
    w = torch.randn(expected.shape, dtype=torch.float64)
    g_got = torch.autograd.grad((got * w).sum(), leaves, retain_graph=True)
    g_exp = torch.autograd.grad((expected * w).sum(), leaves)
    for a, b in zip(g_got, g_exp):
        assert torch.equal(a, b)


def test_chain_stack_falls_back_when_slices_do_not_line_up():
    from probpl.ops.einsum.engine import _stack

    base = torch.randn(6, 3, 3, dtype=torch.float64)
    rows = list(base.unbind(0))
    cases = [
        [rows[0], rows[2], rows[1], rows[3]],  # out of order
        [rows[0], rows[1], rows[1], rows[2]],  # repeated
        [rows[0], rows[1].t(), rows[2], rows[3]],  # same shape, other strides
        [rows[0], rows[1], rows[2], torch.randn(3, 3, dtype=torch.float64)],  # no common base
    ]
    for members in cases:
        assert torch.equal(_stack(members), torch.stack(members))
