"""Every ``torch.distributions`` distribution with probpl's Pyro-style behaviours.

Each class here is ``type(name, (torch_class, TorchDistributionMixin), {})``:
no ``__init__`` of its own, so construction costs exactly what torch's costs,
and torch's native ``expand`` returns an instance of our subclass.  The few
classes needing a tweak are written out by hand below the generated ones;
``Normal`` and ``LogNormal``, built afresh at every step of most models, have
a lean construction and log-density of their own in ``normal.py``.
"""

import torch

from .categorical import Categorical
from .normal import LogNormal, Normal
from .torch_distribution import Independent, TorchDistributionMixin

__all__ = [  # noqa: F822 (names are created in the loop below)
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Cauchy",
    "Chi2",
    "ContinuousBernoulli",
    "Dirichlet",
    "Exponential",
    "ExponentialFamily",
    "FisherSnedecor",
    "Gamma",
    "GeneralizedPareto",
    "Geometric",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "Independent",
    "InverseGamma",
    "Kumaraswamy",
    "LKJCholesky",
    "Laplace",
    "LogNormal",
    "LogisticNormal",
    "LowRankMultivariateNormal",
    "MixtureSameFamily",
    "Multinomial",
    "MultivariateNormal",
    "NegativeBinomial",
    "Normal",
    "OneHotCategorical",
    "OneHotCategoricalStraightThrough",
    "Pareto",
    "Poisson",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "StudentT",
    "TransformedDistribution",
    "Uniform",
    "VonMises",
    "Weibull",
    "Wishart",
]


def _wrap(torch_cls):
    cls = type(torch_cls.__name__, (torch_cls, TorchDistributionMixin), {})
    cls.__module__ = __name__
    cls.__qualname__ = torch_cls.__name__
    cls.__doc__ = (
        f"``torch.distributions.{torch_cls.__name__}`` with probpl's ``expand``, "
        f"``to_event``, ``mask`` and ``__call__``.\n\n" + (torch_cls.__doc__ or "")
    )
    return cls


class GeneralizedPareto(torch.distributions.GeneralizedPareto, TorchDistributionMixin):
    """``torch.distributions.GeneralizedPareto``, with its zero-concentration test
    made to follow the parameters' dtype so float64 works.
    """

    def _safe_concentration(self):
        conc = self.concentration
        eq_zero = torch.isclose(conc, torch.zeros_like(conc))
        return eq_zero, torch.where(eq_zero, torch.ones_like(conc), conc)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, conc = self._safe_concentration()
        nonzero = (1 / conc + 1) * torch.log1p(conc * z)
        return -self.scale.log() - torch.where(eq_zero, z, nonzero)

    def log_survival_function(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, conc = self._safe_concentration()
        return torch.where(eq_zero, -z, -torch.log1p(conc * z) / conc)


class Bernoulli(torch.distributions.Bernoulli, TorchDistributionMixin):
    """``torch.distributions.Bernoulli`` whose ``log_prob`` is
    ``value * logits - softplus(logits)``: the same values as torch's fused
    binary cross-entropy, built from element-wise ops that batch (``vmap``) and
    compile into fast graphs.
    """

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        return value * logits - torch.nn.functional.softplus(logits)


def _generate():
    for name in list(__all__):
        if name in globals():  # written out by hand above
            continue
        torch_cls = getattr(torch.distributions, name, None)
        if torch_cls is None:  # an older torch without this distribution
            __all__.remove(name)
            continue
        globals()[name] = _wrap(torch_cls)


_generate()
