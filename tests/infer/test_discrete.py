"""infer_discrete: MAP against brute-force argmax, samples against exact posteriors."""

import itertools

import pytest
import torch

import probpl
import probpl.distributions as dist
from probpl import poutine
from probpl.infer.discrete import infer_discrete


def hmm_params(S=3):
    g = torch.Generator().manual_seed(3)
    init = torch.rand(S, generator=g, dtype=torch.float64).softmax(0)
    trans = (3 * torch.rand(S, S, generator=g, dtype=torch.float64)).softmax(-1)
    locs = torch.linspace(-1.5, 1.5, S, dtype=torch.float64)
    return init, trans, locs


def hmm(ys, init, trans, locs):
    xs = []
    with probpl.plate("seqs", ys.shape[1], dim=-1):
        x = None
        for t in probpl.markov(range(ys.shape[0])):
            p = init if x is None else trans[x]
            x = probpl.sample(f"x_{t}", dist.Categorical(p), infer={"enumerate": "parallel"})
            probpl.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=ys[t])
            xs.append(x)
    return xs


def path_log_probs(y, init, trans, locs):
    """log p(path, y) for every path of one sequence, in itertools.product order."""
    result = []
    for path in itertools.product(range(len(init)), repeat=len(y)):
        lp = init[path[0]].log() + dist.Normal(locs[list(path)], 1.0).log_prob(y).sum()
        for t in range(1, len(path)):
            lp = lp + trans[path[t - 1], path[t]].log()
        result.append(lp)
    return torch.stack(result)


def test_map_is_brute_force_argmax():
    init, trans, locs = hmm_params()
    ys = torch.randn(5, 3, dtype=torch.float64)
    xs = torch.stack(
        infer_discrete(hmm, first_available_dim=-2, temperature=0)(ys, init, trans, locs)
    )
    paths = list(itertools.product(range(3), repeat=5))
    for s in range(3):
        best = paths[int(path_log_probs(ys[:, s], init, trans, locs).argmax())]
        assert xs[:, s].tolist() == list(best)


def test_samples_match_exact_posterior():
    # 3000 posterior draws of a length-3 path (27 outcomes) drawn at once along a
    # plate of identical sequences; chi-square against the exact posterior.  The 0.9999
    # quantile of chi2 with 26 dof is 59.0, so the test fails falsely with rate 1e-4.
    init, trans, locs = hmm_params()
    y = torch.tensor([0.3, -1.0, 1.2], dtype=torch.float64)
    N = 3000
    ys = y.unsqueeze(-1).expand(3, N)
    xs = torch.stack(
        infer_discrete(hmm, first_available_dim=-2, temperature=1)(ys, init, trans, locs)
    )
    assert xs.shape == (3, N)
    codes = (xs[0] * 9 + xs[1] * 3 + xs[2]).tolist()
    counts = torch.bincount(torch.tensor(codes), minlength=27).double()
    probs = path_log_probs(y, init, trans, locs).softmax(0)
    expected = N * probs
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 59.0


def test_global_and_local_map_and_trace():
    data = torch.tensor([-2.0, 2.1, 1.9], dtype=torch.float64)

    def model():
        a = probpl.sample("a", dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64)),
                          infer={"enumerate": "parallel"})
        with probpl.plate("data", 3):
            z = probpl.sample("z", dist.Bernoulli(0.2 + 0.6 * a),
                              infer={"enumerate": "parallel"})
            probpl.sample("x", dist.Normal(4 * z - 2, 1.0), obs=data)

    tr = poutine.trace(infer_discrete(model, first_available_dim=-2, temperature=0)).get_trace()
    assert tr.nodes["a"]["value"].item() == 1.0
    assert tr.nodes["z"]["value"].tolist() == [0.0, 1.0, 1.0]
    assert not tr.nodes["z"]["is_observed"]


def test_continuous_sites_are_replayed():
    def model():
        loc = probpl.sample("loc", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        z = probpl.sample("z", dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64)),
                          infer={"enumerate": "parallel"})
        probpl.sample("x", dist.Normal(loc + 10 * z, 0.1), obs=torch.tensor(10.0))
        return loc, z

    # z is decided by the value of loc drawn in the enumerated run: the replayed
    # run must use that same loc for the answer to be consistent.
    for _ in range(5):
        loc, z = infer_discrete(model, first_available_dim=-1, temperature=0)()
        assert z.item() == float(abs(loc + 10 - 10) < abs(loc - 10))


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        infer_discrete(hmm, first_available_dim=-2, temperature=0.5)
