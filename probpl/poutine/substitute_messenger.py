"""``substitute``: fix the values of latent sample sites and params."""

from probpl.poutine.messenger import Messenger


class SubstituteMessenger(Messenger):
    """Latent sample and param sites named in ``data`` take the given values,
    without becoming observations.

    :param dict data: ``{name: value}``.
    :param callable substitute_fn: alternatively, ``site -> value or None``.
    """

    def __init__(self, data=None, substitute_fn=None):
        super().__init__()
        if (data is None) == (substitute_fn is None):
            raise ValueError("substitute needs exactly one of data or substitute_fn")
        self.data = data
        self.substitute_fn = substitute_fn

    def _value(self, msg):
        if self.data is not None:
            return self.data.get(msg["name"])
        return self.substitute_fn(msg)

    def _pyro_sample(self, msg):
        if msg["is_observed"]:
            return
        value = self._value(msg)
        if value is not None:
            msg["value"] = value

    def _pyro_param(self, msg):
        value = self._value(msg)
        if value is not None:
            msg["value"] = value
