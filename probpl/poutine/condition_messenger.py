"""``condition`` observes sites at given values; ``uncondition`` frees observed ones."""

from probpl.poutine.messenger import Messenger
from probpl.poutine.trace_struct import Trace


class ConditionMessenger(Messenger):
    """Sample sites named in ``data`` become observations of the given values.

    :param data: ``{name: value}`` or a :class:`Trace` whose values are used.
    """

    def __init__(self, data):
        super().__init__()
        if not isinstance(data, (dict, Trace)):
            raise TypeError(f"condition expects a dict or a Trace, got {type(data).__name__}")
        self.data = data

    def _pyro_sample(self, msg):
        name = msg["name"]
        if isinstance(self.data, Trace):
            site = self.data.nodes.get(name)
            if site is None or site["type"] != "sample":
                return
            value = site["value"]
        elif name in self.data:
            value = self.data[name]
        else:
            return
        if value is None:
            return
        msg["value"] = value
        msg["is_observed"] = True


class UnconditionMessenger(Messenger):
    """Observed sample sites are sampled instead; the observation is kept in
    ``msg["infer"]["obs"]``."""

    def _pyro_sample(self, msg):
        if msg["is_observed"]:
            msg["is_observed"] = False
            msg["infer"]["obs"] = msg["value"]
            msg["infer"]["was_observed"] = True
            msg["value"] = None
            msg["done"] = False
