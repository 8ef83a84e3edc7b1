import math

import pytest
import torch

from probpl.ops.dual_averaging import (
    DualAveraging,
    dual_averaging_final,
    dual_averaging_init,
    dual_averaging_update,
)


def test_minimizes_quadratic():
    # f(x) = (x + 1) ** 2 has gradient 2 (x + 1) and minimiser -1
    state = dual_averaging_init(prox_center=0.0)
    for _ in range(2000):
        state = dual_averaging_update(state, 2 * (state.x + 1), gamma=0.5)
    x, x_avg = dual_averaging_final(state)
    assert x_avg == pytest.approx(-1.0, abs=1e-2)


def test_vectorized_matches_scalar():
    centers = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    vec = dual_averaging_init(centers)
    scalars = [dual_averaging_init(float(c)) for c in centers]
    for i in range(50):
        g = torch.sin(torch.arange(3, dtype=torch.float64) + i)
        vec = dual_averaging_update(vec, g)
        scalars = [dual_averaging_update(s, float(gi)) for s, gi in zip(scalars, g)]
    assert torch.allclose(vec.x_avg, torch.tensor([s.x_avg for s in scalars], dtype=torch.float64))


def test_step_size_converges():
    # accept probability of a toy sampler decays with the step size as exp(-step_size);
    # the fixed point of adaptation with target 0.8 is step_size = -log(0.8)
    da = DualAveraging(prox_center=math.log(10.0))
    for _ in range(3000):
        x, _ = da.get_state()
        da.step(0.8 - math.exp(-math.exp(x)))
    _, x_avg = da.get_state()
    assert math.exp(x_avg) == pytest.approx(-math.log(0.8), rel=0.02)


def test_per_chain_counts():
    # a tensor of per-chain update counts: chains updated at different times match scalar runs
    centers = torch.tensor([0.0, 1.0], dtype=torch.float64)
    vec = dual_averaging_init(centers)
    vec = vec._replace(t=torch.zeros(2, dtype=torch.float64))
    scalars = [dual_averaging_init(float(c)) for c in centers]
    for i in range(40):
        g = torch.cos(torch.arange(2, dtype=torch.float64) * 3 + i)
        mask = torch.tensor([True, i % 3 == 0])
        new = dual_averaging_update(vec, g)
        vec = type(vec)(*(torch.where(mask, a, b) for a, b in zip(new, vec)))
        scalars = [dual_averaging_update(s, float(gi)) if m else s
                   for s, gi, m in zip(scalars, g, mask)]
    assert vec.t.tolist() == [s.t for s in scalars]
    assert torch.allclose(vec.x_avg, torch.tensor([s.x_avg for s in scalars],
                                                  dtype=torch.float64))
