"""Shared test set-up: every test starts with an empty param store, a seeded
RNG and validation on.

``PROBPL_TEST_DEVICE=cuda pytest`` runs the suite on a GPU: it becomes torch's
default device, so every tensor a test creates (and everything computed from
it) lives there; the ``device`` fixture names it for tests that need it
explicitly.
"""

import os

import pytest
import torch

import probpl

TEST_DEVICE = torch.device(os.environ.get("PROBPL_TEST_DEVICE", "cpu"))


@pytest.fixture(autouse=True)
def _fresh_state():
    if TEST_DEVICE.type != "cpu":
        torch.set_default_device(TEST_DEVICE)
    probpl.clear_param_store()
    probpl.set_rng_seed(0)
    probpl.enable_validation(True)
    yield
    probpl.clear_param_store()


@pytest.fixture
def device():
    """The device tests should put their tensors on."""
    return TEST_DEVICE


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
