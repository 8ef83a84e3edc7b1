"""Plated sum-product contraction against brute-force enumeration."""

import itertools
import math
from collections import Counter, OrderedDict

import pytest
import torch

from probpl.ops.contract import (
    Factor,
    contract_tensor_tree,
    contract_to_tensor,
    pack,
    sample_tensor_tree,
)

# Each case: variables {symbol: (size, ordinal)}, plates {symbol: size},
# factors [(dims, ordinal)].  A variable at ordinal O has one copy per element of O.
CASES = {
    "chain": (
        {"a": (2, ""), "b": (3, ""), "c": (2, "")},
        {},
        [("a", ""), ("ab", ""), ("bc", ""), ("c", "")],
    ),
    "global_and_local": (
        {"a": (2, ""), "b": (3, "i")},
        {"i": 3},
        [("a", ""), ("abi", "i"), ("bi", "i")],
    ),
    "nested": (
        {"a": (2, ""), "b": (2, "i"), "c": (2, "ij")},
        {"i": 2, "j": 2},
        [("a", ""), ("abi", "i"), ("bcij", "ij"), ("cj", "ij")],
    ),
    "two_plates": (
        {"a": (2, ""), "b": (2, "i"), "c": (3, "j")},
        {"i": 3, "j": 2},
        [("a", ""), ("abi", "i"), ("acj", "j"), ("bi", "i")],
    ),
    "broadcast_plate": (
        {"a": (3, ""), "b": (2, "i")},
        {"i": 3},
        [("a", ""), ("ab", "i"), ("i", "i")],
    ),
    "plate_only": ({}, {"i": 4}, [("i", "i"), ("", "i")]),
    "disconnected": (
        {"a": (2, ""), "b": (3, "i")},
        {"i": 2},
        [("a", ""), ("bi", "i"), ("i", "i")],
    ),
}


def random_tree(case, dtype=torch.float64, requires_grad=False):
    variables, plates, factors = CASES[case]
    sizes = {d: n for d, (n, _) in variables.items()}
    sizes.update(plates)
    tree = OrderedDict()
    for dims, ordinal in factors:
        t = torch.randn([sizes[d] for d in dims], dtype=dtype, requires_grad=requires_grad)
        tree.setdefault(frozenset(ordinal), []).append(Factor(t, dims))
    return tree, set(variables), plates


def brute_force(case, tree, semiring="log"):
    """Sum (or max) over every grounded assignment of the unnormalised joint."""
    variables, plates, _ = CASES[case]
    grounded = []
    for v, (n, ordinal) in variables.items():
        for idx in itertools.product(*(range(plates[p]) for p in ordinal)):
            grounded.append((v, dict(zip(ordinal, idx)), n))
    joint = []
    for assignment in itertools.product(*(range(n) for _, _, n in grounded)):
        values = list(zip(grounded, assignment))
        total = 0.0
        for ordinal, terms in tree.items():
            for term in terms:
                for idx in itertools.product(*(range(plates[p]) for p in sorted(ordinal))):
                    where = dict(zip(sorted(ordinal), idx))
                    index = []
                    for d in term.dims:
                        if d in plates:
                            index.append(where[d])
                        else:
                            (val,) = [
                                a for (v, w, _), a in values
                                if v == d and all(where[p] == w[p] for p in w)
                            ]
                            index.append(val)
                    total = total + term.tensor[tuple(index)]
        joint.append((total, assignment, grounded))
    stacked = torch.stack([j[0] for j in joint])
    if semiring == "log":
        return stacked.logsumexp(0), joint
    return stacked.max(0).values, joint


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("ring", ["log", "max"])
def test_contract_to_tensor_matches_brute_force(case, ring):
    torch.manual_seed(0)
    tree, sum_dims, plates = random_tree(case)
    actual = contract_to_tensor(tree, sum_dims, plates, ring=ring)
    expected, _ = brute_force(case, tree, ring)
    assert torch.allclose(actual, expected, atol=1e-10), (actual, expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_contract_tensor_tree_total_matches(case):
    torch.manual_seed(1)
    tree, sum_dims, plates = random_tree(case)
    contracted = contract_tensor_tree(tree, sum_dims, plates)
    total = 0.0
    for ordinal, terms in contracted.items():
        for term in terms:
            assert not set(term.dims) & sum_dims
            assert set(term.dims) <= ordinal
            missing = math.prod(plates[p] for p in ordinal if p not in term.dims)
            total = total + term.tensor.sum() * missing
    expected, _ = brute_force(case, tree)
    assert torch.allclose(total, expected, atol=1e-10)


@pytest.mark.parametrize("case", ["chain", "global_and_local", "nested", "two_plates"])
def test_gradients_match_brute_force(case):
    torch.manual_seed(2)
    tree, sum_dims, plates = random_tree(case, requires_grad=True)
    leaves = [t.tensor for terms in tree.values() for t in terms]
    actual = torch.autograd.grad(contract_to_tensor(tree, sum_dims, plates), leaves)
    expected = torch.autograd.grad(brute_force(case, tree)[0], leaves)
    for a, e in zip(actual, expected):
        assert torch.allclose(a, e, atol=1e-10)


@pytest.mark.parametrize("case", ["chain", "global_and_local", "nested", "two_plates"])
def test_map_sample_matches_brute_force_argmax(case):
    torch.manual_seed(3)
    tree, sum_dims, plates = random_tree(case)
    samples, log_z = sample_tensor_tree(tree, sum_dims, plates, temperature=0)
    best, joint = brute_force(case, tree, "max")
    assert torch.allclose(log_z, best)
    _, assignment, grounded = max(joint, key=lambda j: j[0].item())
    for (v, where, _), value in zip(grounded, assignment):
        s = samples[v]
        assert set(s.dims) == set(where)
        assert s.tensor[tuple(where[d] for d in s.dims)].item() == value


def test_posterior_sample_matches_exact_marginals():
    # Global a, local b in a plate of 2: compare the empirical joint distribution of
    # (a, b_0, b_1) from 4000 draws with the exact posterior, chi-square at ~1e-4
    # false-fail rate (critical value of chi2 with 11 dof at 1 - 1e-4 is ~35.6).
    torch.manual_seed(4)
    case = "global_and_local"
    variables, plates, factors = CASES[case]
    plates = {"i": 2}
    tree = OrderedDict()
    sizes = {"a": 2, "b": 3, "i": 2}
    for dims, ordinal in factors:
        t = torch.randn([sizes[d] for d in dims], dtype=torch.float64)
        tree.setdefault(frozenset(ordinal), []).append(Factor(t, dims))
    num_samples = 4000
    big = OrderedDict()
    # Batch the draws with an extra plate "n" that every factor is constant along.
    for ordinal, terms in tree.items():
        big[ordinal | {"n"}] = terms
    samples, _ = sample_tensor_tree(big, {"a", "b"}, {"i": 2, "n": num_samples})
    a = samples["a"].tensor
    b = samples["b"]
    assert samples["a"].dims == "n"
    b = b.tensor.permute([b.dims.index("n"), b.dims.index("i")])
    counts = Counter(zip(a.tolist(), b[:, 0].tolist(), b[:, 1].tolist()))
    CASES["_tmp"] = (variables, plates, factors)
    try:
        log_z, joint = brute_force("_tmp", tree)
    finally:
        del CASES["_tmp"]
    chi2 = 0.0
    for total, assignment, _ in joint:
        expected = num_samples * (total - log_z).exp().item()
        chi2 += (counts.get(tuple(assignment), 0) - expected) ** 2 / expected
    assert len(joint) == 18
    assert chi2 < 45.0  # chi2(17 dof) exceeds 45 with probability < 3e-4


def test_long_chain_matches_forward_algorithm():
    torch.manual_seed(5)
    T, S = 1000, 3
    symbols = [chr(0x100 + t) for t in range(T)]
    init = torch.randn(S, dtype=torch.float64)
    trans = torch.randn(T - 1, S, S, dtype=torch.float64)
    tree = OrderedDict(
        [(frozenset(), [Factor(init, symbols[0])]
          + [Factor(trans[t], symbols[t] + symbols[t + 1]) for t in range(T - 1)])]
    )
    actual = contract_to_tensor(tree, set(symbols))
    alpha = init
    for t in range(T - 1):
        alpha = (alpha.unsqueeze(-1) + trans[t]).logsumexp(0)
    assert torch.allclose(actual, alpha.logsumexp(0))


def test_large_pair_uses_einsum_kernel():
    torch.manual_seed(6)
    x = torch.randn(300, 40, dtype=torch.float64) * 30
    y = torch.randn(40, 300, dtype=torch.float64) * 30
    tree = OrderedDict([(frozenset("ik"), [Factor(x, "ia"), Factor(y, "ak")])])
    (term,) = contract_tensor_tree(tree, {"a"})[frozenset("ik")]
    expected = (x.unsqueeze(-1) + y).logsumexp(1)
    assert term.dims == "ik"
    assert torch.allclose(term.tensor, expected)


def test_float32_and_pack():
    t = torch.randn(3, 1, 4)
    f = pack(t, {-3: "a", -1: "i"})
    assert f.dims == "ai" and f.tensor.shape == (3, 4)
    with pytest.raises(ValueError, match="dim -1"):
        pack(t, {-3: "a"})
    tree = OrderedDict([(frozenset("i"), [f])])
    out = contract_to_tensor(tree, {"a"})
    assert out.dtype == torch.float32
    assert torch.allclose(out, t.logsumexp(0).sum())


def test_non_tree_plates_error():
    # b is local to plate i and c to plate j, yet one factor couples them.
    tree = OrderedDict(
        [
            (frozenset("i"), [Factor(torch.randn(2, 3), "bi")]),
            (frozenset("j"), [Factor(torch.randn(2, 4), "cj")]),
            (frozenset("ij"), [Factor(torch.randn(2, 2, 3, 4), "bcij")]),
        ]
    )
    with pytest.raises(ValueError, match="tree-structured"):
        contract_to_tensor(tree, {"b", "c"})


def test_plate_outside_ordinal_error():
    tree = OrderedDict(
        [
            (frozenset(), [Factor(torch.randn(2, 3), "ai")]),
            (frozenset("i"), [Factor(torch.randn(3), "i")]),
        ]
    )
    with pytest.raises(ValueError, match="outside its ordinal"):
        contract_to_tensor(tree, {"a"})


def test_batch_dims_are_kept():
    x = torch.randn(2, 3, dtype=torch.float64)
    y = torch.randn(3, 4, dtype=torch.float64)
    tree = OrderedDict([(frozenset(), [Factor(x, "ga"), Factor(y, "ai")])])
    with pytest.raises(ValueError):
        contract_tensor_tree(OrderedDict([(frozenset("i"), [Factor(x, "ga")]),
                                          (frozenset(), [Factor(y, "ai")])]), {"a"})
    tree = OrderedDict([(frozenset("i"), [Factor(x, "ga"), Factor(y, "ai")])])
    (term,) = contract_tensor_tree(tree, {"a"})[frozenset("i")]
    assert term.dims == "gi"
    assert torch.allclose(term.tensor, (x.unsqueeze(-1) + y).logsumexp(1))


def _random_chain(T, S, seed, plate=4):
    """A chain over T variables in plate 'i', with factors in mixed layouts: some
    transitions stored (next, prev), unary factors on some steps only, some
    factors constant along the plate, two factors on one step."""
    g = torch.Generator().manual_seed(seed)
    v = [chr(0x100 + t) for t in range(T)]
    rand = (lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
            .requires_grad_())
    factors = [Factor(rand(S), v[0]), Factor(rand(S, plate), v[0] + "i")]
    for t in range(1, T):
        if t % 2:
            factors.append(Factor(rand(S, S, plate), v[t - 1] + v[t] + "i"))
        else:
            factors.append(Factor(rand(S, plate, S), v[t] + "i" + v[t - 1]))
        if t % 3 == 0:
            factors.append(Factor(rand(plate, S), "i" + v[t]))
        if t == 5:
            factors.append(Factor(rand(S, S), v[t - 1] + v[t]))
    return OrderedDict([(frozenset("i"), factors)]), set(v)


@pytest.mark.parametrize("ring", ["log", "max"])
@pytest.mark.parametrize("T", [4, 7, 33])
def test_chain_scan_matches_sequential_elimination(T, ring):
    from probpl.ops.contract import _get_plan, _run

    tree, sum_dims = _random_chain(T, 3, seed=T)
    sizes = {"i": 4}
    plan = _get_plan(tree, sum_dims, sizes, ring)
    assert any(ins[0] == 3 for ins in plan.program.instructions)  # a CHAIN instruction
    tensors = [f.tensor for fs in tree.values() for f in fs]
    actual = contract_to_tensor(tree, sum_dims, sizes, ring=ring)
    reference = _run(_get_plan(tree, sum_dims, sizes, ring, allow_chain=False), tensors,
                     total=True)
    assert torch.allclose(actual, reference, atol=1e-10)
    g_actual = torch.autograd.grad(actual, tensors)
    g_ref = torch.autograd.grad(reference, tensors)
    for a, b in zip(g_actual, g_ref):
        assert torch.allclose(a, b, atol=1e-10)
    (term,) = contract_tensor_tree(tree, sum_dims, sizes, ring=ring)[frozenset("i")]
    (ref,) = _run(_get_plan(tree, sum_dims, sizes, ring, allow_chain=False), tensors)
    assert term.dims == "i" and torch.allclose(term.tensor, ref, atol=1e-10)


def test_chain_with_branch_or_cycle_is_not_scanned():
    from probpl.ops.contract import _get_plan

    v = "abcdef"
    x = torch.randn(2, 2, dtype=torch.float64)
    factors = [Factor(x, v[t] + v[t + 1]) for t in range(5)]
    for extra in ("ac", "af", "bg"):
        tree = OrderedDict([(frozenset(), factors + [Factor(x, extra)])])
        sum_dims = set(v) | set(extra)
        plan = _get_plan(tree, sum_dims, {}, "log")
        assert not any(ins[0] == 3 for ins in plan.program.instructions)
        expected = contract_to_tensor(
            OrderedDict([(frozenset(), [Factor(f.tensor, f.dims) for f in tree[frozenset()]])]),
            sum_dims, {}, ring="log")
        assert torch.isfinite(expected)


def test_chain_scan_promotes_mixed_dtypes():
    from probpl.ops.contract import _get_plan, _run

    tree, sum_dims = _random_chain(9, 2, seed=1)
    factors = tree[frozenset("i")]
    # A float32 unary factor among float64 transitions (slot 3: not every step has one).
    factors[-1] = Factor(factors[-1].tensor.detach().float(), factors[-1].dims)
    tensors = [f.tensor for f in factors]
    actual = contract_to_tensor(tree, sum_dims, {"i": 4})
    reference = _run(_get_plan(tree, sum_dims, {"i": 4}, "log", allow_chain=False), tensors,
                     total=True)
    assert actual.dtype == torch.float64
    assert torch.allclose(actual, reference, atol=1e-5)
