"""``escape``: leave the program early at a chosen site."""

from probpl.poutine.messenger import Messenger
from probpl.poutine.util import NonlocalExit


class EscapeMessenger(Messenger):
    """Raise :class:`NonlocalExit` carrying the site when ``escape_fn(msg)`` is true."""

    def __init__(self, escape_fn):
        super().__init__()
        self.escape_fn = escape_fn

    def _pyro_sample(self, msg):
        if self.escape_fn(msg):
            msg["done"] = True
            msg["stop"] = True

            def cont(m):
                raise NonlocalExit(m)

            msg["continuation"] = cont
