"""``infer_config``: set inference hints on sites from a function of the site."""

from probpl.poutine.messenger import Messenger


class InferConfigMessenger(Messenger):
    """Update ``msg["infer"]`` of sample and param sites with ``config_fn(msg)``.

    :param callable config_fn: ``site -> dict``.
    """

    def __init__(self, config_fn):
        super().__init__()
        self.config_fn = config_fn

    def _pyro_sample(self, msg):
        msg["infer"].update(self.config_fn(msg))

    def _pyro_param(self, msg):
        msg["infer"].update(self.config_fn(msg))
