"""One list of ``(probpl distribution, scipy equivalent, example parameters)``
that drives the density, moment, support, cdf and shape tests.
"""

import numpy as np
import scipy.stats as sp
import torch

import probpl.distributions as dist


class Fixture:
    """A distribution under test.

    :param pdist: the probpl class.
    :param examples: list of parameter dicts (numbers or nested lists).
    :param scipy_fn: ``scipy_fn(**numpy_params)`` returns a frozen scipy distribution.
    :param logpdf: alternatively ``logpdf(numpy_params, value) -> array``.
    :param moments: "both", "mean" (heavy tails: no finite 4th moment) or None.
    :param cdf: whether ``cdf`` (and ``icdf`` when ``icdf``) is compared with scipy.
    :param int_params: parameter names that stay Python ints.
    """

    def __init__(self, pdist, examples, scipy_fn=None, logpdf=None, moments="both",
                 cdf=False, icdf=False, int_params=(), multivariate=False):
        self.pdist = pdist
        self.examples = examples
        self.scipy_fn = scipy_fn
        self.logpdf_fn = logpdf
        self.moments = moments
        self.cdf = cdf
        self.icdf = icdf
        self.int_params = int_params
        self.multivariate = multivariate

    def __repr__(self):
        return self.pdist.__name__

    def make(self, i, dtype=torch.float64, device="cpu"):
        params = {
            k: (v if k in self.int_params else torch.tensor(v, dtype=dtype, device=device))
            for k, v in self.examples[i].items()
        }
        return self.pdist(**params)

    def np_params(self, i):
        return {k: np.asarray(v, dtype=float) for k, v in self.examples[i].items()}

    def logpdf(self, i, value):
        p = self.np_params(i)
        if self.logpdf_fn is not None:
            return self.logpdf_fn(p, value)
        frozen = self.scipy_fn(**p)
        return frozen.logpmf(value) if hasattr(frozen, "logpmf") else frozen.logpdf(value)


def _zip_logpmf(p, x):
    gate, rate = p["gate"], p["rate"]
    pmf = (1 - gate) * sp.poisson(rate).pmf(x) + gate * (x == 0)
    return np.log(pmf)


def _zinb_logpmf(p, x):
    gate, n, probs = p["gate"], p["total_count"], p["probs"]
    pmf = (1 - gate) * sp.nbinom(n, 1 - probs).pmf(x) + gate * (x == 0)
    return np.log(pmf)


def _categorical_logpmf(p, x):
    probs = p["probs"] / p["probs"].sum(-1, keepdims=True)
    return np.log(np.take_along_axis(np.broadcast_to(probs, x.shape + probs.shape[-1:]),
                                     x[..., None].astype(int), -1))[..., 0]


def _ordered_logistic_logpmf(p, x):
    cdf = 1 / (1 + np.exp(-(p["cutpoints"] - p["predictor"][..., None])))
    cdf = np.concatenate([np.zeros_like(cdf[..., :1]), cdf, np.ones_like(cdf[..., :1])], -1)
    probs = cdf[..., 1:] - cdf[..., :-1]
    return _categorical_logpmf({"probs": probs}, x)


def _kumaraswamy_logpdf(p, x):
    a, b = p["concentration1"], p["concentration0"]
    return np.log(a) + np.log(b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-x**a)


def _lownb_logpmf(p, x):
    # Brute-force Gaussian integral on a fine grid (error far below the test tolerance).
    eps = np.linspace(-10, 10, 4001)
    w = sp.norm.pdf(eps) * (eps[1] - eps[0])
    logits = p["logits"][..., None] + p["multiplicative_noise_scale"][..., None] * eps
    probs = 1 / (1 + np.exp(-logits))
    pmf = sp.nbinom(p["total_count"], 1 - probs).pmf(np.asarray(x)[..., None])
    return np.log((pmf * w).sum(-1))


def _mixdiag_logpdf(p, x):
    logw = p["component_logits"] - np.log(np.exp(p["component_logits"]).sum())
    comp = sp.norm(p["locs"], p["coord_scale"]).logpdf(x[..., None, :]).sum(-1)
    m = comp.max(-1, keepdims=True)
    return (m + np.log(np.exp(comp - m + logw).sum(-1, keepdims=True)))[..., 0]


def _mvt(df, loc, scale_tril):
    return sp.multivariate_t(loc, scale_tril @ scale_tril.T, df=df)


def _dirmult_logpmf(p, x):
    return sp.dirichlet_multinomial(p["concentration"], p["total_count"]).logpmf(x)


def _multinomial_logpmf(p, x):
    probs = p["probs"] / p["probs"].sum()
    return sp.multinomial(int(p["total_count"]), probs).logpmf(x)


def _dirichlet_logpdf(p, x):
    return np.array([sp.dirichlet(p["concentration"]).logpdf(xi) for xi in x.reshape(-1, x.shape[-1])]).reshape(x.shape[:-1])  # noqa: E501


TRIL = [[1.0, 0.0], [0.5, 0.8]]

FIXTURES = [
    Fixture(dist.Normal, [{"loc": 0.5, "scale": 2.0}, {"loc": [1.0, -1.0], "scale": [0.5, 3.0]}],
            lambda loc, scale: sp.norm(loc, scale), cdf=True, icdf=True),
    Fixture(dist.Cauchy, [{"loc": 0.5, "scale": 2.0}], lambda loc, scale: sp.cauchy(loc, scale),
            moments=None, cdf=True, icdf=True),
    Fixture(dist.Laplace, [{"loc": [0.5, -2.0], "scale": [2.0, 0.3]}],
            lambda loc, scale: sp.laplace(loc, scale), cdf=True, icdf=True),
    Fixture(dist.Gumbel, [{"loc": 0.5, "scale": 2.0}], lambda loc, scale: sp.gumbel_r(loc, scale)),
    Fixture(dist.StudentT, [{"df": 5.5, "loc": 0.5, "scale": 2.0}],
            lambda df, loc, scale: sp.t(df, loc, scale), moments="mean"),
    Fixture(dist.Exponential, [{"rate": [0.5, 4.0]}], lambda rate: sp.expon(scale=1 / rate),
            cdf=True, icdf=True),
    Fixture(dist.Gamma, [{"concentration": [0.5, 3.0], "rate": [2.0, 0.5]}],
            lambda concentration, rate: sp.gamma(concentration, scale=1 / rate), cdf=True),
    Fixture(dist.Beta, [{"concentration1": [0.5, 3.0], "concentration0": [2.0, 1.5]}],
            lambda concentration1, concentration0: sp.beta(concentration1, concentration0)),
    Fixture(dist.LogNormal, [{"loc": 0.2, "scale": 0.4}],
            lambda loc, scale: sp.lognorm(scale, scale=np.exp(loc)), cdf=True, icdf=True),
    Fixture(dist.HalfNormal, [{"scale": [0.5, 2.0]}], lambda scale: sp.halfnorm(scale=scale),
            cdf=True, icdf=True),
    Fixture(dist.HalfCauchy, [{"scale": 2.0}], lambda scale: sp.halfcauchy(scale=scale),
            moments=None, cdf=True, icdf=True),
    Fixture(dist.Uniform, [{"low": [0.0, -2.0], "high": [1.0, 5.0]}],
            lambda low, high: sp.uniform(low, high - low), cdf=True, icdf=True),
    Fixture(dist.Chi2, [{"df": [1.5, 6.0]}], lambda df: sp.chi2(df)),
    Fixture(dist.Weibull, [{"scale": 2.0, "concentration": 1.7}],
            lambda scale, concentration: sp.weibull_min(concentration, scale=scale)),
    Fixture(dist.Pareto, [{"scale": 1.5, "alpha": 5.5}],
            lambda scale, alpha: sp.pareto(alpha, scale=scale), moments="mean"),
    Fixture(dist.InverseGamma, [{"concentration": 5.5, "rate": 2.0}],
            lambda concentration, rate: sp.invgamma(concentration, scale=rate), moments="mean"),
    Fixture(dist.VonMises, [{"loc": 0.5, "concentration": 2.0}],
            lambda loc, concentration: sp.vonmises(concentration, loc), moments=None),
    Fixture(dist.FisherSnedecor, [{"df1": 5.0, "df2": 12.0}],
            lambda df1, df2: sp.f(df1, df2), moments="mean"),
    Fixture(dist.Kumaraswamy, [{"concentration1": 2.0, "concentration0": 3.0}],
            logpdf=_kumaraswamy_logpdf),
    Fixture(dist.GeneralizedPareto, [{"loc": 0.5, "scale": 2.0, "concentration": 0.1}],
            lambda loc, scale, concentration: sp.genpareto(concentration, loc, scale)),
    Fixture(dist.AsymmetricLaplace, [{"loc": [0.5, -1.0], "scale": [2.0, 0.5],
                                      "asymmetry": [0.6, 2.0]}],
            lambda loc, scale, asymmetry: sp.laplace_asymmetric(asymmetry, loc, scale), cdf=True),
    Fixture(dist.SoftLaplace, [{"loc": 0.5, "scale": 2.0}],
            lambda loc, scale: sp.hypsecant(loc, scale), cdf=True, icdf=True),
    Fixture(dist.TruncatedNormal, [{"loc": [0.5, 0.0, 1.0], "scale": [2.0, 1.0, 0.5],
                                    "low": [-1.0, 3.0, -np.inf], "high": [1.5, np.inf, 1.2]}],
            lambda loc, scale, low, high: sp.truncnorm((low - loc) / scale, (high - loc) / scale,
                                                       loc, scale), cdf=True, icdf=True),
    # Discrete
    Fixture(dist.Bernoulli, [{"probs": [0.2, 0.9]}], lambda probs: sp.bernoulli(probs)),
    Fixture(dist.Binomial, [{"total_count": 10.0, "probs": [0.2, 0.7]}],
            lambda total_count, probs: sp.binom(total_count, probs)),
    Fixture(dist.Poisson, [{"rate": [0.5, 7.0]}], lambda rate: sp.poisson(rate)),
    Fixture(dist.Geometric, [{"probs": [0.2, 0.7]}], lambda probs: sp.geom(probs, loc=-1)),
    Fixture(dist.NegativeBinomial, [{"total_count": 3.5, "probs": [0.3, 0.6]}],
            lambda total_count, probs: sp.nbinom(total_count, 1 - probs)),
    Fixture(dist.Categorical, [{"probs": [0.1, 0.6, 0.3]}], logpdf=_categorical_logpmf,
            moments=None),
    Fixture(dist.BetaBinomial, [{"concentration1": [0.5, 2.0], "concentration0": [1.5, 4.0],
                                 "total_count": 8.0}],
            lambda concentration1, concentration0, total_count: sp.betabinom(
                total_count, concentration1, concentration0)),
    Fixture(dist.GammaPoisson, [{"concentration": [0.7, 4.0], "rate": [0.5, 2.0]}],
            lambda concentration, rate: sp.nbinom(concentration, rate / (1 + rate))),
    Fixture(dist.ZeroInflatedPoisson, [{"rate": [0.5, 6.0], "gate": [0.2, 0.6]}],
            logpdf=_zip_logpmf),
    Fixture(dist.ZeroInflatedNegativeBinomial, [{"total_count": 3.0, "probs": [0.3, 0.7],
                                                 "gate": [0.3, 0.1]}], logpdf=_zinb_logpmf),
    Fixture(dist.OrderedLogistic, [{"predictor": [0.3, -1.0],
                                    "cutpoints": [[-1.0, 0.5, 2.0], [-0.5, 0.0, 4.0]]}],
            logpdf=_ordered_logistic_logpmf, moments=None),
    Fixture(dist.LogNormalNegativeBinomial, [{"total_count": 4.0, "logits": [-0.5, 0.3],
                                              "multiplicative_noise_scale": [0.3, 0.5],
                                              "num_quad_points": 32}],
            logpdf=_lownb_logpmf, int_params=("num_quad_points",)),
    # Multivariate
    Fixture(dist.MultivariateNormal, [{"loc": [0.5, -1.0], "scale_tril": TRIL}],
            lambda loc, scale_tril: sp.multivariate_normal(loc, scale_tril @ scale_tril.T),
            multivariate=True),
    Fixture(dist.LowRankMultivariateNormal, [{"loc": [0.5, -1.0, 0.0],
                                              "cov_factor": [[1.0], [0.5], [-0.3]],
                                              "cov_diag": [0.5, 1.0, 2.0]}],
            lambda loc, cov_factor, cov_diag: sp.multivariate_normal(
                loc, cov_factor @ cov_factor.T + np.diag(cov_diag)), multivariate=True),
    Fixture(dist.MultivariateStudentT, [{"df": 6.0, "loc": [0.5, -1.0], "scale_tril": TRIL}],
            _mvt, moments="mean", multivariate=True),
    Fixture(dist.Dirichlet, [{"concentration": [0.5, 2.0, 3.0]}], logpdf=_dirichlet_logpdf,
            multivariate=True),
    Fixture(dist.Multinomial, [{"total_count": 7, "probs": [0.2, 0.5, 0.3]}],
            logpdf=_multinomial_logpmf, int_params=("total_count",), multivariate=True),
    Fixture(dist.DirichletMultinomial, [{"concentration": [0.5, 2.0, 3.0], "total_count": 6.0}],
            logpdf=_dirmult_logpmf, multivariate=True),
    Fixture(dist.MixtureOfDiagNormals, [{"locs": [[0.0, 1.0], [2.0, -1.0]],
                                         "coord_scale": [[1.0, 0.5], [0.3, 2.0]],
                                         "component_logits": [0.2, -0.4]}],
            logpdf=_mixdiag_logpdf, multivariate=True),
]
