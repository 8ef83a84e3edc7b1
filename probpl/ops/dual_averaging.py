"""Nesterov's dual averaging, used to adapt the HMC step size during warm-up.

Pure functions ``(dual_averaging_init, dual_averaging_update, dual_averaging_final)`` over
a :class:`DualAveragingState`.  The state fields may be Python floats or tensors (one entry
per chain), so many chains adapt independently in one call.  :class:`DualAveraging` is a
stateful wrapper with Pyro's interface.

References

1. Y. Nesterov (2009), "Primal-dual subgradient methods for convex problems",
   Mathematical Programming 120(1).
2. M. D. Hoffman, A. Gelman (2014), "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", JMLR 15, section 3.2.1.
"""

from typing import Any, NamedTuple


class DualAveragingState(NamedTuple):
    x: Any  # latest iterate (log step size)
    x_avg: Any  # weighted average of the iterates, the value returned at the end
    g_avg: Any  # running average of the observed gradients
    t: Any  # number of updates so far (an int, or a float tensor with one count per chain)
    prox_center: Any  # point the iterates are shrunk towards


def dual_averaging_init(prox_center=0.0):
    """:param prox_center: the point iterates are shrunk towards (for the step size,
        ``log(10 * step_size)``); a float or a tensor with one entry per chain.
    :returns: a fresh :class:`DualAveragingState`.
    """
    zero = prox_center * 0.0
    return DualAveragingState(zero, zero, zero, 0, prox_center)


def dual_averaging_update(state, g, t0=10.0, kappa=0.75, gamma=0.05):
    """One update given the (stochastic) gradient ``g`` at the current iterate.

    :param g: for step-size adaptation, ``target_accept_prob - accept_prob``.
    :param float t0: stabilises the first iterations.
    :param float kappa: decay exponent of the averaging weights, in (0.5, 1].
    :param float gamma: controls how far the iterates stray from ``prox_center``.
    :returns: the updated state; ``state.x`` is the next point to try.
    """
    t = state.t + 1
    w = 1.0 / (t + t0)
    g_avg = (1.0 - w) * state.g_avg + w * g
    x = state.prox_center - (t ** 0.5 / gamma) * g_avg
    eta = t ** (-kappa)
    x_avg = (1.0 - eta) * state.x_avg + eta * x
    return DualAveragingState(x, x_avg, g_avg, t, state.prox_center)


def dual_averaging_final(state):
    """:returns: ``(x, x_avg)``: the last iterate and the averaged iterate."""
    return state.x, state.x_avg


class DualAveraging:
    """Stateful wrapper with Pyro's interface (``step(g)``, ``get_state()``, ``reset()``)."""

    def __init__(self, prox_center=0, t0=10, kappa=0.75, gamma=0.05):
        self.prox_center = prox_center
        self.t0, self.kappa, self.gamma = t0, kappa, gamma
        self.reset()

    def reset(self):
        self._state = dual_averaging_init(self.prox_center)

    def step(self, g):
        self._state = dual_averaging_update(self._state, g, self.t0, self.kappa, self.gamma)

    def get_state(self):
        return dual_averaging_final(self._state)
