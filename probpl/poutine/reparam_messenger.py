"""``reparam``: replace a sample site by an equivalent, easier-to-infer construction.

A reparameterizer (see :mod:`probpl.infer.reparam`) receives the site and
returns a new distribution (usually a ``Delta``) and value, drawing whatever
auxiliary sites it needs itself.
"""

from probpl.poutine.messenger import Messenger


class ReparamMessenger(Messenger):
    """Apply reparameterizers to sample sites.

    :param config: ``{site name: reparam}`` or a callable ``site -> reparam or None``.
    """

    def __init__(self, config):
        super().__init__()
        if not (isinstance(config, dict) or callable(config)):
            raise TypeError(f"reparam: config must be a dict or callable, got {config!r}")
        self.config = config

    def _pyro_sample(self, msg):
        if msg["infer"].get("_reparam_applied"):
            return
        if isinstance(self.config, dict):
            reparam = self.config.get(msg["name"])
        else:
            reparam = self.config(msg)
        if reparam is None:
            return
        msg["infer"]["_reparam_applied"] = True
        result = reparam.apply(
            {
                "name": msg["name"],
                "fn": msg["fn"],
                "value": msg["value"],
                "is_observed": msg["is_observed"],
            }
        )
        msg["fn"] = result["fn"]
        msg["value"] = result["value"]
        msg["is_observed"] = result["is_observed"]
