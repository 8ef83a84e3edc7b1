"""The interface every MCMC kernel implements, as in Pyro.

A kernel is configured by its constructor, prepared by ``setup`` and advanced by
``sample``, which maps a dict of unconstrained values to the next one.  The
:class:`~probpl.infer.mcmc.api.MCMC` driver runs any such kernel chain by chain; kernels
that set ``supports_vectorized_chains`` also run all chains as one batch.
"""

from abc import ABCMeta, abstractmethod


class MCMCKernel(metaclass=ABCMeta):
    supports_vectorized_chains = False

    def setup(self, warmup_steps, *args, **kwargs):
        """Prepare to run ``warmup_steps`` of adaptation on a model called with ``args``."""

    def cleanup(self):
        """Release resources after a run."""

    def end_warmup(self):
        """Called once when warm-up ends."""

    def logging(self):
        """:returns: a dict of statistics shown in the progress bar."""
        return {}

    def diagnostics(self):
        """:returns: a dict of per-chain statistics collected during sampling."""
        return {}

    @property
    def initial_params(self):
        return getattr(self, "_initial_params", None)

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    @abstractmethod
    def sample(self, params):
        """:param dict params: current unconstrained values.
        :returns: the next unconstrained values."""
        raise NotImplementedError

    def __call__(self, params):
        return self.sample(params)
