"""The No-U-Turn sampler with Pyro's interface; the transition itself is
:func:`probpl.infer.mcmc.trajectory.nuts_step`."""

from probpl.infer.autoguide.initialization import init_to_uniform
from probpl.infer.mcmc.hmc import HMC
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

    def _leaf_builder(self, z, inv):
        def build(potential_and_grad):
            return make_nuts_leaf_fn(potential_and_grad, z.shape[0])

        return build, lambda seed: nuts_leaf_example_inputs(z, inv, self.max_tree_depth, seed)

    def _leaf_leapfrog(self, z):
        return leapfrog_from_leaf(self._leaf, self.max_tree_depth, batched=z.shape[0] > 1)

    def _transition(self, state):
        return nuts_step(state, self._potential_and_grad, self.max_tree_depth,
                         leaf_fn=self._leaf)

    def logging(self):
        out = super().logging()
        if self._last_info is not None:
            out["depth"] = int(self._last_info.tree_depth.max())
        return out
