"""Vectorized NUTS chains that each build their own trajectories.

Every pass of the loop takes one leapfrog step for every chain, but each chain is at its
own place in its own trajectory and at its own iteration: a chain whose trajectory ends
takes its proposal as its next draw, adapts its own step size and metric (during warm-up)
and starts its next trajectory with a fresh momentum, while the others go on.  A batch of
chains thus costs about as many passes as its slowest chain takes leapfrog steps, rather
than the deepest trajectory among the chains at every iteration.

A pass is two functions of tensors, each compiled into one graph and masked over the chain
dimension: :func:`leaf_pass` (the leapfrog step with the potential and its gradient, the
U-turn checks against checkpointed momenta, the multinomial choice within the subtree,
merging a complete subtree into the trajectory and starting the next subtree) runs every
pass; :func:`end_pass` (recording the draws, the dual-averaging and Welford updates, and
new momenta for the next trajectories) runs only after passes in which some trajectory
ended.  Random numbers come in as inputs, drawn in blocks.  The rare events that need more
than masks -- a chain at the end of a slow adaptation window, whose metric is replaced and
whose step size is searched for afresh -- are handled between passes by
:class:`~probpl.infer.mcmc.chain_runner.ChainRunner`, which also stores every chain's draws
by iteration, so that the driver reads iteration ``i`` of all chains once the slowest has
produced it.

Each chain's transition is that of :func:`~probpl.infer.mcmc.trajectory.nuts_step`
(multinomial sampling, generalised U-turn criterion, biased progressive sampling between
subtrees), and its warm-up that of :class:`~probpl.infer.mcmc.adaptation.WarmupAdapter`.
"""

from typing import NamedTuple

import torch

from probpl.infer.mcmc.adaptation import build_adaptation_schedule
from probpl.infer.mcmc.trajectory import HMCState, _leaf_plans, mass_matrix_sqrt
from probpl.ops.dual_averaging import DualAveragingState, dual_averaging_update
from probpl.ops.integrator import velocity
from probpl.ops.welford import WelfordState, welford_update


class ChainsState(NamedTuple):
    """Where every chain is in its trajectory and its warm-up (``C`` chains, ``D``
    coordinates, ``L = max_tree_depth + 1`` checkpoints).  The fields up to ``inv`` are
    those :func:`leaf_pass` reads."""

    front: torch.Tensor  # (C, 3, D) position, momentum, gradient at the growing end
    other: torch.Tensor  # (C, 3, D) the opposite end of the trajectory
    sub: torch.Tensor  # (C, 3, D) proposal of the subtree being built (momentum unused)
    prop: torch.Tensor  # (C, 3, D) proposal of the trajectory, the draw once it ends
    ck_a: torch.Tensor  # (C, L, D) checkpoints: momentum sum minus half the leaf momentum
    ck_v: torch.Tensor  # (C, L, D) checkpoints: the leaf's velocity
    r_sum: torch.Tensor  # (C, D) summed momenta of the merged subtrees
    sub_r_sum: torch.Tensor  # (C, D) summed momenta of the subtree being built
    energy0: torch.Tensor  # (C,) Hamiltonian at the start of the trajectory
    log_w: torch.Tensor  # (C,) log weight of the merged subtrees
    sub_log_w: torch.Tensor  # (C,) log weight of the subtree being built
    sub_pe: torch.Tensor  # (C,) potential energy at the subtree's proposal
    pe: torch.Tensor  # (C,) potential energy at the trajectory's proposal
    sum_accept: torch.Tensor  # (C,) summed acceptance statistics of the leaves
    leaf: torch.Tensor  # (C,) long: leaves of the subtree built so far
    depth: torch.Tensor  # (C,) long: the subtree being built has 2 ** depth leaves
    signed_step: torch.Tensor  # (C, 1) the step size, negative when the subtree grows back in time
    step: torch.Tensor  # (C, 1) step size
    inv: torch.Tensor  # (C, D) or (C, D, D) inverse mass matrix
    sqrt: torch.Tensor  # like ``inv``: a square root of the mass matrix
    t: torch.Tensor  # (C,) long: iterations completed
    da_x: torch.Tensor  # (C,) dual averaging of the log step size: latest iterate
    da_x_avg: torch.Tensor  # (C,) its weighted average
    da_g_avg: torch.Tensor  # (C,) running mean of the gradients
    da_t: torch.Tensor  # (C,) number of updates (float)
    da_prox: torch.Tensor  # (C,) point the iterates are shrunk towards
    w_mean: torch.Tensor  # (C, D) Welford estimate of the window's draws: mean
    w_m2: torch.Tensor  # (C, D) or (C, D, D) sums of squared deviations
    w_count: torch.Tensor  # (C,) draws in the window (float)


NUM_LEAF_FIELDS = ChainsState._fields.index("inv") + 1
NUM_FIELDS = len(ChainsState._fields)
# the fields each pass returns (each tensor crossing out of a compiled pass costs about a
# microsecond, so the ones a pass leaves as they were stay out)
LEAF_OUTPUTS = tuple(i for i, f in enumerate(ChainsState._fields[:NUM_LEAF_FIELDS])
                     if f not in ("energy0", "step", "inv"))
_END_UNCHANGED = ("sub", "prop", "ck_a", "ck_v", "sub_pe", "pe", "inv", "sqrt", "da_prox")
_ADAPTATION = ("da_x", "da_x_avg", "da_g_avg", "da_t", "w_mean", "w_m2", "w_count")


def end_outputs(cfg):
    """The indices of the :class:`ChainsState` fields :func:`end_pass` returns for ``cfg``."""
    adapts = cfg.warmup_steps > 0 and (cfg.adapt_step_size or cfg.adapt_mass_matrix)
    skip = _END_UNCHANGED + (() if adapts else _ADAPTATION + ("step",))
    return tuple(i for i, f in enumerate(ChainsState._fields) if f not in skip)


class PassConfig(NamedTuple):
    """The static configuration of the passes (fixed for a run, baked into the graphs)."""

    max_tree_depth: int
    max_delta_energy: float
    warmup_steps: int
    adapt_step_size: bool
    adapt_mass_matrix: bool
    target_accept_prob: float


def _column(x):
    return x.unsqueeze(-1)


def _box(x):
    return x.view(-1, 1, 1)


def _plan_table(max_tree_depth, device):
    # (leaves, 2, L): for leaf n of a subtree, the checkpoint row that stores it (one-hot)
    # and the rows whose spans it closes a U-turn check with
    plans = _leaf_plans(max_tree_depth, 1 << (max_tree_depth - 1), device)
    rows = []
    for store, check in plans:
        onehot = torch.zeros_like(check)
        onehot[int(store)] = True
        rows.append(torch.stack([onehot, check]))
    return torch.stack(rows)


def _window_tables(warmup_steps, device):
    # per warm-up iteration: inside a slow window, and last iteration of a slow window
    in_slow = torch.zeros(max(warmup_steps, 1), dtype=torch.bool, device=device)
    ends = torch.zeros_like(in_slow)
    for w in build_adaptation_schedule(warmup_steps)[1:-1]:
        in_slow[w.start:w.end + 1] = True
        ends[w.end] = True
    return in_slow, ends


def leaf_pass(potential_and_grad, cfg, plans, *args):
    """One leapfrog step of every chain and the trajectory bookkeeping of the new leaf, as
    one function of tensors.

    :param callable potential_and_grad: ``z (C, D) -> (potential (C,), grad (C, D))``.
    :param PassConfig cfg: the static configuration.
    :param torch.Tensor plans: checkpoint plans of the leaves, see :func:`_plan_table`.
    :param args: the first ``NUM_LEAF_FIELDS`` fields of a :class:`ChainsState`, then
        ``log_u`` (``(C,)``, log-uniform: the choice within the subtree), ``log_v``
        (``(C,)``, log-uniform: the choice between subtrees) and ``turn_back`` (``(C, 1, 1)``,
        fair coin flips: whether a new subtree grows on the other side of the trajectory
        than the last one).
    :returns: the fields ``LEAF_OUTPUTS`` updated, then ``done`` (``(C,)``: the trajectory
        ended), ``diverged`` (``(C,)``: it ended in a divergence) and whether any
        trajectory ended.
    """
    (front, other, sub, prop, ck_a, ck_v, r_sum, sub_r_sum, energy0, log_w, sub_log_w,
     sub_pe, pe, sum_accept, leaf, depth, step, _, inv, log_u, log_v, turn_back) = args
    # the leapfrog step
    z, r, grad = front.unbind(1)
    r = torch.addcmul(r, step, grad, value=-0.5)
    z = torch.addcmul(z, step, velocity(r, inv))
    pe_new, grad = potential_and_grad(z)
    r = torch.addcmul(r, step, grad, value=-0.5)
    v = velocity(r, inv)
    delta = torch.nan_to_num(torch.add(pe_new - energy0, (r * v).sum(-1), alpha=0.5),
                             nan=float("inf"))
    front = torch.stack([z, r, grad], 1)
    # generalised no-U-turn criterion over the spans from each checkpoint to this leaf:
    # with a = (momentum sum up to a leaf) - (its momentum) / 2, a span's summed momentum
    # less half its two end momenta is a_leaf - a_checkpoint
    sub_r_sum = sub_r_sum + r
    a = torch.add(sub_r_sum, r, alpha=-0.5).unsqueeze(1)
    vv = v.unsqueeze(1)
    store, check = plans[leaf].unbind(1)
    rho = a - ck_a
    turning = torch.minimum((ck_v * rho).sum(-1), (vv * rho).sum(-1)) <= 0
    turn = (turning & check).any(-1)
    store = store.unsqueeze(-1)
    ck_a = torch.where(store, a, ck_a)
    ck_v = torch.where(store, vv, ck_v)
    # multinomial choice within the subtree, acceptance statistic, divergence
    minus_delta = -delta
    sub_log_w = torch.logaddexp(sub_log_w, minus_delta)
    take = log_u < minus_delta - sub_log_w
    sub = torch.where(_box(take), front, sub)
    sub_pe = torch.where(take, pe_new, sub_pe)
    sum_accept = sum_accept + torch.exp(minus_delta).clamp(max=1.0)
    diverged = delta > cfg.max_delta_energy
    leaf = leaf + 1
    full = torch.bitwise_right_shift(leaf, depth) > 0  # leaf == 2 ** depth
    stop = diverged | turn
    ok = full & ~stop
    # a complete subtree joins the trajectory; biased progressive sampling favours it
    take = ok & (log_v < sub_log_w - log_w)
    prop = torch.where(_box(take), sub, prop)
    pe = torch.where(take, sub_pe, pe)
    log_w = torch.where(ok, torch.logaddexp(log_w, sub_log_w), log_w)
    r_sum = torch.where(_column(ok), r_sum + sub_r_sum, r_sum)
    r_other = other[:, 1]
    rho = torch.sub(r_sum, r + r_other, alpha=0.5)
    turning = torch.minimum((v * rho).sum(-1), (velocity(r_other, inv) * rho).sum(-1)) <= 0
    go_on = ok & ~turning & (depth < cfg.max_tree_depth - 1)
    done = (full | stop) & ~go_on
    # the trajectories that go on double in a random direction: when it is the other side,
    # the ends swap roles and time runs the other way
    flip = _box(go_on) & turn_back
    front, other = torch.where(flip, other, front), torch.where(flip, front, other)
    step = torch.where(flip.view(-1, 1), -step, step)
    leaf = leaf.masked_fill(go_on, 0)
    depth = depth + go_on
    sub_log_w = sub_log_w.masked_fill(go_on, float("-inf"))
    sub_r_sum = sub_r_sum.masked_fill(_column(go_on), 0.0)
    new = (front, other, sub, prop, ck_a, ck_v, r_sum, sub_r_sum, energy0, log_w, sub_log_w,
           sub_pe, pe, sum_accept, leaf, depth, step, args[17], inv)
    return tuple(new[i] for i in LEAF_OUTPUTS) + (done, diverged, done.any())


def end_pass(cfg, tables, *args):
    """For the chains whose trajectory ended: the iteration's statistics and draw, the
    warm-up adaptation, and a new trajectory at the draw with a fresh momentum.

    :param PassConfig cfg: the static configuration.
    :param tables: ``(in_slow, slow_end)`` per warm-up iteration, see
        :func:`_window_tables`.
    :param args: the fields of a :class:`ChainsState`, then ``done`` and ``diverged`` from
        :func:`leaf_pass`, ``eps`` (``(C, D)`` standard normal: new momenta) and
        ``new_sign`` (``(C, 1)`` random signs: the directions of the first subtrees).
    :returns: the fields of :func:`end_outputs` updated, then ``row`` (``(C, 2 D + 6)``:
        the draw, its gradient, potential energy, acceptance statistic, divergence, leapfrog
        steps, tree depth, and the step size to go on with), ``slot`` (``(C,)``: ``1 +``
        the iteration the row belongs to for the chains that completed one, else ``0``),
        ``event`` (``(C,)``: the chain ended a slow adaptation window) and ``stats``
        (``(2 C,)``: the iterations completed and the events, to read with one transfer).
    """
    s = ChainsState(*args[:NUM_FIELDS])
    done, diverged, eps, new_sign = args[NUM_FIELDS:]
    dt = eps.dtype
    num_steps = torch.pow(2.0, s.depth.to(dt)) + (s.leaf - 1).to(dt)
    accept = s.sum_accept / num_steps
    step, t, da = s.step, s.t, DualAveragingState(*s[21:26])
    w_mean, w_m2, w_count = s.w_mean, s.w_m2, s.w_count
    event = torch.zeros_like(done)
    if cfg.warmup_steps > 0 and (cfg.adapt_step_size or cfg.adapt_mass_matrix):
        adapt = done & (t < cfg.warmup_steps)
        if cfg.adapt_step_size:
            new = dual_averaging_update(da, cfg.target_accept_prob - accept)
            da = DualAveragingState(*(torch.where(adapt, a1, a0) for a1, a0 in zip(new, da)))
            last = t == cfg.warmup_steps - 1
            log_step = torch.where(last, da.x_avg, da.x)
            step = torch.where(_column(adapt), torch.exp(_column(log_step)), step)
        if cfg.adapt_mass_matrix:
            in_slow, ends = tables
            tc = t.clamp(max=cfg.warmup_steps - 1)
            slow = adapt & in_slow[tc]
            w_mean, w_m2, w_count = welford_update(WelfordState(w_mean, w_m2, w_count),
                                                   s.prop[:, 0], mask=slow)
            event = slow & ends[tc]
    row = torch.cat([s.prop[:, 0], s.prop[:, 2], torch.stack(
        [s.pe, accept, diverged.to(dt), num_steps, (s.depth + 1).to(dt), step[:, 0]], -1)],
        -1)
    slot = torch.where(done, t + 1, torch.zeros_like(t))
    t = t + done.long()
    # new trajectories start at the draws
    r0 = eps * s.sqrt if s.sqrt.dim() == 2 else torch.matmul(
        s.sqrt, eps.unsqueeze(-1)).squeeze(-1)
    energy0 = torch.add(s.pe, (r0 * velocity(r0, s.inv)).sum(-1), alpha=0.5)
    momentum_row = torch.arange(3, device=eps.device).unsqueeze(-1) == 1
    start = torch.where(momentum_row, r0.unsqueeze(1), s.prop)
    d1, d3 = _column(done), _box(done)
    state = s._replace(
        front=torch.where(d3, start, s.front), other=torch.where(d3, start, s.other),
        r_sum=torch.where(d1, r0, s.r_sum), sub_r_sum=s.sub_r_sum.masked_fill(d1, 0.0),
        energy0=torch.where(done, energy0, s.energy0), log_w=s.log_w.masked_fill(done, 0.0),
        sub_log_w=s.sub_log_w.masked_fill(done, float("-inf")),
        sum_accept=s.sum_accept.masked_fill(done, 0.0), leaf=s.leaf.masked_fill(done, 0),
        depth=s.depth.masked_fill(done, 0),
        signed_step=torch.where(d1, new_sign * step, s.signed_step), step=step, t=t,
        da_x=da.x, da_x_avg=da.x_avg, da_g_avg=da.g_avg, da_t=da.t,
        da_prox=da.prox_center, w_mean=w_mean, w_m2=w_m2, w_count=w_count)
    return tuple(state[i] for i in end_outputs(cfg)) + (row, slot, event,
                                                         torch.cat([t, event.long()]))


def make_chain_passes(potential_and_grad, cfg, device):
    """The uncompiled :func:`leaf_pass` and :func:`end_pass` for configuration ``cfg`` (a
    :class:`PassConfig`), as functions of tensors only.

    :returns: ``(leaf, end, end_after_warmup)``, the last without the adaptation.
    """
    plans = _plan_table(cfg.max_tree_depth, device)
    tables = _window_tables(cfg.warmup_steps, device)
    after = cfg._replace(adapt_step_size=False, adapt_mass_matrix=False)

    def leaf(*args):
        return leaf_pass(potential_and_grad, cfg, plans, *args)

    def end(*args):
        return end_pass(cfg, tables, *args)

    def end_after_warmup(*args):
        return end_pass(after, tables, *args)

    return leaf, end, end_after_warmup


def init_chains(state, t, max_tree_depth, da=None, welford=None, sign=None, eps=None):
    """A :class:`ChainsState` whose chains start a trajectory at ``state``.

    :param HMCState state: positions, energies, gradients, step sizes and metrics.
    :param int t: iterations completed so far.
    :param DualAveragingState da: per-chain dual averaging (default: centred on
        ``log(10 * step_size)``).
    :param WelfordState welford: per-chain Welford estimates (default: empty).
    :param torch.Tensor sign: ``(C, 1)`` directions of the first subtrees (default random).
    :param torch.Tensor eps: ``(C, D)`` standard normal draws for the momenta (default
        fresh ones).
    """
    z, inv, sqrt = state.z, state.inverse_mass_matrix, state.mass_matrix_sqrt
    c = z.shape[:1]
    zeros = z.new_zeros(c)
    zero = torch.zeros(c, dtype=torch.long, device=z.device)
    if eps is None:
        eps = torch.randn_like(z)
    if sign is None:
        sign = torch.where(torch.rand_like(zeros) < 0.5, 1.0, -1.0).to(z).unsqueeze(-1)
    r0 = eps * sqrt if sqrt.dim() == 2 else torch.matmul(sqrt, eps.unsqueeze(-1)).squeeze(-1)
    energy0 = state.potential_energy + 0.5 * (r0 * velocity(r0, inv)).sum(-1)
    point = torch.stack([z, r0, state.z_grad], 1)
    ck = z.new_zeros(c + (max_tree_depth + 1,) + z.shape[1:])
    step = state.step_size
    if da is None:
        da = DualAveragingState(zeros, zeros, zeros, zeros, torch.log(10.0 * step))
    if welford is None:
        welford = WelfordState(torch.zeros_like(z), torch.zeros_like(inv), zeros)
    return ChainsState(
        point, point, point, point, ck, ck, r0, torch.zeros_like(z), energy0, zeros,
        torch.full_like(zeros, float("-inf")), state.potential_energy, state.potential_energy,
        zeros, zero, zero, sign * step.unsqueeze(-1), step.unsqueeze(-1), inv, sqrt, zero + t,
        *da, *welford)


def example_inputs(z, inv, max_tree_depth, seed=0):
    """Inputs of the right shapes, dtypes and devices to trace :func:`leaf_pass` and
    :func:`end_pass` with: chains at different places in their trajectories.

    :returns: ``(leaf inputs, end inputs)``.
    """
    gen = torch.Generator(device=z.device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=gen, dtype=z.dtype, device=z.device)

    c, d = z.shape
    pe = randn(c)
    state = HMCState(z + 0.1 * randn(c, d), pe, randn(c, d), 0.05 + 0.1 * randn(c).abs(),
                     inv, mass_matrix_sqrt(inv))
    s = init_chains(state, 0, max_tree_depth, eps=randn(c, d),
                    sign=torch.where(randn(c, 1) > 0, 1.0, -1.0).to(z))
    mixed = torch.arange(c, device=z.device) % 3
    s = s._replace(
        front=s.front + 0.1 * randn(c, 3, d), other=s.other + 0.1 * randn(c, 3, d),
        ck_a=randn(c, max_tree_depth + 1, d), ck_v=randn(c, max_tree_depth + 1, d),
        energy0=pe + 1.0, leaf=(mixed == 2).long(), depth=(mixed == 2).long(),
        sub_log_w=torch.where(mixed == 2, randn(c), s.sub_log_w))
    log_u = torch.rand((2, c), generator=gen, dtype=z.dtype, device=z.device).log()
    signs = torch.where(randn(c, 1) > 0, 1.0, -1.0).to(z)
    leaf_args = tuple(s[:NUM_LEAF_FIELDS]) + (log_u[0], log_u[1], signs.view(-1, 1, 1) > 0)
    done, diverged = mixed != 1, mixed == 0
    end_args = tuple(s) + (done, diverged, randn(c, d), -signs)
    return leaf_args, end_args
