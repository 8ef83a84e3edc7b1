"""``broadcast``: expand distributions to the sizes of their enclosing plates."""

import torch

from probpl.poutine.messenger import Messenger

# (batch_shape, cond_indep_stack) -> expanded batch shape, or None when the
# distribution already fills its plates: a model asks the same question at
# every step of a loop.
_TARGETS = {}
_MISSING = object()


def broadcast_to_plates(msg):
    """Expand ``msg["fn"]`` so that each enclosing vectorised plate's dim has the
    plate's size; raise a ValueError naming the site when a dim conflicts."""
    fn = msg["fn"]
    batch_shape = getattr(fn, "batch_shape", None)
    if batch_shape is None:
        return
    key = (batch_shape, msg["cond_indep_stack"])
    target = _TARGETS.get(key, _MISSING)
    if target is _MISSING:
        target = _target_shape(msg, batch_shape)
        if len(_TARGETS) > 1024:
            _TARGETS.clear()
        _TARGETS[key] = target
    if target is not None:
        expanded = fn.expand(target)
        # Remember the distribution before any plate expanded it (inference
        # may compute from its smaller parameters): (expanded, original).
        infer = msg["infer"]
        source = infer.get("_unexpanded")
        infer["_unexpanded"] = (expanded, source[1] if source is not None and source[0] is fn
                                else fn)
        msg["fn"] = expanded


def _target_shape(msg, batch_shape):
    target = list(batch_shape)
    for f in msg["cond_indep_stack"]:
        if f.dim is None or f.size == -1:
            continue
        if -f.dim > len(target):
            target = [1] * (-f.dim - len(target)) + target
        current = target[f.dim]
        if current == 1:
            target[f.dim] = f.size
        elif current != f.size:
            raise ValueError(
                f"sample site '{msg['name']}' in plate '{f.name}' (dim {f.dim}, size {f.size}): "
                f"distribution batch_shape {tuple(batch_shape)} has size {current} at dim "
                f"{f.dim}, expected {f.size} or 1"
            )
    if len(target) != len(batch_shape) or any(a != b for a, b in zip(target, batch_shape)):
        return torch.Size(target)
    return None


class BroadcastMessenger(Messenger):
    """Make every sample site's distribution fill the plates it is in."""

    def _pyro_sample(self, msg):
        if msg["done"]:
            return
        broadcast_to_plates(msg)
