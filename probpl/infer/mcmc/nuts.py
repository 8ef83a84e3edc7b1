"""The No-U-Turn sampler with Pyro's interface.  One chain runs the transition
:func:`probpl.infer.mcmc.trajectory.nuts_step`; a batch of chains runs
:class:`probpl.infer.mcmc.chain_runner.ChainRunner`, where each chain builds its own
trajectories and adapts on its own."""

from probpl.infer.autoguide.initialization import init_to_uniform
from probpl.infer.mcmc.chain_runner import ChainRunner, pass_leapfrog
from probpl.infer.mcmc.hmc import HMC
from probpl.infer.mcmc.nuts_chains import PassConfig, example_inputs, make_chain_passes
from probpl.infer.mcmc.trajectory import (
    leapfrog_from_leaf,
    make_nuts_leaf_fn,
    nuts_leaf_example_inputs,
    nuts_step,
)


class NUTS(HMC):
    """No-U-Turn sampler: HMC whose trajectory length is chosen per iteration by repeated
    doubling until the trajectory turns back on itself, with multinomial sampling of the
    next state.

    :param int max_tree_depth: at most ``2 ** max_tree_depth`` leapfrog steps per iteration.
    :param bool use_multinomial_sampling: accepted for compatibility; sampling is always
        multinomial.

    The other arguments are those of :class:`~probpl.infer.mcmc.hmc.HMC`.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer import MCMC, NUTS
        >>> def model():
        ...     probpl.sample("x", dist.Normal(0.0, 1.0))
        >>> mcmc = MCMC(NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["x"].shape
        torch.Size([20])

    References

    1. M. D. Hoffman, A. Gelman (2014), "The No-U-Turn Sampler", JMLR 15.
    2. M. Betancourt (2017), "A Conceptual Introduction to Hamiltonian Monte Carlo",
       arXiv:1701.02434.
    """

    def __init__(self, model=None, potential_fn=None, step_size=1, adapt_step_size=True,
                 adapt_mass_matrix=True, full_mass=False, use_multinomial_sampling=True,
                 transforms=None, max_plate_nesting=None, jit_compile=None, jit_options=None,
                 ignore_jit_warnings=False, target_accept_prob=0.8, max_tree_depth=10,
                 init_strategy=init_to_uniform):
        super().__init__(model, potential_fn, step_size, adapt_step_size=adapt_step_size,
                         adapt_mass_matrix=adapt_mass_matrix, full_mass=full_mass,
                         transforms=transforms, max_plate_nesting=max_plate_nesting,
                         jit_compile=jit_compile, target_accept_prob=target_accept_prob,
                         init_strategy=init_strategy)
        if max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be at least 1, got {max_tree_depth}")
        self.max_tree_depth = max_tree_depth

    _runtime = HMC._runtime + ("_end", "_runner", "_runner_state")

    # A batch of chains runs passes of one leapfrog step per chain, each chain at its own
    # place in its own trajectory (nuts_chains); a single chain runs nuts_step.

    def _pass_config(self):
        return PassConfig(self.max_tree_depth, 1000.0, self._warmup_steps,
                          self.adapt_step_size, self.adapt_mass_matrix,
                          self.target_accept_prob)

    def _leaf_builder(self, z, inv):
        if z.shape[0] > 1:
            cfg = self._pass_config()

            def build_leaf_pass(potential_and_grad):
                return make_chain_passes(potential_and_grad, cfg, z.device)[0]

            return build_leaf_pass, lambda seed: example_inputs(z, inv, self.max_tree_depth,
                                                                seed)[0]

        def build(potential_and_grad):
            return make_nuts_leaf_fn(potential_and_grad, z.shape[0])

        return build, lambda seed: nuts_leaf_example_inputs(z, inv, self.max_tree_depth, seed)

    def _leaf_leapfrog(self, z):
        if z.shape[0] > 1:
            return pass_leapfrog(self._leaf, self.max_tree_depth)
        return leapfrog_from_leaf(self._leaf, self.max_tree_depth, batched=False)

    def setup(self, warmup_steps, *args, **kwargs):
        self._runner = self._runner_state = None
        super().setup(warmup_steps, *args, **kwargs)
        z = self._state.z
        if z.shape[0] > 1:
            from probpl.infer.mcmc.compile import compile_function, is_compiled

            # the end-of-trajectory passes have no potential in them: they compile whenever
            # the leaf pass did
            inv = self._state.inverse_mass_matrix
            ends = list(make_chain_passes(None, self._pass_config(), z.device)[1:])
            if is_compiled(self._leaf):
                inputs = [example_inputs(z, inv, self.max_tree_depth, seed)[1]
                          for seed in (0, 1)]
                for i, end in enumerate(ends):
                    try:
                        ends[i] = compile_function(lambda functional, end=end: end,
                                                   inputs[0], inputs[1:])
                    except Exception:  # noqa: BLE001 - the eager function is always correct
                        pass
            self._end = tuple(ends)

    def _transition(self, state):
        return nuts_step(state, self._potential_and_grad, self.max_tree_depth,
                         leaf_fn=self._leaf)

    def step(self):
        """Advance all chains one iteration (adapting during warm-up).

        With several chains, the chains progress independently: this returns iteration
        ``t`` of every chain once the slowest has completed it (faster chains may already
        be further on).

        :returns: the :class:`~probpl.infer.mcmc.trajectory.HMCInfo` of the iteration.
        """
        if self._state.z.shape[0] == 1:
            return super().step()
        runner = getattr(self, "_runner", None)
        if runner is None or self._state is not self._runner_state or self._t != runner.next_t:
            # a new run, a continued one, or a state set from outside: trajectories restart
            # from the current state; warm-up adaptation carries on where it was
            adaptation = runner.state if runner is not None else None
            runner = self._runner = ChainRunner(
                self._leaf, self._end, self._pass_config(), self._state, self._t,
                self._potential_and_grad, self._leaf_leapfrog(self._state.z), adaptation)
        state, info = runner.iteration(self._t)
        self._t += 1
        runner.next_t = self._t
        self._state = self._runner_state = state
        self._last_info = info
        return info

    def logging(self):
        out = super().logging()
        if self._last_info is not None:
            out["depth"] = int(self._last_info.tree_depth.max())
        return out
