"""Hamiltonian Monte Carlo with Pyro's interface.

:class:`HMC` holds configuration and warm-up adaptation; the transitions are the pure
functions of :mod:`probpl.infer.mcmc.trajectory`.  All chains handed to a kernel form one
batch with per-chain step sizes and mass matrices.
"""

import math

import torch

from probpl.infer.autoguide.initialization import init_to_uniform
from probpl.infer.mcmc.adaptation import WarmupAdapter
from probpl.infer.mcmc.mcmc_kernel import MCMCKernel
from probpl.infer.mcmc.potential import (
    FlatLayout,
    SiteSpec,
    batched_potential_and_grad,
    compile_leaf,
)
from probpl.infer.mcmc.trajectory import (
    hmc_step,
    init_state,
    leaf_example_inputs,
    leapfrog_from_leaf,
    make_leaf_fn,
)
from probpl.infer.mcmc.util import CompiledModel


class _Identity:
    # maps unconstrained to constrained for user-supplied potentials
    def __call__(self, x):
        return x

    def inv(self, x):
        return x


class HMC(MCMCKernel):
    """Hamiltonian Monte Carlo with a fixed trajectory length.

    :param callable model: a model (or give ``potential_fn``).
    :param callable potential_fn: potential energy of a dict of unconstrained values; needs
        ``initial_params`` (on the kernel or the MCMC driver).
    :param float step_size: initial step size.
    :param float trajectory_length: integration time (default ``2 * pi``); the number of
        steps is ``trajectory_length / step_size``.
    :param int num_steps: fixed number of leapfrog steps (overrides trajectory_length).
    :param bool adapt_step_size: adapt the step size by dual averaging during warm-up.
    :param bool adapt_mass_matrix: estimate the mass matrix during warm-up.
    :param bool full_mass: dense rather than diagonal mass matrix.
    :param dict transforms: site name to a transform from constrained to unconstrained space.
    :param int max_plate_nesting: accepted for compatibility.
    :param bool jit_compile: trace the leapfrog step (model potential, gradient, energy and
        U-turn checks) once and run it as one compiled graph.  The default ``None`` compiles
        whenever that is safe -- the model's control flow and shapes must not depend on the
        latent values, which the tracer enforces and a comparison with eager evaluation at
        two points confirms -- and silently evaluates eagerly otherwise; ``True`` also warns
        when compiling fails, ``False`` never compiles.  The draws are the same either way
        up to floating-point rounding.
    :param callable init_strategy: initialisation strategy.
    :param float target_accept_prob: target acceptance statistic for step size adaptation.

    References

    1. R. M. Neal (2011), "MCMC using Hamiltonian dynamics", Handbook of MCMC.
    """

    supports_vectorized_chains = True
    _flat_state = True  # the driver reads draws off ``_state.z`` (see ``api._run_flat``)
    # set by setup; compiled functions do not travel to worker processes
    _runtime = ("_state", "_compiled", "_potential_and_grad", "_leaf", "_adapter", "_layout",
                "_last_info")

    def __init__(self, model=None, potential_fn=None, step_size=1, trajectory_length=None,
                 num_steps=None, adapt_step_size=True, adapt_mass_matrix=True, full_mass=False,
                 transforms=None, max_plate_nesting=None, jit_compile=None, jit_options=None,
                 ignore_jit_warnings=False, target_accept_prob=0.8,
                 init_strategy=init_to_uniform, min_stepsize=1e-10, max_stepsize=1e10):
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of model and potential_fn")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}")
        self.model = model
        self.potential_fn = potential_fn
        self.step_size = float(step_size)
        self.trajectory_length = (
            2 * math.pi if trajectory_length is None and num_steps is None else trajectory_length
        )
        self.num_steps = num_steps
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix
        self.full_mass = full_mass
        self.transforms = transforms
        self.max_plate_nesting = max_plate_nesting
        self.jit_compile = jit_compile
        self.target_accept_prob = target_accept_prob
        self.init_strategy = init_strategy
        self._state = None
        self._compiled = None
        self._initial_params = None
        self._last_info = None

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._runtime:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._state = self._compiled = self._last_info = None

    # ----- setup -----

    def _build(self, num_chains, args, kwargs, initial_params):
        if self.model is not None:
            self._compiled = CompiledModel(self.model, args, kwargs, self.transforms,
                                           self.init_strategy)
            layout = self._compiled.layout
            z = self._compiled.initial_points(num_chains, initial_params=initial_params)
            flat = self._compiled.flat_potential
            self.transforms = self._compiled.transforms
        else:
            if initial_params is None:
                raise ValueError("HMC/NUTS with potential_fn need initial_params")
            batch = (num_chains,) if num_chains > 1 else ()
            specs, offset = [], 0
            for name, v in initial_params.items():
                shape = v.shape[len(batch):]
                specs.append(SiteSpec(name, offset, shape.numel(), shape, _Identity()))
                offset += shape.numel()
            layout = FlatLayout(specs)
            z = layout.pack(initial_params, batch).reshape(num_chains, -1).detach()
            user_fn = self.potential_fn

            def flat(zi):
                return user_fn(layout.unpack(zi))

            self.transforms = {}
        self._layout = layout
        return z, flat

    def _leaf_builder(self, z, inv):
        # the leaf function of the transition and example inputs to compile it with
        return make_leaf_fn, lambda seed: leaf_example_inputs(z, inv, 1, seed)

    def _leaf_leapfrog(self, z):
        # plain leapfrog steps on the (compiled) leaf function, for the step-size search
        return leapfrog_from_leaf(self._leaf, 1, batched=False)

    def setup(self, warmup_steps, *args, num_chains=1, initial_params=None, **kwargs):
        """Compile the model, find initial points for ``num_chains`` chains and start
        warm-up."""
        initial_params = self._initial_params if initial_params is None else initial_params
        self._warmup_steps = warmup_steps
        z, flat = self._build(num_chains, args, kwargs, initial_params)
        self._potential_and_grad = batched_potential_and_grad(flat, z, False)
        dim = z.shape[-1]
        if self.full_mass:
            inv = torch.eye(dim, dtype=z.dtype, device=z.device).expand(num_chains, dim, dim)
        else:
            inv = torch.ones_like(z)
        build, example_inputs = self._leaf_builder(z, inv)
        self._leaf = compile_leaf(flat, build, example_inputs, self.jit_compile)
        if self._leaf is None:
            self._leaf = build(self._potential_and_grad)
        self._state = init_state(z, self._potential_and_grad, self.step_size, inv.clone())
        self._adapter = WarmupAdapter(warmup_steps, self.adapt_step_size,
                                      self.adapt_mass_matrix, self.full_mass,
                                      self.target_accept_prob)
        self._state = self._adapter.start(self._state, self._potential_and_grad,
                                          leapfrog=self._leaf_leapfrog(z))
        self._t = 0

    # ----- transitions -----

    def _transition(self, state):
        if self.num_steps is not None:
            steps = self.num_steps
        else:
            steps = (self.trajectory_length / state.step_size).floor().clamp(min=1).long()
        return hmc_step(state, self._potential_and_grad, steps, leaf_fn=self._leaf)

    def step(self):
        """Advance all chains one iteration (adapting during warm-up).

        :returns: the :class:`~probpl.infer.mcmc.trajectory.HMCInfo` of the transition.
        """
        state, info = self._transition(self._state)
        if self._t < self._warmup_steps:
            state = self._adapter.step(self._t, state, info.accept_prob, self._potential_and_grad)
        self._state = state
        self._t += 1
        self._last_info = info
        return info

    def sample(self, params):
        """Pyro's interface: one transition from ``params`` (unconstrained values)."""
        batch = self._state.z.shape[:1] if self._state.z.shape[0] > 1 else ()
        z = self._layout.pack(params, batch).reshape(self._state.z.shape)
        if not torch.equal(z, self._state.z):
            pe, grad = self._potential_and_grad(z)
            self._state = self._state._replace(z=z, potential_energy=pe, z_grad=grad)
        self.step()
        out = self._layout.unpack(self._state.z)
        return out if batch else {k: v[0] for k, v in out.items()}

    @property
    def inverse_mass_matrix(self):
        return None if self._state is None else self._state.inverse_mass_matrix

    @property
    def post_warmup_state(self):
        """The state (positions, step sizes, metric) reached by warm-up."""
        return self._state

    def logging(self):
        if self._last_info is None:
            return {}
        return {
            "step size": f"{float(self._state.step_size.mean()):.2e}",
            "acc. prob": f"{float(self._last_info.accept_prob.mean()):.3f}",
        }
