"""Pure Hamiltonian Monte Carlo transitions over a batch of chains.

A transition is ``step(state, potential_and_grad, ...) -> (state, info)`` where
``potential_and_grad`` maps positions ``(C, D)`` (``C`` chains, ``D`` unconstrained
coordinates) to ``(potential_energy (C,), grad (C, D))``.  Every chain has its own step size
and metric.  Chains run in lockstep: a chain whose trajectory has ended is frozen with masks
while the others go on, so one call of the potential serves all chains.

The No-U-Turn sampler builds its trajectory by repeated doubling in a random direction;
each new subtree is built leaf by leaf, with the U-turn checks of all its nested subtrees
done against checkpointed momenta (an iterative form of the recursive algorithm).  The
sample is drawn multinomially: uniformly in proportion to ``exp(-H)`` inside a subtree,
and biased towards the newer subtree when merging.

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


def hmc_step(state, potential_and_grad, num_steps, max_delta_energy=1000.0):
    """One HMC transition with a fixed number of leapfrog steps and a Metropolis correction.

    :param HMCState state: current state.
    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param num_steps: an int or a ``(C,)`` integer tensor of leapfrog steps per chain.
    :returns: ``(state, info)``.
    """
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0 = pe + kinetic_energy(r, inv)
    num_steps = torch.as_tensor(num_steps, device=z.device).expand(pe.shape)
    step = state.step_size.unsqueeze(-1)
    z1, r1, g1, pe1 = z, r, grad, pe
    for i in range(int(num_steps.max())):
        zn, rn, gn, pen = _leapfrog(z1, r1, g1, step, inv, potential_and_grad)
        moving = i < num_steps
        m = moving.unsqueeze(-1)
        z1, r1 = torch.where(m, zn, z1), torch.where(m, rn, r1)
        g1, pe1 = torch.where(m, gn, g1), torch.where(moving, pen, pe1)
    delta = _energy_error(pe1, r1, inv, energy0)
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


def nuts_step(state, potential_and_grad, max_tree_depth=10, max_delta_energy=1000.0):
    """One No-U-Turn transition (multinomial sampling, generalised U-turn criterion).

    :param HMCState state: current state.
    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param int max_tree_depth: at most ``2 ** max_tree_depth`` leapfrog steps.
    :param float max_delta_energy: an energy error above this marks a divergence.
    :returns: ``(state, info)``.
    """
    if state.z.shape[0] == 1:
        return _nuts_single(state, potential_and_grad, max_tree_depth, max_delta_energy)
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    frozen_needed = True
    r = sample_momentum(state)
    energy0 = pe + kinetic_energy(r, inv)
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
        ckpt_r = [None] * (d + 1)
        ckpt_sum = [None] * (d + 1)
        for n in range(num_leaves):
            zn, rn, gn, pen = _leapfrog(zc, rc, gc, step, inv, potential_and_grad)
            if frozen_needed:
                # finished chains keep their last finite point so the model never sees junk
                m = sub_active.unsqueeze(-1)
                zc, rc = torch.where(m, zn, zc), torch.where(m, rn, rc)
                gc, pen = torch.where(m, gn, gc), torch.where(sub_active, pen, pe)
            else:
                zc, rc, gc = zn, rn, gn
            delta = _energy_error(pen, rc, inv, energy0)
            live = sub_active.to(pe.dtype)
            sum_accept = sum_accept + torch.exp(-delta).clamp(max=1.0) * live
            num_steps = num_steps + live
            leaf_log_w = -delta
            new_log_w = torch.logaddexp(sub_log_w, leaf_log_w)
            take = sub_active & (log_u[n] < leaf_log_w - new_log_w)
            t = take.unsqueeze(-1)
            sz, sg = torch.where(t, zc, sz), torch.where(t, gc, sg)
            spe = torch.where(take, pen, spe)
            sub_log_w = torch.where(sub_active, new_log_w, sub_log_w)
            sub_r_sum = sub_r_sum + rc * live.unsqueeze(-1)
            stop = delta > max_delta_energy
            if n % 2 == 0:
                k = bin(n).count("1")
                ckpt_r[k], ckpt_sum[k] = rc, sub_r_sum
            else:
                # leaf n closes the nested subtrees of sizes 2, 4, ... 2**trailing_ones(n)
                for j in range(1, _trailing_ones(n) + 1):
                    k = bin(n + 1 - (1 << j)).count("1")
                    span = sub_r_sum - ckpt_sum[k] + ckpt_r[k]
                    stop = stop | _is_turning(inv, ckpt_r[k], rc, span)
            diverging = diverging | (sub_active & (delta > max_delta_energy))
            sub_active = sub_active & ~stop
            if not bool(sub_active.any()):
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
        r_sum = r_sum + sub_r_sum * o.to(r.dtype)
        active = ok & ~_is_turning(inv, rl, rr, r_sum)
    accept_prob = sum_accept / num_steps.clamp(min=1.0)
    new = state._replace(z=zp, potential_energy=pep, z_grad=gp)
    info = HMCInfo(accept_prob, diverging, num_steps.long(), depth)
    return new, info


def _leapfrog_float(z, r, grad, step, inv, potential_and_grad):
    r = torch.add(r, grad, alpha=-0.5 * step)
    if inv.dim() == r.dim():
        z = torch.addcmul(z, inv, r, value=step)
    else:
        z = torch.add(z, velocity(r, inv), alpha=step)
    pe, grad = potential_and_grad(z)
    r = torch.add(r, grad, alpha=-0.5 * step)
    return z, r, grad, pe


def _nuts_single(state, potential_and_grad, max_tree_depth, max_delta_energy):
    # One chain: the scalar bookkeeping (energies, weights, decisions) runs on Python floats,
    # which costs far less than a dozen tiny tensor ops per leaf; the draws of the random
    # numbers are the same in kind as in the batched path.
    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0 = float(pe) + float(kinetic_energy(r, inv))
    eps = float(state.step_size)
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
        step = eps if go_right else -eps
        zc, rc, gc = (zr, rr, gr) if go_right else (zl, rl, gl)
        depth = d + 1
        sub_log_w = -math.inf
        sz, spe, sg = zc, pe, gc
        sub_r_sum = None
        ckpt_r = [None] * (d + 1)
        ckpt_sum = [None] * (d + 1)
        valid = True
        for n in range(num_leaves):
            zc, rc, gc, pec = _leapfrog_float(zc, rc, gc, step, inv, potential_and_grad)
            delta = float(pec) + float(kinetic_energy(rc, inv)) - energy0
            if delta != delta:
                delta = math.inf
            num_steps += 1
            sum_accept += 1.0 if delta <= 0.0 else math.exp(-delta)
            new_log_w = _logaddexp(sub_log_w, -delta)
            if u[n] < math.exp(-delta - new_log_w) if new_log_w > -math.inf else False:
                sz, spe, sg = zc, pec, gc
            sub_log_w = new_log_w
            sub_r_sum = rc if n == 0 else sub_r_sum + rc
            if delta > max_delta_energy:
                diverging = True
                valid = False
                break
            if n % 2 == 0:
                k = bin(n).count("1")
                ckpt_r[k], ckpt_sum[k] = rc, sub_r_sum
            else:
                for j in range(1, _trailing_ones(n) + 1):
                    k = bin(n + 1 - (1 << j)).count("1")
                    span = sub_r_sum - ckpt_sum[k] + ckpt_r[k]
                    if bool(_is_turning(inv, ckpt_r[k], rc, span)):
                        valid = False
                        break
                if not valid:
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
