"""Warm-up adaptation of the step size and the mass matrix, as in Stan.

Warm-up is split into windows (:func:`build_adaptation_schedule`): a fast initial window
that adapts only the step size, slow windows of doubling length in which the mass matrix
is estimated (Welford) and replaced at each window's end, and a fast final window.  The
step size follows dual averaging throughout and is restarted, from a freshly found
reasonable value, after every metric update.  :class:`WarmupAdapter` keeps one step size
and one metric per chain and updates them all with tensor operations.

References

1. Stan Development Team, "Stan Reference Manual", section "HMC algorithm parameters":
   automatic parameter tuning.
2. M. D. Hoffman, A. Gelman (2014), "The No-U-Turn Sampler", JMLR 15, algorithm 4 (finding
   a reasonable initial step size).
"""

import math
from typing import NamedTuple

import torch

from probpl.infer.mcmc.trajectory import _leapfrog, init_state, sample_momentum
from probpl.ops.dual_averaging import dual_averaging_init, dual_averaging_update
from probpl.ops.integrator import kinetic_energy
from probpl.ops.welford import welford_final, welford_init, welford_update


class Window(NamedTuple):
    start: int  # first warm-up iteration of the window
    end: int  # last warm-up iteration of the window (inclusive)


def build_adaptation_schedule(num_steps, init_buffer=75, term_buffer=50, base_window=25):
    """Stan's windowed warm-up schedule.

    :param int num_steps: number of warm-up iterations.
    :returns: a list of :class:`Window`; the first and last are fast (step size only), the
        ones in between are slow (metric estimation).  With fewer than 20 steps there is a
        single fast window; when the buffers do not fit they are scaled to 15% / 75% / 10%.
    """
    if num_steps <= 0:
        return []
    if num_steps < 20:
        return [Window(0, num_steps - 1)]
    if init_buffer + base_window + term_buffer > num_steps:
        init_buffer = int(0.15 * num_steps)
        term_buffer = int(0.1 * num_steps)
        base_window = num_steps - init_buffer - term_buffer
    windows = [Window(0, init_buffer - 1)]
    end_slow = num_steps - term_buffer
    start, size = init_buffer, base_window
    while start < end_slow:
        end = start + size
        # a window whose successor would not fit absorbs the rest of the slow phase
        if end + 2 * size > end_slow:
            end = end_slow
        windows.append(Window(start, end - 1))
        start, size = end, 2 * size
    windows.append(Window(end_slow, num_steps - 1))
    return windows


def find_reasonable_step_size(state, potential_and_grad, max_iters=100, leapfrog=None,
                              active=None):
    """Double or halve each chain's step size until one leapfrog step's acceptance
    probability crosses 0.8.

    :param callable leapfrog: ``(z, r, grad, step (C, 1), inv) -> (z, r, grad, potential)``,
        a (compiled) leapfrog step; by default one built on ``potential_and_grad``.
    :param torch.Tensor active: ``(C,)`` bool, the chains to search for (default all); the
        others keep their step size.
    :returns: the step sizes, ``(C,)``.
    """
    if leapfrog is None:

        def leapfrog(z, r, grad, step, inv):
            return _leapfrog(z, r, grad, step, inv, potential_and_grad)

    z, pe, grad = state.z, state.potential_energy, state.z_grad
    inv = state.inverse_mass_matrix
    r = sample_momentum(state)
    energy0 = pe + kinetic_energy(r, inv)
    log_target = math.log(0.8)
    step = state.step_size.clone()
    direction = None
    done = torch.zeros_like(pe, dtype=torch.bool) if active is None else ~active
    for _ in range(max_iters):
        _, r1, _, pe1 = leapfrog(z, r, grad, step.unsqueeze(-1), inv)
        delta = torch.nan_to_num(energy0 - pe1 - kinetic_energy(r1, inv), nan=-math.inf)
        if direction is None:
            direction = torch.where(delta > log_target, 2.0, 0.5).to(step)
        crossed = torch.where(direction > 1, delta <= log_target, delta >= log_target)
        done = done | crossed
        if bool(done.all()):
            break
        step = torch.where(done, step, step * direction)
        step = step.clamp(min=1e-10, max=1e7)
    return step


class WarmupAdapter:
    """Per-chain step size and metric adaptation over Stan's schedule.

    :param int num_steps: warm-up iterations.
    :param bool adapt_step_size: adapt the step size by dual averaging.
    :param bool adapt_mass_matrix: estimate the metric in the slow windows.
    :param bool dense_mass: estimate a dense rather than diagonal metric.
    :param float target_accept_prob: target of the mean acceptance statistic.
    """

    def __init__(self, num_steps, adapt_step_size=True, adapt_mass_matrix=True,
                 dense_mass=False, target_accept_prob=0.8):
        self.num_steps = num_steps
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix
        self.dense_mass = dense_mass
        self.target_accept_prob = target_accept_prob
        self.windows = build_adaptation_schedule(num_steps)
        self._slow_ends = {w.end for w in self.windows[1:-1]}
        self._slow = [(w.start, w.end) for w in self.windows[1:-1]]
        self._da = None
        self._welford = None
        self._leapfrog = None

    def start(self, state, potential_and_grad, leapfrog=None):
        """Begin warm-up from ``state``; returns the state with a reasonable step size.

        :param callable leapfrog: see :func:`find_reasonable_step_size`.
        """
        self._leapfrog = leapfrog
        if self.adapt_step_size and self.num_steps > 0:
            step = find_reasonable_step_size(state, potential_and_grad, leapfrog=leapfrog)
            state = state._replace(step_size=step)
            self._da = _dual_averaging_start(step)
        if self.adapt_mass_matrix:
            self._welford = welford_init(state.z, dense=self.dense_mass)
        return state

    def _in_slow(self, t):
        return any(a <= t <= b for a, b in self._slow)

    def step(self, t, state, accept_prob, potential_and_grad):
        """Adapt after warm-up iteration ``t`` (0-based) given its acceptance statistic.

        :returns: the state carrying the adapted step size and metric.
        """
        if self.adapt_step_size:
            if isinstance(self._da.x, float):
                accept_prob = float(accept_prob)
            g = self.target_accept_prob - accept_prob
            self._da = dual_averaging_update(self._da, g)
            state = state._replace(step_size=_exp(self._da.x, state.step_size))
        if self.adapt_mass_matrix and self._in_slow(t):
            self._welford = welford_update(self._welford, state.z)
            if t in self._slow_ends:
                inv = welford_final(self._welford)
                state = init_state(state.z, lambda z: (state.potential_energy, state.z_grad),
                                   state.step_size, inv)
                self._welford = welford_init(state.z, dense=self.dense_mass)
                if self.adapt_step_size:
                    step = find_reasonable_step_size(state, potential_and_grad,
                                                     leapfrog=self._leapfrog)
                    state = state._replace(step_size=step)
                    self._da = _dual_averaging_start(step)
        if t == self.num_steps - 1 and self.adapt_step_size:
            state = state._replace(step_size=_exp(self._da.x_avg, state.step_size))
        return state


def _dual_averaging_start(step):
    # one chain adapts on Python floats: a dozen operations on one-element tensors per
    # iteration cost far more than the arithmetic
    if step.numel() == 1:
        return dual_averaging_init(math.log(10.0 * float(step)))
    return dual_averaging_init(torch.log(10.0 * step))


def _exp(x, like):
    if isinstance(x, float):
        return torch.full_like(like, math.exp(x))
    return torch.exp(x)
