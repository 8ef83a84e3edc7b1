"""Effect handlers ("poutines"): composable interpreters of model code."""

from probpl.poutine.block_messenger import BlockMessenger
from probpl.poutine.broadcast_messenger import BroadcastMessenger
from probpl.poutine.condition_messenger import ConditionMessenger, UnconditionMessenger
from probpl.poutine.do_messenger import DoMessenger
from probpl.poutine.enum_messenger import EnumMessenger, enum
from probpl.poutine.escape_messenger import EscapeMessenger
from probpl.poutine.handlers import (
    block,
    broadcast,
    condition,
    do,
    escape,
    infer_config,
    lift,
    mask,
    reparam,
    replay,
    scale,
    seed,
    substitute,
    trace,
    uncondition,
)
from probpl.poutine.infer_config_messenger import InferConfigMessenger
from probpl.poutine.lift_messenger import LiftMessenger
from probpl.poutine.markov_messenger import MarkovMessenger, markov
from probpl.poutine.messenger import Messenger
from probpl.poutine.plate_messenger import PlateMessenger
from probpl.poutine.queue import queue
from probpl.poutine.reparam_messenger import ReparamMessenger
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.scale_messenger import MaskMessenger, ScaleMessenger
from probpl.poutine.seed_messenger import SeedMessenger
from probpl.poutine.substitute_messenger import SubstituteMessenger
from probpl.poutine.trace_messenger import TraceHandler, TraceMessenger
from probpl.poutine.trace_struct import Trace

__all__ = [
    "BlockMessenger", "BroadcastMessenger", "ConditionMessenger", "DoMessenger", "EnumMessenger",
    "EscapeMessenger", "InferConfigMessenger", "LiftMessenger", "MarkovMessenger",
    "MaskMessenger", "Messenger", "PlateMessenger", "ReparamMessenger", "ReplayMessenger",
    "ScaleMessenger", "SeedMessenger", "SubstituteMessenger", "Trace", "TraceHandler",
    "TraceMessenger", "UnconditionMessenger", "block", "broadcast", "condition", "do",
    "enum", "escape", "infer_config", "lift", "markov", "mask", "queue", "replay", "reparam",
    "scale", "seed", "substitute", "trace", "uncondition",
]
