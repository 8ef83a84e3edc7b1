"""Random-walk Metropolis with an adaptive step size, and the reference for writing a new
MCMC kernel: it uses only the public kernel interface of
:class:`~probpl.infer.mcmc.mcmc_kernel.MCMCKernel`."""

import math

import torch

from probpl.infer.mcmc.mcmc_kernel import MCMCKernel
from probpl.infer.mcmc.util import CompiledModel


class RandomWalkKernel(MCMCKernel):
    """Gaussian random-walk Metropolis in the unconstrained space of a model's continuous
    latent sites, with the step size adapted during warm-up towards a target acceptance
    rate (Robbins-Monro updates of its logarithm, weights ``t ** -0.6``) and then fixed.

    It needs no gradients, so it also serves models whose log-density is not
    differentiable; it mixes far more slowly than :class:`~probpl.infer.mcmc.nuts.NUTS`
    as the dimension grows.

    :param callable model: the model.
    :param float init_step_size: initial standard deviation of the proposal.
    :param float target_accept_prob: acceptance rate the warm-up aims at (0.234 is optimal
        for high-dimensional Gaussian targets).

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer import MCMC
        >>> from probpl.infer.mcmc import RandomWalkKernel
        >>> def model():
        ...     probpl.sample("x", dist.Normal(0.0, 1.0))
        >>> mcmc = MCMC(RandomWalkKernel(model), num_samples=50, warmup_steps=50,
        ...             disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["x"].shape
        torch.Size([50])

    **Writing a new kernel.**  Subclass :class:`~probpl.infer.mcmc.mcmc_kernel.MCMCKernel`
    and implement, as this class does:

    - ``setup(warmup_steps, *model_args, **model_kwargs)``: prepare the model (here with
      :class:`~probpl.infer.mcmc.util.CompiledModel`, which gives the layout of the
      unconstrained coordinates, the potential energy ``flat_potential(z)`` and valid
      initial points) and set ``initial_params``, a dict of unconstrained values, unless
      the user gave them;
    - ``sample(params)``: one transition from a dict of unconstrained values to the next;
      adapt while fewer than ``warmup_steps`` transitions have been made;
    - ``transforms``: site name to the transform from constrained to unconstrained space,
      so that :class:`~probpl.infer.mcmc.api.MCMC` reports constrained draws;
    - optionally ``logging()`` (progress bar fields), ``diagnostics()``, ``end_warmup()``.

    The :class:`~probpl.infer.mcmc.api.MCMC` driver then runs the kernel sequentially or
    in worker processes (``chain_method="parallel"``; the kernel must pickle), seeds each
    chain and collects the draws.  Use ``torch``'s random number generator so that runs
    are reproducible from :func:`probpl.set_rng_seed`.
    """

    def __init__(self, model, init_step_size=0.1, target_accept_prob=0.234):
        if not init_step_size > 0:
            raise ValueError(f"init_step_size must be positive, got {init_step_size}")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}")
        self.model = model
        self.init_step_size = float(init_step_size)
        self.target_accept_prob = float(target_accept_prob)
        self.transforms = None
        self._compiled = None
        self._initial_params = None

    def setup(self, warmup_steps, *args, **kwargs):
        self._warmup_steps = warmup_steps
        self._compiled = CompiledModel(self.model, args, kwargs)
        self.transforms = self._compiled.transforms
        if self._initial_params is None:
            z = self._compiled.initial_points(1)[0]
            self._initial_params = self._compiled.layout.unpack(z)
        self._log_step_size = math.log(self.init_step_size)
        self._t = 0
        self._num_accepted = 0
        self._last = None  # (z, potential energy) of the last returned point

    def _potential(self, z):
        with torch.no_grad():
            pe = float(self._compiled.flat_potential(z))
        return pe if pe == pe else math.inf

    def sample(self, params):
        layout = self._compiled.layout
        z = layout.pack({k: v.detach() for k, v in params.items()})
        if self._last is not None and torch.equal(self._last[0], z):
            pe = self._last[1]
        else:
            pe = self._potential(z)
        step_size = math.exp(self._log_step_size)
        proposal = z + step_size * torch.randn_like(z)
        pe_new = self._potential(proposal)
        log_ratio = pe - pe_new
        accept_prob = 1.0 if log_ratio >= 0 else math.exp(log_ratio)
        accepted = float(torch.rand(())) < accept_prob
        if self._t < self._warmup_steps:
            # accepting more often than targeted means the steps can grow, and vice versa
            self._log_step_size += (accept_prob - self.target_accept_prob) / (self._t + 1) ** 0.6
        else:
            self._num_accepted += accepted
        self._t += 1
        if accepted:
            z, pe = proposal, pe_new
        self._last = (z, pe)
        return layout.unpack(z)

    @property
    def step_size(self):
        return math.exp(self._log_step_size)

    def logging(self):
        num_samples = self._t - self._warmup_steps
        rate = self._num_accepted / num_samples if num_samples > 0 else float("nan")
        return {"step size": f"{self.step_size:.2e}", "acc. rate": f"{rate:.3f}"}

    def diagnostics(self):
        num_samples = max(self._t - self._warmup_steps, 1)
        return {"acceptance rate": self._num_accepted / num_samples,
                "step size": self.step_size}
