"""``lift``: turn params into sample sites drawn from priors."""

from probpl.poutine.messenger import Messenger


class LiftMessenger(Messenger):
    """Param sites with a prior become latent sample sites of that prior.

    :param prior: a distribution (for every param), a dict ``{name: distribution}``
        or a callable ``name -> distribution or None``.
    """

    def __init__(self, prior):
        super().__init__()
        self.prior = prior
        self._samples = {}

    def __enter__(self):
        self._samples = {}
        return super().__enter__()

    def _prior_for(self, name):
        if isinstance(self.prior, dict):
            return self.prior.get(name)
        if hasattr(self.prior, "log_prob"):
            return self.prior
        if callable(self.prior):
            return self.prior(name)
        raise TypeError(f"lift: prior must be a distribution, dict or callable, got {self.prior!r}")

    def _pyro_param(self, msg):
        name = msg["name"]
        prior = self._prior_for(name)
        if prior is None:
            return
        if name in self._samples:
            # A param read twice is one random variable: reuse its draw.
            msg["value"] = self._samples[name]
            msg["done"] = True
            msg["stop"] = True
            return
        msg["type"] = "sample"
        msg["fn"] = prior
        msg["args"] = ()
        msg["kwargs"] = {}
        msg["infer"] = {}
        msg["is_observed"] = False
        msg["continuation"] = self._remember

    def _remember(self, msg):
        self._samples[msg["name"]] = msg["value"]
