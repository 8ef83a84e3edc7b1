"""``block``: hide sites from the handlers outside it."""

from probpl.poutine.messenger import Messenger


def _make_default_hide_fn(hide_all, expose_all, hide, expose, hide_types, expose_types):
    if hide is not None or hide_types is not None:
        hide_names = set(hide or ())
        hide_t = set(hide_types or ())
        return lambda msg: msg["name"] in hide_names or msg["type"] in hide_t
    if expose is not None or expose_types is not None:
        expose_names = set(expose or ())
        expose_t = set(expose_types or ())
        return lambda msg: not (msg["name"] in expose_names or msg["type"] in expose_t)
    if expose_all:
        return lambda msg: False
    if hide_all:
        return lambda msg: True
    raise ValueError("block: nothing to hide or expose")


class BlockMessenger(Messenger):
    """Sites for which ``hide_fn(msg)`` is true are invisible outside this handler.

    By default everything is hidden; ``hide``/``hide_types`` hide only the listed
    names/types, ``expose``/``expose_types`` hide all but the listed ones, and
    ``hide_fn``/``expose_fn`` decide per message.
    """

    def __init__(
        self,
        hide_fn=None,
        expose_fn=None,
        hide_all=True,
        expose_all=False,
        hide=None,
        expose=None,
        hide_types=None,
        expose_types=None,
    ):
        super().__init__()
        if hide_fn is not None and expose_fn is not None:
            raise ValueError("block: give hide_fn or expose_fn, not both")
        if hide_fn is not None:
            self.hide_fn = hide_fn
        elif expose_fn is not None:
            self.hide_fn = lambda msg: not expose_fn(msg)
        else:
            self.hide_fn = _make_default_hide_fn(
                hide_all, expose_all, hide, expose, hide_types, expose_types
            )

    def _process_message(self, msg):
        msg["stop"] = bool(self.hide_fn(msg))
