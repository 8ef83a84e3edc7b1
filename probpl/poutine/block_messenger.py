"""``block``: hide sites from the handlers outside it."""

from probpl.poutine.messenger import Messenger


def _site_type(msg):
    # Observed sample sites can be addressed as their own type, "observe".
    if msg["type"] == "sample" and msg["is_observed"]:
        return "observe"
    return msg["type"]


def _make_default_hide_fn(hide_all, expose_all, hide, expose, hide_types, expose_types):
    # Naming what to hide means "only those"; naming what to expose means "all but those".
    if hide is not None or hide_types is not None:
        hide_all = False
    if expose is not None or expose_types is not None:
        hide_all = True
    if expose_all:  # overrides the default hide_all=True
        hide_all = False
    hide_names, hide_t = set(hide or ()), set(hide_types or ())
    expose_names, expose_t = set(expose or ()), set(expose_types or ())
    overlap = hide_names & expose_names
    if overlap:
        raise ValueError(f"block: sites {sorted(overlap)} are both hidden and exposed")

    def hide_fn(msg):
        kind = _site_type(msg)
        if msg["name"] in hide_names or kind in hide_t:
            return True
        exposed = msg["name"] in expose_names or kind in expose_t
        return hide_all and not exposed

    return hide_fn


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
