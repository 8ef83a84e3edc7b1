"""``do``: causal intervention on sample sites."""

from probpl.poutine.messenger import Messenger
from probpl.poutine.runtime import apply_stack, new_message


class DoMessenger(Messenger):
    """Sites named in ``data`` return the given value to the program, while a
    fresh sample site of the same name is still drawn (its value does not
    propagate). This is the do-operator of causal inference, not conditioning.
    """

    def __init__(self, data):
        super().__init__()
        self.data = data

    def _pyro_sample(self, msg):
        if msg["infer"].get("_do_applied") is self or msg["name"] not in self.data:
            return
        # Draw the original site through the rest of the stack, as if untouched.
        fresh = new_message(
            type="sample",
            name=msg["name"],
            fn=msg["fn"],
            args=msg["args"],
            kwargs=msg["kwargs"],
            infer=dict(msg["infer"], _do_applied=self),
        )
        apply_stack(fresh)
        msg["name"] = msg["name"] + "__CF"
        msg["value"] = self.data[fresh["name"]]
        msg["is_observed"] = False
        msg["done"] = True
        msg["stop"] = True
