"""The loop over passes of vectorized NUTS chains that each build their own trajectories
(the passes themselves are in :mod:`probpl.infer.mcmc.nuts_chains`).

:class:`ChainRunner` draws the passes' random numbers in blocks, runs the leaf pass, and
the end-of-trajectory pass when some trajectory ended; it stores the draws of every chain
by iteration, handles the ends of slow adaptation windows (new metric, step-size search),
and hands the driver iteration ``i`` of all chains once the slowest chain has completed it.
"""

import torch

from probpl.infer.mcmc.adaptation import find_reasonable_step_size
from probpl.infer.mcmc.nuts_chains import (
    LEAF_OUTPUTS,
    NUM_LEAF_FIELDS,
    ChainsState,
    end_outputs,
    init_chains,
)
from probpl.infer.mcmc.trajectory import HMCInfo, HMCState, mass_matrix_sqrt
from probpl.ops.dual_averaging import DualAveragingState
from probpl.ops.welford import WelfordState, welford_final


def _column(x):
    return x.unsqueeze(-1)


def pass_leapfrog(leaf_fn, max_tree_depth):
    """Plain leapfrog steps ``(z, r, grad, step (C, 1), inv) -> (z, r, grad, potential)``
    run by a (compiled) :func:`~probpl.infer.mcmc.nuts_chains.leaf_pass`, for the step-size
    search."""
    fields = [ChainsState._fields[i] for i in LEAF_OUTPUTS]
    front, sub_pe = fields.index("front"), fields.index("sub_pe")

    def leapfrog(z, r, grad, step, inv):
        c = z.shape[:1]
        zeros = z.new_zeros(c)
        inf = torch.full_like(zeros, float("inf"))
        zero = torch.zeros(c, dtype=torch.long, device=z.device)
        point = torch.stack([z, r, grad], 1)
        ck = z.new_zeros(c + (max_tree_depth + 1,) + z.shape[1:])
        # a first leaf whose subtree has no weight yet is always its proposal when its energy
        # is finite: the subtree's proposal energy is the leaf's (else it stays infinite)
        out = leaf_fn(point, point, point, point, ck, ck, r, torch.zeros_like(r), zeros,
                      zeros, -inf, inf, zeros, zeros, zero, zero, step, step, inv, -inf,
                      zeros, torch.zeros(c + (1, 1), dtype=torch.bool, device=z.device))
        new = out[front]
        return new[:, 0], new[:, 1], new[:, 2], out[sub_pe]

    return leapfrog


class ChainRunner:
    """Runs the passes of :mod:`~probpl.infer.mcmc.nuts_chains` and keeps every chain's draws
    by iteration.

    :param callable leaf_fn: the (compiled) :func:`~probpl.infer.mcmc.nuts_chains.leaf_pass`.
    :param end_fns: the (compiled) :func:`~probpl.infer.mcmc.nuts_chains.end_pass` with
        warm-up adaptation, and the one without for when every chain is past warm-up.
    :param PassConfig cfg: their configuration.
    :param HMCState state: where the chains start.
    :param int t: iterations the chains have completed.
    :param callable potential_and_grad: the batched potential, for the step-size search.
    :param callable leapfrog: the (compiled) leapfrog of the step-size search.
    :param ChainsState adaptation: a state to take the warm-up adaptation from.
    """

    block = 64  # passes whose random numbers are drawn at once

    def __init__(self, leaf_fn, end_fns, cfg, state, t, potential_and_grad, leapfrog,
                 adaptation=None):
        self.leaf_fn, self.end_fns, self.cfg = leaf_fn, end_fns, cfg
        self.potential_and_grad, self.leapfrog = potential_and_grad, leapfrog
        da = welford = None
        if adaptation is not None:
            a = ChainsState(*adaptation)
            da = DualAveragingState(a.da_x, a.da_x_avg, a.da_g_avg, a.da_t, a.da_prox)
            welford = WelfordState(a.w_mean, a.w_m2, a.w_count)
        self.state = list(init_chains(state, t, cfg.max_tree_depth, da, welford))
        after = cfg._replace(adapt_step_size=False, adapt_mass_matrix=False)
        self._end_outputs = (end_outputs(cfg), end_outputs(after))
        z = state.z
        self._chains = torch.arange(z.shape[0], device=z.device)
        self.rows = z.new_zeros((z.shape[0], t + 65, 2 * z.shape[1] + 6))
        self.done_until = t  # every chain has completed this many iterations
        self.next_t = t  # the iteration the driver asks for next
        self.num_passes = 0
        self._random = []

    def _draws(self):
        if not self._random:
            z = self.state[0]
            c, d = z.shape[0], z.shape[-1]
            b = self.block
            like = dict(dtype=z.dtype, device=z.device)
            log_u = torch.rand((b, 2, c), **like).log_()
            coins = torch.rand((b, 2, c), **like) < 0.5
            turn_back = coins[:, 0].view(b, c, 1, 1)
            signs = torch.where(coins[:, 1], 1.0, -1.0).to(**like).unsqueeze(-1)
            eps = torch.randn((b, c, d), **like)
            self._random = list(zip(log_u[:, 0].unbind(0), log_u[:, 1].unbind(0),
                                    turn_back.unbind(0), signs.unbind(0), eps.unbind(0)))[::-1]
        return self._random.pop()

    def run_until(self, t):
        """Run passes until every chain has completed ``t`` iterations."""
        n, k = NUM_LEAF_FIELDS, len(LEAF_OUTPUTS)
        leaf_fn, state = self.leaf_fn, self.state
        while self.done_until < t:
            log_u, log_v, turn_back, signs, eps = self._draws()
            out = leaf_fn(*state[:n], log_u, log_v, turn_back)
            self.num_passes += 1
            for i, value in zip(LEAF_OUTPUTS, out):
                state[i] = value
            if not out[k + 2]:
                continue
            after = self.done_until >= self.cfg.warmup_steps
            out = self.end_fns[after](*state, out[k], out[k + 1], eps, signs)
            fields = self._end_outputs[after]
            for i, value in zip(fields, out):
                state[i] = value
            row, slot, event, stats = out[len(fields):]
            stats = stats.tolist()
            ts = stats[:len(stats) // 2]
            least, most, any_event = min(ts), max(ts), any(stats[len(ts):])
            if most >= self.rows.shape[1]:
                grown = self.rows.new_zeros(self.rows.shape[:1] + (2 * most,)
                                            + self.rows.shape[2:])
                grown[:, :self.rows.shape[1]] = self.rows
                self.rows = grown
            self.rows.index_put_((self._chains, slot), row)
            if any_event:
                self._end_windows(event)
                state = self.state
            self.done_until = least

    def _end_windows(self, ended):
        # chains at the end of a slow window: the metric becomes the window's estimate, the
        # estimate restarts, the step size is searched for afresh under the new metric, and
        # the trajectory just started is restarted under it
        s = ChainsState(*self.state)
        welford = WelfordState(s.w_mean[ended], s.w_m2[ended], s.w_count[ended])
        inv = s.inv.clone()
        inv[ended] = welford_final(welford).to(inv)
        keep = ended.reshape((-1,) + (1,) * (inv.dim() - 1))
        sqrt = torch.where(keep, mass_matrix_sqrt(inv), s.sqrt)
        s = s._replace(inv=inv, sqrt=sqrt,
                       w_mean=s.w_mean.masked_fill(_column(ended), 0.0),
                       w_m2=s.w_m2.masked_fill(keep, 0.0),
                       w_count=s.w_count.masked_fill(ended, 0.0))
        step = s.step[:, 0]
        current = HMCState(s.prop[:, 0], s.pe, s.prop[:, 2], step, inv, sqrt)
        if self.cfg.adapt_step_size:
            found = find_reasonable_step_size(current, self.potential_and_grad,
                                              leapfrog=self.leapfrog, active=ended)
            step = torch.where(ended, found, step)
            zeros = torch.zeros_like(step)
            s = s._replace(
                step=_column(step), da_x=torch.where(ended, zeros, s.da_x),
                da_x_avg=torch.where(ended, zeros, s.da_x_avg),
                da_g_avg=torch.where(ended, zeros, s.da_g_avg),
                da_t=torch.where(ended, zeros, s.da_t),
                da_prox=torch.where(ended, torch.log(10.0 * step), s.da_prox))
        restart = init_chains(current._replace(step_size=step), 0, self.cfg.max_tree_depth,
                              sign=torch.sign(s.signed_step))
        fields = ("front", "other", "r_sum", "energy0", "signed_step")
        s = s._replace(**{f: torch.where(ended.reshape((-1,) + (1,) * (getattr(s, f).dim() - 1)),
                                         getattr(restart, f), getattr(s, f)) for f in fields})
        self.state = list(s)

    def iteration(self, i):
        """The draws and statistics of iteration ``i`` (0-based) of every chain.

        :returns: ``(HMCState, HMCInfo)``.
        """
        self.run_until(i + 1)
        row = self.rows[:, i + 1]
        s = ChainsState(*self.state)
        d = s.front.shape[-1]
        z, grad = row[:, :d], row[:, d:2 * d]
        pe, accept, diverging, num_steps, depth, step = row[:, 2 * d:].unbind(-1)
        state = HMCState(z, pe, grad, step, s.inv, s.sqrt)
        info = HMCInfo(accept, diverging > 0, num_steps.long(), depth.long())
        return state, info
