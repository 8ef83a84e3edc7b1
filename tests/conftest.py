"""Shared test set-up: every test starts with an empty param store, a seeded
RNG and validation on. ``PROBPL_TEST_DEVICE=cuda`` runs tensor-creating tests
on a GPU where they use the ``device`` fixture."""

import os

import pytest
import torch

import probpl


@pytest.fixture(autouse=True)
def _fresh_state():
    probpl.clear_param_store()
    probpl.set_rng_seed(0)
    probpl.enable_validation(True)
    yield
    probpl.clear_param_store()


@pytest.fixture
def device():
    """The device tests should put their tensors on."""
    return torch.device(os.environ.get("PROBPL_TEST_DEVICE", "cpu"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
