"""``replay``: reuse the values of an earlier trace at sites of the same name."""

from probpl.poutine.messenger import Messenger


class ReplayMessenger(Messenger):
    """Latent sample sites found in ``trace`` take their recorded values;
    param sites found in ``params`` take the given values.

    :param Trace trace: the trace to replay (e.g. a guide's).
    :param dict params: optional ``{name: value}`` for param sites.
    """

    def __init__(self, trace=None, params=None):
        super().__init__()
        if trace is None and params is None:
            raise ValueError("replay needs a trace or params")
        self.trace = trace
        self.params = params

    def _pyro_sample(self, msg):
        if self.trace is None or msg["is_observed"]:
            return
        site = self.trace.nodes.get(msg["name"])
        if site is None:
            return
        if site["type"] != "sample" or site["is_observed"]:
            raise RuntimeError(
                f"replay: site '{msg['name']}' is a latent sample site here but was "
                f"{'observed' if site['type'] == 'sample' else 'a ' + site['type'] + ' site'} "
                "in the replayed trace"
            )
        msg["done"] = True
        msg["value"] = site["value"]
        msg["infer"] = dict(site["infer"])

    def _pyro_param(self, msg):
        if self.params is not None and msg["name"] in self.params:
            msg["done"] = True
            msg["value"] = self.params[msg["name"]]
