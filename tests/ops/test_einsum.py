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
