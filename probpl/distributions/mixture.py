"""Mixtures: ``MaskedMixture`` (a per-element choice between two components
given by a known boolean mask) and ``MixtureOfDiagNormals``.
"""

import math

import torch

from . import constraints
from .torch import Categorical
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


class MaskedMixture(TorchDistribution):
    """Choose ``component1`` where ``mask`` is True and ``component0`` elsewhere.

    :param torch.Tensor mask: a bool tensor broadcastable to the components' batch shapes.
    :param component0: the distribution used where ``mask`` is False.
    :param component1: the distribution used where ``mask`` is True.
    """

    arg_constraints = {}

    def __init__(self, mask, component0, component1, validate_args=None):
        if not torch.is_tensor(mask) or mask.dtype != torch.bool:
            raise ValueError(f"MaskedMixture: mask must be a bool tensor, got {mask!r}")
        if component0.event_shape != component1.event_shape:
            raise ValueError(
                "MaskedMixture: components must share an event_shape, got "
                f"{tuple(component0.event_shape)} and {tuple(component1.event_shape)}"
            )
        if component0.support is not component1.support and repr(component0.support) != repr(
            component1.support
        ):
            raise ValueError(
                f"MaskedMixture: components must share a support, got {component0.support} "
                f"and {component1.support}"
            )
        batch_shape = broadcast_shape(mask.shape, component0.batch_shape, component1.batch_shape)
        self.mask = mask
        self.component0 = component0
        self.component1 = component1
        super().__init__(torch.Size(batch_shape), component0.event_shape, validate_args)

    @constraints.dependent_property
    def support(self):
        return self.component0.support

    @property
    def has_rsample(self):
        return self.component0.has_rsample and self.component1.has_rsample

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return MaskedMixture(
            self.mask.expand(batch_shape),
            self.component0.expand(batch_shape),
            self.component1.expand(batch_shape),
            validate_args=False,
        )

    def _mask_for(self, value_shape):
        return self.mask.reshape(self.mask.shape + (1,) * self.event_dim)

    def sample(self, sample_shape=torch.Size()):
        mask = self._mask_for(None)
        return torch.where(
            mask, self.component1.sample(sample_shape), self.component0.sample(sample_shape)
        )

    def rsample(self, sample_shape=torch.Size()):
        mask = self._mask_for(None)
        return torch.where(
            mask, self.component1.rsample(sample_shape), self.component0.rsample(sample_shape)
        )

    def log_prob(self, value):
        return torch.where(
            self.mask, self.component1.log_prob(value), self.component0.log_prob(value)
        )

    @property
    def mean(self):
        return torch.where(self._mask_for(None), self.component1.mean, self.component0.mean)

    @property
    def variance(self):
        mask = self._mask_for(None)
        return torch.where(mask, self.component1.variance, self.component0.variance)


class MixtureOfDiagNormals(TorchDistribution):
    """A mixture of K diagonal-covariance normals in D dims.

    :param torch.Tensor locs: component means, shape ``(K, D)``.
    :param torch.Tensor coord_scale: component standard deviations, shape ``(K, D)``.
    :param torch.Tensor component_logits: mixture logits, shape ``(K,)``.

    ``rsample`` is reparameterised for all three parameters by implicit
    differentiation of the mixture's Rosenblatt transform (Figurnov et al.
    2018): coordinate ``d`` maps to ``u_d = F_d(x_d | x_{<d})``, the conditional
    CDF, which is a mixture of normal CDFs whose weights are the component
    posteriors given ``x_{<d}``.  Holding ``u`` fixed gives ``dx/dtheta =
    -(dF/dx)^{-1} dF/dtheta`` with ``dF/dx`` lower triangular.  The draw itself
    is the ordinary ancestral sample; only its gradient comes from this.

    References: Figurnov, Mohamed, Mnih, "Implicit reparameterization
    gradients" (2018); Rosenblatt, "Remarks on a multivariate transformation"
    (1952).
    """

    has_rsample = True
    arg_constraints = {
        "locs": constraints.independent(constraints.real, 2),
        "coord_scale": constraints.independent(constraints.positive, 2),
        "component_logits": constraints.real_vector,
    }
    support = constraints.real_vector

    def __init__(self, locs, coord_scale, component_logits, validate_args=None):
        if locs.dim() < 2 or locs.shape != coord_scale.shape:
            raise ValueError(
                "MixtureOfDiagNormals: locs and coord_scale must share a shape (..., K, D), got "
                f"{tuple(locs.shape)} and {tuple(coord_scale.shape)}"
            )
        if component_logits.shape[-1:] != locs.shape[-2:-1]:
            raise ValueError(
                f"MixtureOfDiagNormals: component_logits shape {tuple(component_logits.shape)} "
                f"must end in K={locs.shape[-2]}"
            )
        self.locs = locs
        self.coord_scale = coord_scale
        self.component_logits = component_logits
        batch_shape = broadcast_shape(locs.shape[:-2], component_logits.shape[:-1])
        super().__init__(torch.Size(batch_shape), locs.shape[-1:], validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        k, d = self.locs.shape[-2:]
        return MixtureOfDiagNormals(
            self.locs.expand(batch_shape + (k, d)),
            self.coord_scale.expand(batch_shape + (k, d)),
            self.component_logits.expand(batch_shape + (k,)),
            validate_args=False,
        )

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value.unsqueeze(-2) - self.locs) / self.coord_scale
        comp = -0.5 * z.pow(2).sum(-1) - self.coord_scale.log().sum(-1)
        comp = comp - 0.5 * value.shape[-1] * math.log(2 * math.pi)
        log_w = self.component_logits - self.component_logits.logsumexp(-1, keepdim=True)
        return (comp + log_w).logsumexp(-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            k = Categorical(logits=self.component_logits).expand(self.batch_shape)
            which = k.sample(sample_shape)
            index = which[..., None, None].expand(which.shape + (1, self.event_shape[0]))
            shape = torch.Size(sample_shape) + self.locs.shape
            locs = self.locs.expand(shape).gather(-2, index).squeeze(-2)
            scales = self.coord_scale.expand(shape).gather(-2, index).squeeze(-2)
            return locs + scales * torch.randn_like(locs)

    def rsample(self, sample_shape=torch.Size()):
        x = self.sample(sample_shape)
        cdf, jacobian = self._rosenblatt(x)
        # Zero in value; its gradient is -(dF/dx)^{-1} dF/dtheta at fixed x.
        shift = torch.linalg.solve_triangular(
            jacobian, (cdf - cdf.detach()).unsqueeze(-1), upper=False).squeeze(-1)
        return x - shift

    def _rosenblatt(self, x):
        """The conditional CDFs ``F_d(x_d | x_{<d})`` (differentiable in the
        parameters) and their lower-triangular Jacobian in ``x`` (detached)."""
        z = (x.unsqueeze(-2) - self.locs) / self.coord_scale  # (..., K, D)
        log_density = -0.5 * z.pow(2) - self.coord_scale.log() - 0.5 * math.log(2 * math.pi)
        # Component posteriors given the coordinates before d: shape (..., K, D).
        log_prior = self.component_logits.log_softmax(-1).unsqueeze(-1)
        before = log_density.cumsum(-1) - log_density
        weights = (log_prior + before).softmax(-2)
        phi = torch.special.ndtr(z)
        cdf = (weights * phi).sum(-2)
        with torch.no_grad():
            # dF_d/dx_j for j < d: the weights move with x_j through the scores
            # s_kj = d log N_kj / dx_j; d/dx_d is the conditional density.
            w, phi_d, f = weights.detach(), phi.detach(), cdf.detach()
            score = -z.detach() / self.coord_scale.detach()
            cross = (w * phi_d).mT @ score - f.unsqueeze(-1) * (w.mT @ score)
            density = (w * log_density.detach().exp()).sum(-2)
            tiny = torch.finfo(density.dtype).tiny
            jacobian = cross.tril(-1) + torch.diag_embed(density.clamp(min=tiny))
        return cdf, jacobian

    @property
    def mean(self):
        w = self.component_logits.softmax(-1).unsqueeze(-1)
        return (w * self.locs).sum(-2)

    @property
    def variance(self):
        w = self.component_logits.softmax(-1).unsqueeze(-1)
        second = (w * (self.coord_scale.pow(2) + self.locs.pow(2))).sum(-2)
        return second - self.mean.pow(2)
