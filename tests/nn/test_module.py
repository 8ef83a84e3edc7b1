"""PyroModule, PyroParam, PyroSample: site names, store sharing, SVI updates,
conversion of torch modules, pickling, and a Bayesian regression with an exact
Gaussian posterior."""

import io
import pickle

import pytest
import torch
from torch import nn

import probpl
import probpl.distributions as dist
from probpl import poutine
from probpl.distributions import constraints
from probpl.infer import SVI, Trace_ELBO
from probpl.infer.autoguide import AutoNormal
from probpl.nn.module import PyroModule, PyroParam, PyroSample, pyro_method, to_pyro_module_
from probpl.optim import Adam, ClippedAdam


def sample_names(tr):
    return [n for n, s in tr.nodes.items() if s["type"] == "sample"]


def test_pyro_param_constraint_and_store_sharing():
    m = PyroModule()
    m.scale = PyroParam(torch.tensor([1.0, 2.0]), constraints.positive)
    assert torch.allclose(m.scale, torch.tensor([1.0, 2.0]))
    assert "scale_unconstrained" in dict(m.named_parameters())
    tr = poutine.trace(pyro_method(lambda self: self.scale)).get_trace(m)
    assert tr.nodes["scale"]["type"] == "param"
    store = probpl.get_param_store()
    assert store._params["scale"] is m.scale_unconstrained
    m.scale = torch.tensor([3.0, 4.0])  # sets the value in place
    assert torch.allclose(store["scale"], torch.tensor([3.0, 4.0]))


def test_pyro_param_bad_init_names_param():
    m = PyroModule()
    with pytest.raises(ValueError, match="PyroParam 'scale'.*constraint"):
        m.scale = PyroParam(torch.tensor(-1.0), constraints.positive)


class Mean(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.0))
        self.sd = PyroParam(torch.tensor(1.0), constraints.positive)

    def forward(self, x):
        with probpl.plate("data", len(x)):
            probpl.sample("x", dist.Normal(self.loc, self.sd), obs=x)


def test_svi_updates_module_params_to_mle():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    model = Mean()
    svi = SVI(model, lambda x: None, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(1500):
        svi.step(x)
    # maximum likelihood: mean 3, sd sqrt(3.5); no sampling, so only optimiser error
    assert model.loc.item() == pytest.approx(3.0, abs=0.01)
    assert model.sd.item() == pytest.approx(3.5 ** 0.5, abs=0.01)
    assert set(probpl.get_param_store()) == {"loc", "sd"}


def test_store_wins_after_load(tmp_path):
    model = Mean()
    model(torch.zeros(2))
    probpl.get_param_store()["loc"] = torch.tensor(5.0)  # e.g. after a store load
    path = tmp_path / "params.pt"
    probpl.get_param_store().save(path)
    probpl.get_param_store().load(path)
    tr = poutine.trace(model).get_trace(torch.zeros(2))
    assert tr.nodes["loc"]["value"].item() == 5.0
    assert model.loc_unconstrained is probpl.get_param_store()._params["loc"]


def z_prior(self):
    return dist.Normal(self.inner.bias.sum(), 1.0)


class Nested(PyroModule):
    def __init__(self):
        super().__init__()
        self.inner = PyroModule[nn.Linear](2, 1)
        self.inner.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 2]).to_event(2))
        self.z = PyroSample(z_prior)  # a function of the module (module-level: picklable)
        self.plain = nn.Linear(1, 1)

    def forward(self, x):
        return self.plain(self.inner(x)) + self.z + self.z  # z read twice, one site


def test_nested_names_and_sample_caching():
    tr = poutine.trace(Nested()).get_trace(torch.randn(3, 2))
    assert sample_names(tr) == ["inner.weight", "z"]
    params = [n for n, s in tr.nodes.items() if s["type"] == "param"]
    assert set(params) == {"inner.bias", "plain$$$weight", "plain$$$bias"}


def test_pyro_method_caches_samples():
    class M(PyroModule):
        def __init__(self):
            super().__init__()
            self.x = PyroSample(dist.Normal(0.0, 1.0))

        @pyro_method
        def twice(self):
            return self.x - self.x

    tr = poutine.trace(M().twice).get_trace()
    assert sample_names(tr) == ["x"]
    assert tr.nodes["_RETURN"]["value"].item() == 0.0


def test_to_pyro_module_in_place():
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    weight = net[0].weight
    to_pyro_module_(net)
    assert isinstance(net, PyroModule) and isinstance(net[2], PyroModule[nn.Linear])
    net[2].weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
    tr = poutine.trace(net).get_trace(torch.randn(4, 2))
    assert sample_names(tr) == ["2.weight"]
    assert probpl.get_param_store()._params["0.weight"] is weight


def test_pickle_and_deepcopy_of_converted_module():
    import copy

    m = Nested()
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert type(clone.inner) is PyroModule[nn.Linear]
        assert clone.inner._pyro_context is clone._pyro_context
        tr = poutine.trace(clone).get_trace(torch.randn(3, 2))
        assert sample_names(tr) == ["inner.weight", "z"]
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    fresh = Nested()
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    assert torch.equal(fresh.inner.bias, m.inner.bias)


def test_float64_module():
    m = Mean().double()
    assert m.loc.dtype == torch.float64
    tr = poutine.trace(m).get_trace(torch.zeros(3, dtype=torch.float64))
    assert tr.nodes["sd"]["value"].dtype == torch.float64


# ----- Bayesian linear regression: exact Gaussian posterior -----

class BayesianRegression(PyroModule):
    def __init__(self, in_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, 1)
        self.linear.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([1, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        mean = self.linear(x).squeeze(-1)
        with probpl.plate("data", x.shape[0]):
            return probpl.sample("obs", dist.Normal(mean, 0.5), obs=y)


def test_bayesian_linear_regression_recovers_posterior():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, generator=gen)
    true_w, true_b = torch.tensor([1.0, -2.0, 0.5]), 0.3
    y = x @ true_w + true_b + 0.5 * torch.randn(100, generator=gen)
    model = BayesianRegression(3)
    guide = AutoNormal(model)
    steps = 2000
    svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.02 ** (1 / steps)}), Trace_ELBO())
    for _ in range(steps):
        svi.step(x, y)
    # exact posterior over (w, b): precision diag(1, 1, 1, 0.01) + A^T A / 0.25
    a = torch.cat([x, torch.ones(100, 1)], dim=1)
    precision = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.01])) + a.T @ a / 0.25
    cov = torch.linalg.inv(precision)
    mean = cov @ a.T @ y / 0.25
    sd = cov.diagonal().sqrt()  # about 0.05
    median = guide.median(x, y)
    fitted = torch.cat([median["linear.weight"].reshape(-1), median["linear.bias"]])
    # mean-field VI recovers a Gaussian posterior's mean exactly; allow 0.5 posterior sd
    # for the single-sample gradient jitter left by the decayed learning rate
    assert torch.all((fitted - mean).abs() < 0.5 * sd)
    assert torch.allclose(fitted, torch.cat([true_w, torch.tensor([true_b])]), atol=0.2)
