"""One-transition invariance of the pure HMC/NUTS kernels and adaptation building blocks."""

import math

import pytest
import torch
from scipy import stats

from probpl.infer.mcmc.adaptation import Window, build_adaptation_schedule
from probpl.infer.mcmc.trajectory import hmc_step, init_state, nuts_step

# each KS test below runs at level 1e-4; with at most ~20 such tests the chance of a false
# failure in this file is below 0.2%
ALPHA = 1e-4


def _mvn(cov):
    prec = torch.linalg.inv(cov)

    def potential_and_grad(z):
        g = z @ prec
        return 0.5 * (g * z).sum(-1), g

    return potential_and_grad, torch.linalg.cholesky(cov)


COV = torch.tensor([[1.0, 0.95, 0.0], [0.95, 1.0, 0.3], [0.0, 0.3, 4.0]], dtype=torch.float64)


@pytest.mark.parametrize("kernel", ["nuts", "hmc"])
@pytest.mark.parametrize("dense", [False, True])
def test_vectorized_step_keeps_mvn(kernel, dense):
    torch.manual_seed(0)
    pg, chol = _mvn(COV)
    num_chains = 3000
    z0 = torch.randn(num_chains, 3, dtype=torch.float64) @ chol.T
    if dense:
        inv = COV.expand(num_chains, 3, 3).clone()
    else:
        inv = torch.rand(num_chains, 3, dtype=torch.float64) + 0.5
    # per-chain step sizes exercise the masks
    step = torch.rand(num_chains, dtype=torch.float64) * 0.1 + 0.05
    state = init_state(z0, pg, step, inv)
    if kernel == "nuts":
        new, info = nuts_step(state, pg, max_tree_depth=6)
    else:
        new, info = hmc_step(state, pg, torch.randint(1, 8, (num_chains,)))
    assert not info.diverging.any()
    assert (new.z != z0).any(-1).double().mean() > 0.5  # the chains moved
    white = torch.linalg.solve_triangular(chol, new.z.T, upper=False).T
    for i in range(3):
        assert stats.kstest(white[:, i].numpy(), "norm").pvalue > ALPHA
    pe, grad = pg(new.z)
    assert torch.allclose(new.potential_energy, pe) and torch.allclose(new.z_grad, grad)


def test_single_chain_nuts_keeps_mvn():
    # the one-chain path uses float bookkeeping: check it separately from many restarts
    torch.manual_seed(1)
    pg, chol = _mvn(COV)
    out = []
    for _ in range(1500):
        z0 = torch.randn(1, 3, dtype=torch.float64) @ chol.T
        state = init_state(z0, pg, 0.25, torch.ones(1, 3, dtype=torch.float64))
        new, _ = nuts_step(state, pg)
        out.append(new.z)
    white = torch.linalg.solve_triangular(chol, torch.cat(out).T, upper=False).T
    for i in range(3):
        assert stats.kstest(white[:, i].numpy(), "norm").pvalue > ALPHA


def test_nuts_gamma_through_log_transform():
    # x ~ Gamma(3, 2) sampled as u = log x: potential -log p(e^u) - u
    torch.manual_seed(2)
    a, b = 3.0, 2.0

    def pg(u):
        pe = -(a * u - b * u.exp()).sum(-1)
        return pe, -(a - b * u.exp())

    x0 = torch.distributions.Gamma(a, b).sample((3000, 1)).double()
    state = init_state(x0.log(), pg, 0.4, torch.ones_like(x0))
    new, _ = nuts_step(state, pg)
    assert stats.kstest(new.z.exp()[:, 0].numpy(), stats.gamma(a, scale=1 / b).cdf).pvalue > ALPHA


def test_divergence_detected():
    def pg(z):
        return 0.5 * 1e6 * (z * z).sum(-1), 1e6 * z

    state = init_state(torch.ones(4, 2), pg, 1.0, torch.ones(4, 2))
    new, info = nuts_step(state, pg)
    assert info.diverging.all()
    assert torch.equal(new.z, state.z)


def test_max_tree_depth():
    pg, _ = _mvn(torch.eye(2, dtype=torch.float64))
    state = init_state(torch.ones(5, 2, dtype=torch.float64), pg, 1e-3,
                       torch.ones(5, 2, dtype=torch.float64))
    _, info = nuts_step(state, pg, max_tree_depth=4)
    assert (info.tree_depth == 4).all() and (info.num_steps == 15).all()


def test_adaptation_schedule():
    assert build_adaptation_schedule(1000) == [
        Window(0, 74), Window(75, 99), Window(100, 149), Window(150, 249), Window(250, 449),
        Window(450, 949), Window(950, 999),
    ]
    short = build_adaptation_schedule(100)
    assert short[0] == Window(0, 14) and short[-1] == Window(90, 99)
    assert build_adaptation_schedule(10) == [Window(0, 9)]
    for n in [20, 57, 150, 333, 2000]:
        w = build_adaptation_schedule(n)
        assert w[0].start == 0 and w[-1].end == n - 1
        assert all(a.end + 1 == b.start for a, b in zip(w, w[1:]))
    assert math.isclose(1.0, 1.0)
