"""Global switches and small utilities: RNG seeding and validation."""

import random
from contextlib import contextmanager

import numpy as np
import torch

_VALIDATION_ENABLED = True


def set_rng_seed(rng_seed):
    """Seed torch (all devices), ``random`` and numpy."""
    torch.manual_seed(rng_seed)
    random.seed(rng_seed)
    np.random.seed(rng_seed % 2**32)


def enable_validation(is_validate=True):
    """Turn argument/support checks of distributions and sites on or off."""
    global _VALIDATION_ENABLED
    _VALIDATION_ENABLED = bool(is_validate)
    torch.distributions.Distribution.set_default_validate_args(is_validate)


def is_validation_enabled():
    return _VALIDATION_ENABLED


@contextmanager
def validation_enabled(is_validate=True):
    """Context manager that sets validation and restores the previous setting."""
    old = _VALIDATION_ENABLED
    old_torch = torch.distributions.Distribution._validate_args
    enable_validation(is_validate)
    try:
        yield
    finally:
        enable_validation(old)
        torch.distributions.Distribution.set_default_validate_args(old_torch)


@contextmanager
def ignore_jit_warnings(filter=None):
    """Kept for API compatibility: tracing warnings are not raised here."""
    yield


def torch_isnan(x):
    return torch.isnan(x).any() if isinstance(x, torch.Tensor) else x != x


def warn_if_nan(value, msg=""):
    import warnings

    if isinstance(value, torch.Tensor) and torch.isnan(value).any():
        warnings.warn(f"Encountered NaN{': ' + msg if msg else ''}")
    return value
