"""Pure Hamiltonian Monte Carlo transitions over a batch of chains.

A transition is ``step(state, potential_and_grad, ...) -> (state, info)`` where
``potential_and_grad`` maps positions ``(C, D)`` (``C`` chains, ``D`` unconstrained
coordinates) to ``(potential_energy (C,), grad (C, D))``.  Every chain has its own step size
and metric.  Chains run in lockstep: a chain whose trajectory has ended is frozen with masks
while the others go on, so one call of the potential serves all chains.  (The MCMC driver
runs a batch of NUTS chains without lockstep, each at its own place in its own trajectory:
:mod:`probpl.infer.mcmc.nuts_chains`.)

The No-U-Turn sampler builds its trajectory by repeated doubling in a random direction;
each new subtree is built leaf by leaf, with the U-turn checks of all its nested subtrees
done against checkpointed momenta (an iterative form of the recursive algorithm).  The
sample is drawn multinomially: uniformly in proportion to ``exp(-H)`` inside a subtree,
and biased towards the newer subtree when merging.

Everything a leaf needs -- the leapfrog step with the potential and its gradient, the
energy error, the U-turn checks against every checkpoint and the checkpoint update, and
for many chains the masked bookkeeping too -- is one function of tensors
(:func:`leaf_step`, :func:`batched_leaf_step`), so that it compiles into one graph
(:func:`probpl.infer.mcmc.potential.compile_leaf`); which checkpoints a leaf stores or
checks depends only on its index in the subtree and is passed in as data.  With one chain
the remaining decisions run on Python floats read with one transfer per leaf.

References

1. M. D. Hoffman, A. Gelman (2014), "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", JMLR 15.
2. M. Betancourt (2017), "A Conceptual Introduction to Hamiltonian Monte Carlo",
   arXiv:1701.02434 (multinomial sampling, generalised no-U-turn criterion).
3. D. Phan, N. Pradhan, M. Jankowiak (2019), "Composable Effects for Flexible and
   Accelerated Probabilistic Programming in NumPyro", arXiv:1912.11554 (iterative NUTS).
"""

import math
from typing import NamedTuple

import torch

from probpl.ops.integrator import kinetic_energy, velocity


class HMCState(NamedTuple):
    z: torch.Tensor  # positions, (C, D)
    potential_energy: torch.Tensor  # (C,)
    z_grad: torch.Tensor  # gradient of the potential at z, (C, D)
    step_size: torch.Tensor  # (C,)
    inverse_mass_matrix: torch.Tensor  # (C, D) diagonal or (C, D, D) dense
    mass_matrix_sqrt: torch.Tensor  # a square root of the mass matrix, to draw momenta


class HMCInfo(NamedTuple):
    accept_prob: torch.Tensor  # (C,) mean Metropolis acceptance over the trajectory
    diverging: torch.Tensor  # (C,) bool: the energy error exceeded the threshold
    num_steps: torch.Tensor  # (C,) leapfrog steps taken by each chain
    tree_depth: torch.Tensor  # (C,) number of doublings (NUTS), 0 for HMC


def mass_matrix_sqrt(inverse_mass_matrix):
    """:returns: ``S`` with ``S S^T = M``: ``M^{1/2}`` (diagonal) or the Cholesky factor of
    ``M = inverse_mass_matrix^{-1}`` (dense)."""
    if inverse_mass_matrix.dim() == 2:
        return inverse_mass_matrix.rsqrt()
    chol = torch.linalg.cholesky(inverse_mass_matrix)
    return torch.linalg.cholesky(torch.cholesky_inverse(chol))


def init_state(z, potential_and_grad, step_size, inverse_mass_matrix):
    """Build an :class:`HMCState` at positions ``z`` (``(C, D)``)."""
    pe, grad = potential_and_grad(z)
    step = torch.as_tensor(step_size, dtype=z.dtype, device=z.device).expand(z.shape[:1])
    inv = inverse_mass_matrix.to(z)
    return HMCState(z, pe, grad, step.clone(), inv, mass_matrix_sqrt(inv))


def sample_momentum(state):
    """Draw ``r ~ N(0, M)`` for every chain."""
    eps = torch.randn_like(state.z)
    sqrt = state.mass_matrix_sqrt
    if sqrt.dim() == 2:
        return sqrt * eps
    return torch.matmul(sqrt, eps.unsqueeze(-1)).squeeze(-1)


def _leapfrog(z, r, grad, step, inv, potential_and_grad):
    r = torch.addcmul(r, step, grad, value=-0.5)
    z = torch.addcmul(z, step, velocity(r, inv))
    pe, grad = potential_and_grad(z)
    r = torch.addcmul(r, step, grad, value=-0.5)
    return z, r, grad, pe


def _energy_error(pe, r, inv, energy0):
    delta = pe + kinetic_energy(r, inv) - energy0
    return torch.nan_to_num(delta, nan=float("inf"))


def _row_velocity(rows, inv):
    # velocities of a stack of momenta (C, L, D) under each chain's metric
    if inv.dim() == rows.dim() - 1:
        return inv.unsqueeze(-2) * rows
    return torch.matmul(rows, inv)  # inv is symmetric


def leaf_step(potential_and_grad, z, r, grad, step, inv, energy0, r_sum, ckpt_r, ckpt_sum,
              store, check):
    """One leapfrog step of a trajectory and everything NUTS needs to know about the new leaf,
    as one function of tensors (so that it can be compiled as a whole).

    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param z, r, grad: position, momentum and potential gradient, ``(C, D)``.
    :param torch.Tensor step: signed step sizes, ``(C, 1)``.
    :param torch.Tensor inv: inverse mass matrix, ``(C, D)`` or ``(C, D, D)``.
    :param torch.Tensor energy0: Hamiltonian at the start of the trajectory, ``(C,)``.
    :param torch.Tensor r_sum: summed momenta of the subtree's earlier leaves, ``(C, D)``.
    :param ckpt_r, ckpt_sum: checkpointed momenta and running sums, ``(C, L, D)``.
    :param torch.Tensor store: ``(1,)`` row of the checkpoints that receives this leaf.
    :param torch.Tensor check: ``(L,)`` bool, the checkpoints this leaf closes a U-turn
        check with.
    :returns: ``(z, r, grad, potential, delta, turning, r_sum, ckpt_r, ckpt_sum, stats)``
        where ``delta`` is the energy error (``inf`` for NaN), ``turning`` says whether a
        checked span turned back on itself, and ``stats`` stacks ``(delta, turning)`` into
        one ``(C, 2)`` tensor to read both with one transfer.
    """
    r = torch.addcmul(r, step, grad, value=-0.5)
    z = torch.addcmul(z, step, velocity(r, inv))
    pe, grad = potential_and_grad(z)
    r = torch.addcmul(r, step, grad, value=-0.5)
    v = velocity(r, inv)
    delta = torch.nan_to_num(pe + 0.5 * (r * v).sum(-1) - energy0, nan=float("inf"))
    r_sum = r_sum + r
    # generalised no-U-turn criterion over the span from each checkpoint to this leaf
    rho = (r_sum.unsqueeze(-2) - ckpt_sum) + 0.5 * (ckpt_r - r.unsqueeze(-2))
    turning = ((_row_velocity(ckpt_r, inv) * rho).sum(-1) <= 0) | (
        (v.unsqueeze(-2) * rho).sum(-1) <= 0
    )
    turn = (turning & check).any(-1)
    ckpt_r = ckpt_r.index_copy(-2, store, r.unsqueeze(-2))
    ckpt_sum = ckpt_sum.index_copy(-2, store, r_sum.unsqueeze(-2))
    stats = torch.stack([delta, turn.to(delta.dtype)], -1)
    return z, r, grad, pe, delta, turn, r_sum, ckpt_r, ckpt_sum, stats


def make_leaf_fn(potential_and_grad):
    """The uncompiled :func:`leaf_step` of a potential."""

    def leaf(*args):
        return leaf_step(potential_and_grad, *args)

    return leaf


def batched_leaf_step(potential_and_grad, max_delta_energy, z, r, grad, step, inv, energy0,
                      r_sum, ckpt_r, ckpt_sum, store, check, pe0, sub_z, sub_pe, sub_grad,
                      sub_log_w, sub_active, sum_accept, num_steps, diverging, log_u):
    """:func:`leaf_step` for many chains followed by the masked NUTS bookkeeping of the new
    leaf (multinomial choice within the subtree, acceptance statistic, divergence and
    termination), as one function of tensors.  Chains whose subtree has stopped keep their
    last point, so the model never sees a diverged position.

    :returns: the updated ``(z, r, grad, r_sum, ckpt_r, ckpt_sum, sub_z, sub_pe, sub_grad,
        sub_log_w, sub_active, sum_accept, num_steps, diverging)``, whether any chain is
        still building its subtree, and the potential energy at ``z``.
    """
    zn, rn, gn, pen, delta, turn, r_sum, ckpt_r, ckpt_sum, _ = leaf_step(
        potential_and_grad, z, r, grad, step, inv, energy0, r_sum, ckpt_r, ckpt_sum, store,
        check)
    m = sub_active.unsqueeze(-1)
    z, r, grad = torch.where(m, zn, z), torch.where(m, rn, r), torch.where(m, gn, grad)
    pen = torch.where(sub_active, pen, pe0)
    live = sub_active.to(pen.dtype)
    sum_accept = sum_accept + torch.exp(-delta).clamp(max=1.0) * live
    num_steps = num_steps + live
    new_log_w = torch.logaddexp(sub_log_w, -delta)
    take = sub_active & (log_u < -delta - new_log_w)
    t = take.unsqueeze(-1)
    sub_z, sub_grad = torch.where(t, z, sub_z), torch.where(t, grad, sub_grad)
    sub_pe = torch.where(take, pen, sub_pe)
    sub_log_w = torch.where(sub_active, new_log_w, sub_log_w)
    bad = delta > max_delta_energy
    diverging = diverging | (sub_active & bad)
    sub_active = sub_active & ~(bad | turn)
    return (z, r, grad, r_sum, ckpt_r, ckpt_sum, sub_z, sub_pe, sub_grad, sub_log_w,
            sub_active, sum_accept, num_steps, diverging, sub_active.any(), pen)


def make_nuts_leaf_fn(potential_and_grad, num_chains, max_delta_energy=1000.0):
    """The uncompiled leaf function :func:`nuts_step` uses for ``num_chains`` chains:
    :func:`leaf_step` for one chain, :func:`batched_leaf_step` for more."""
    if num_chains == 1:
        return make_leaf_fn(potential_and_grad)

    def leaf(*args):
        return batched_leaf_step(potential_and_grad, max_delta_energy, *args)

    return leaf


def leapfrog_from_leaf(leaf, num_ckpts, batched):
    """Plain leapfrog steps ``(z, r, grad, step (C, 1), inv) -> (z, r, grad, potential)``
    run by a (compiled) leaf function: :func:`leaf_step` with ``num_ckpts`` checkpoints, or
    :func:`batched_leaf_step` when ``batched``."""

    def leapfrog(z, r, grad, step, inv):
        pe0 = z.new_zeros(z.shape[:1])
        ck = z.new_zeros(z.shape[:1] + (num_ckpts + 1,) + z.shape[1:])
        store, check = _leaf_plans(num_ckpts, 1, z.device)[0]
        if not batched:
            return leaf(z, r, grad, step, inv, pe0, r, ck, ck, store, check)[:4]
        active = torch.ones_like(pe0, dtype=torch.bool)
        out = leaf(z, r, grad, step, inv, pe0, r, ck, ck, store, check, pe0, z, pe0, grad,
                   pe0, active, pe0, pe0, ~active, pe0)
        return out[0], out[1], out[2], out[-1]

    return leapfrog


def _leaf_plans(num_ckpts, num_leaves, device):
    # for leaf n of a subtree: the checkpoint row it is stored in (even n; odd n use the
    # spare last row) and the checkpoints whose spans it closes (odd n): leaf n ends the
    # nested subtrees of sizes 2, 4, ... 2**trailing_ones(n)
    key = (num_ckpts, num_leaves, device)
    plans = _PLANS.get(key)
    if plans is None:
        plans = []
        for n in range(num_leaves):
            check = torch.zeros(num_ckpts + 1, dtype=torch.bool, device=device)
            if n % 2 == 0:
                store = bin(n).count("1")
            else:
                store = num_ckpts
                for j in range(1, _trailing_ones(n) + 1):
                    check[bin(n + 1 - (1 << j)).count("1")] = True
            plans.append((torch.tensor([store], device=device), check))
        _PLANS[key] = plans
    return plans


_PLANS = {}


def leaf_example_inputs(z, inv, num_ckpts, seed=0):
    """Inputs of the right shapes, dtypes and devices to trace :func:`leaf_step` with (without
    its first argument): ``z`` perturbed, random momenta, a small step."""
    gen = torch.Generator(device=z.device).manual_seed(seed)
    zz = z + 0.1 * torch.randn(z.shape, generator=gen, dtype=z.dtype, device=z.device)
    r = torch.randn(z.shape, generator=gen, dtype=z.dtype, device=z.device)
    ck = torch.randn((z.shape[0], num_ckpts + 1, z.shape[1]), generator=gen, dtype=z.dtype,
                     device=z.device)
    store, check = _leaf_plans(num_ckpts, 2, z.device)[1]
    return (zz, r, torch.ones_like(z), z.new_full((z.shape[0], 1), 0.01), inv,
            z.new_zeros(z.shape[:1]), r.clone(), ck, ck.clone(), store, check)


def nuts_leaf_example_inputs(z, inv, num_ckpts, seed=0):
    """Example inputs for the function of :func:`make_nuts_leaf_fn` (without its first
    argument)."""
    args = leaf_example_inputs(z, inv, num_ckpts, seed)
    if z.shape[0] == 1:
        return args
    gen = torch.Generator(device=z.device).manual_seed(seed + 1000)
    c = z.shape[:1]
    pe = torch.randn(c, generator=gen, dtype=z.dtype, device=z.device)
    active = torch.arange(c[0], device=z.device) % 3 != 0
    return args + (pe, z.clone(), pe.clone(), z.clone(), pe.clone(), active,
                   torch.zeros_like(pe), torch.zeros_like(pe), ~active, pe.clone() - 1.0)


def hmc_step(state, potential_and_grad, num_steps, max_delta_energy=1000.0, leaf_fn=None):
    """One HMC transition with a fixed number of leapfrog steps and a Metropolis correction.

    :param HMCState state: current state.
    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param num_steps: an int or a ``(C,)`` integer tensor of leapfrog steps per chain.
    :param callable leaf_fn: a (compiled) :func:`leaf_step` of the potential.
    :returns: ``(state, info)``.
    """
    leaf = make_leaf_fn(potential_and_grad) if leaf_fn is None else leaf_fn
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0 = pe + kinetic_energy(r, inv)
    num_steps = torch.as_tensor(num_steps, device=z.device).expand(pe.shape)
    step = state.step_size.unsqueeze(-1)
    ck = z.new_zeros(z.shape[:1] + (2,) + z.shape[1:])
    store, check = _leaf_plans(1, 1, z.device)[0]
    z1, r1, g1, pe1 = z, r, grad, pe
    delta = torch.zeros_like(pe)
    for i in range(int(num_steps.max())):
        zn, rn, gn, pen, dn = leaf(z1, r1, g1, step, inv, energy0, r, ck, ck, store, check)[:5]
        moving = i < num_steps
        m = moving.unsqueeze(-1)
        z1, r1 = torch.where(m, zn, z1), torch.where(m, rn, r1)
        g1, pe1 = torch.where(m, gn, g1), torch.where(moving, pen, pe1)
        delta = torch.where(moving, dn, delta)
    accept_prob = torch.exp(-delta).clamp(max=1.0)
    accept = torch.rand_like(pe) < accept_prob
    a = accept.unsqueeze(-1)
    new = state._replace(
        z=torch.where(a, z1, z),
        potential_energy=torch.where(accept, pe1, pe),
        z_grad=torch.where(a, g1, grad),
    )
    info = HMCInfo(accept_prob, delta > max_delta_energy, num_steps, torch.zeros_like(num_steps))
    return new, info


def _is_turning(inv, r_left, r_right, r_sum):
    # generalised criterion: both end velocities must point along the summed momentum
    rho = r_sum - 0.5 * (r_left + r_right)
    return ((velocity(r_left, inv) * rho).sum(-1) <= 0) | (
        (velocity(r_right, inv) * rho).sum(-1) <= 0
    )


def _trailing_ones(n):
    count = 0
    while n & 1:
        n >>= 1
        count += 1
    return count


def nuts_step(state, potential_and_grad, max_tree_depth=10, max_delta_energy=1000.0,
              leaf_fn=None):
    """One No-U-Turn transition (multinomial sampling, generalised U-turn criterion).

    :param HMCState state: current state.
    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param int max_tree_depth: at most ``2 ** max_tree_depth`` leapfrog steps.
    :param float max_delta_energy: an energy error above this marks a divergence.
    :param callable leaf_fn: the (compiled) function of :func:`make_nuts_leaf_fn` for this
        potential, number of chains and ``max_delta_energy``; by default the uncompiled one.
    :returns: ``(state, info)``.
    """
    if leaf_fn is None:
        leaf_fn = make_nuts_leaf_fn(potential_and_grad, state.z.shape[0], max_delta_energy)
    leaf = leaf_fn
    if state.z.shape[0] == 1:
        return _nuts_single(state, leaf, max_tree_depth, max_delta_energy)
    return _nuts_batched(state, leaf, max_tree_depth, max_delta_energy)


def _nuts_batched(state, leaf, max_tree_depth, max_delta_energy):
    # Many chains in lockstep: a chain whose subtree has stopped is frozen by masks
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0 = pe + kinetic_energy(r, inv)
    plans = _leaf_plans(max_tree_depth, 1 << (max_tree_depth - 1), z.device)
    ck0 = z.new_zeros(z.shape[:1] + (max_tree_depth + 1,) + z.shape[1:])
    zl, rl, gl = z, r, grad
    zr, rr, gr = z, r, grad
    zp, pep, gp = z, pe, grad
    log_w = torch.zeros_like(pe)
    r_sum = r
    active = torch.ones_like(pe, dtype=torch.bool)
    diverging = torch.zeros_like(active)
    depth = torch.zeros_like(pe, dtype=torch.long)
    sum_accept = torch.zeros_like(pe)
    num_steps = torch.zeros_like(pe)
    go_right_all = torch.rand((max_tree_depth,) + pe.shape, dtype=pe.dtype, device=pe.device) < 0.5
    for d in range(max_tree_depth):
        if d > 0 and not bool(active.any()):
            break
        go_right = go_right_all[d]
        right = go_right.unsqueeze(-1)
        step = torch.where(go_right, state.step_size, -state.step_size).unsqueeze(-1)
        zc = torch.where(right, zr, zl)
        rc = torch.where(right, rr, rl)
        gc = torch.where(right, gr, gl)
        num_leaves = 1 << d
        log_u = torch.rand((num_leaves,) + pe.shape, dtype=pe.dtype, device=pe.device).log_()
        sub_active = active
        sub_log_w = torch.full_like(pe, float("-inf"))
        sz, spe, sg = zc, pe, gc
        sub_r_sum = torch.zeros_like(r)
        ck_r, ck_sum = ck0, ck0
        for n in range(num_leaves):
            store, check = plans[n]
            (zc, rc, gc, sub_r_sum, ck_r, ck_sum, sz, spe, sg, sub_log_w, sub_active,
             sum_accept, num_steps, diverging, any_active, _) = leaf(
                zc, rc, gc, step, inv, energy0, sub_r_sum, ck_r, ck_sum, store, check, pe,
                sz, spe, sg, sub_log_w, sub_active, sum_accept, num_steps, diverging,
                log_u[n])
            if not bool(any_active):
                break
        depth = torch.where(active, d + 1, depth)
        ok = sub_active
        o = ok.unsqueeze(-1)
        ro, lo = o & right, o & ~right
        zr, rr, gr = torch.where(ro, zc, zr), torch.where(ro, rc, rr), torch.where(ro, gc, gr)
        zl, rl, gl = torch.where(lo, zc, zl), torch.where(lo, rc, rl), torch.where(lo, gc, gl)
        # biased progressive sampling favours the new subtree
        log_v = torch.rand_like(pe).log_()
        take = ok & (log_v < sub_log_w - log_w)
        t = take.unsqueeze(-1)
        zp, pep, gp = torch.where(t, sz, zp), torch.where(take, spe, pep), torch.where(t, sg, gp)
        log_w = torch.where(ok, torch.logaddexp(log_w, sub_log_w), log_w)
        r_sum = torch.where(o, r_sum + sub_r_sum, r_sum)
        active = ok & ~_is_turning(inv, rl, rr, r_sum)
    accept_prob = sum_accept / num_steps.clamp(min=1.0)
    new = state._replace(z=zp, potential_energy=pep, z_grad=gp)
    info = HMCInfo(accept_prob, diverging, num_steps.long(), depth)
    return new, info


def _nuts_single(state, leaf, max_tree_depth, max_delta_energy):
    # One chain: one call of the (compiled) leaf step and one read of its two statistics per
    # leaf; the scalar bookkeeping (energies, weights, decisions) runs on Python floats.
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0_t = pe + kinetic_energy(r, inv)
    step_right = state.step_size.unsqueeze(-1)
    step_left = -step_right
    plans = _leaf_plans(max_tree_depth, 1 << (max_tree_depth - 1), z.device)
    ck0 = z.new_zeros(z.shape[:1] + (max_tree_depth + 1,) + z.shape[1:])
    zero_sum = torch.zeros_like(r)
    zl, rl, gl = z, r, grad
    zr, rr, gr = z, r, grad
    zp, pep, gp = z, pe, grad
    log_w = 0.0
    r_sum = r
    diverging = False
    depth = 0
    sum_accept = 0.0
    num_steps = 0
    for d in range(max_tree_depth):
        num_leaves = 1 << d
        u = torch.rand(num_leaves + 2, dtype=z.dtype, device=z.device).tolist()
        go_right = u[-1] < 0.5
        step = step_right if go_right else step_left
        zc, rc, gc = (zr, rr, gr) if go_right else (zl, rl, gl)
        depth = d + 1
        sub_log_w = -math.inf
        sz, spe, sg = zc, pe, gc
        sub_r_sum, ck_r, ck_sum = zero_sum, ck0, ck0
        valid = True
        for n in range(num_leaves):
            store, check = plans[n]
            zc, rc, gc, pec, _, _, sub_r_sum, ck_r, ck_sum, stats = leaf(
                zc, rc, gc, step, inv, energy0_t, sub_r_sum, ck_r, ck_sum, store, check)
            ((delta, turn),) = stats.tolist()
            num_steps += 1
            sum_accept += 1.0 if delta <= 0.0 else math.exp(-delta)
            new_log_w = _logaddexp(sub_log_w, -delta)
            if new_log_w > -math.inf and u[n] < math.exp(-delta - new_log_w):
                sz, spe, sg = zc, pec, gc
            sub_log_w = new_log_w
            if delta > max_delta_energy:
                diverging = True
                valid = False
                break
            if turn:
                valid = False
                break
        if not valid:
            break
        if go_right:
            zr, rr, gr = zc, rc, gc
        else:
            zl, rl, gl = zc, rc, gc
        if sub_log_w - log_w >= 0.0 or u[-2] < math.exp(sub_log_w - log_w):
            zp, pep, gp = sz, spe, sg
        log_w = _logaddexp(log_w, sub_log_w)
        r_sum = r_sum + sub_r_sum
        if bool(_is_turning(inv, rl, rr, r_sum)):
            break
    like = state.potential_energy
    new = state._replace(z=zp, potential_energy=pep, z_grad=gp)
    info = HMCInfo(
        like.new_full((1,), sum_accept / max(num_steps, 1)),
        torch.full((1,), diverging, dtype=torch.bool, device=like.device),
        torch.full((1,), num_steps, dtype=torch.long, device=like.device),
        torch.full((1,), depth, dtype=torch.long, device=like.device),
    )
    return new, info


def _logaddexp(a, b):
    if a < b:
        a, b = b, a
    if a == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))
