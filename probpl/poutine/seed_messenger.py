"""``seed``: run with a fixed random seed, then restore the outer RNG state."""

import random

import numpy as np
import torch

from probpl.poutine.messenger import Messenger


def _get_rng_state():
    return {
        "torch": torch.get_rng_state(),
        "random": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])


class SeedMessenger(Messenger):
    """Seed torch, ``random`` and numpy on entry; restore their previous state on exit.

    :param int rng_seed: the seed.
    """

    def __init__(self, rng_seed):
        super().__init__()
        if not isinstance(rng_seed, int):
            raise TypeError(f"seed: rng_seed must be an int, got {type(rng_seed).__name__}")
        self.rng_seed = rng_seed

    def __enter__(self):
        from probpl.util import set_rng_seed

        self._old_state = _get_rng_state()
        set_rng_seed(self.rng_seed)
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        _set_rng_state(self._old_state)
        return super().__exit__(exc_type, exc_value, traceback)
