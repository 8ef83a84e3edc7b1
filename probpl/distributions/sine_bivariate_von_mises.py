"""``SineBivariateVonMises``: two dependent angles on the torus, with the
normalising constant from its Bessel series and an exact rejection sampler.

The density of ``(phi, psi)`` is proportional to ``exp(k1 cos(phi - m1) +
k2 cos(psi - m2) + rho sin(phi - m1) sin(psi - m2))``.  Sampling draws
``phi`` from its marginal by rejection (an angular-central-Gaussian envelope
on the half angle) and then ``psi`` from its von Mises conditional.

References:

1. Singh, Hnizdo, Demchuk, "Probabilistic model for two dependent circular
   variables" (2002).
2. Mardia, Taylor, Subramaniam, "Protein bioinformatics and mixtures of
   bivariate von Mises distributions for angular data" (2007).
3. Kent, Ganeiber, Mardia, "A new unified approach for the simulation of a
   wide class of directional distributions" (2018).
"""

import math

import torch
from torch.distributions.utils import broadcast_all

from . import constraints
from .torch import VonMises
from .torch_distribution import TorchDistribution
from .util import broadcast_shape

# Series terms below exp(-_SERIES_TOL) of the sum are dropped (relative error
# well under float64 epsilon).
_SERIES_TOL = 45.0
_MAX_SERIES_TERMS = 1 << 17


def _wrap_angle(x):
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _log_i0(x):
    return torch.log(torch.special.i0e(x)) + x


def log_bessel_ratios(x, num_orders):
    """``log(I_{v+1}(x) / I_v(x))`` for ``v = 0, ..., num_orders - 1``.

    The ratios obey ``r_v = x / (2 (v + 1) + x r_{v+1})``, a recurrence that is
    stable run downwards; it starts where the ratios are small (beyond both
    ``num_orders`` and ``x``), so its starting error dies out geometrically.

    :param torch.Tensor x: positive arguments, any shape.
    :param int num_orders: how many ratios to return.
    :returns: a tensor of shape ``x.shape + (num_orders,)``.
    """
    top = max(num_orders, int(math.ceil(x.detach().max().item()))) + 40
    v = top + 1.0
    r = x / (v + torch.sqrt(v * v + x * x))  # Amos-type estimate of r_top
    ratios = []
    for order in range(top - 1, -1, -1):
        r = x / (2 * (order + 1) + x * r)
        if order < num_orders:
            ratios.append(r)
    return torch.stack(ratios[::-1], dim=-1).log()


def log_normalizer(phi_concentration, psi_concentration, correlation):
    """``log C`` where ``C = (2 pi)^2 sum_i binom(2i, i) (rho^2 / (4 k1 k2))^i
    I_i(k1) I_i(k2)``, summed in log space until the terms are negligible.

    :param torch.Tensor phi_concentration: ``k1``, positive.
    :param torch.Tensor psi_concentration: ``k2``, positive, same shape.
    :param torch.Tensor correlation: ``rho``, same shape.
    :returns: ``log C``, same shape.
    """
    k1, k2, rho = phi_concentration, psi_concentration, correlation
    tiny = torch.finfo(rho.dtype).tiny
    # log of rho^2 / (4 k1 k2); rho = 0 leaves only the first term.
    log_z = torch.log((rho * rho).clamp(min=tiny)) - torch.log(4 * k1 * k2)
    num_terms = 64
    while True:
        i = torch.arange(num_terms - 1, dtype=k1.dtype, device=k1.device)
        log_step = (
            torch.log(2 * (2 * i + 1) / (i + 1))
            + log_z.unsqueeze(-1)
            + log_bessel_ratios(k1, num_terms - 1)
            + log_bessel_ratios(k2, num_terms - 1)
        )
        first = (_log_i0(k1) + _log_i0(k2)).unsqueeze(-1)
        log_terms = torch.cat([first, first + log_step.cumsum(-1)], dim=-1)
        total = log_terms.logsumexp(-1)
        tail_small = log_terms[..., -1] < total - _SERIES_TOL
        shrinking = log_step[..., -1] < math.log(0.5)
        if bool((tail_small & shrinking).all()) or num_terms >= _MAX_SERIES_TERMS:
            break
        num_terms *= 4
    return 2 * math.log(2 * math.pi) + total


class SineBivariateVonMises(TorchDistribution):
    r"""The sine model of two dependent angles ``(phi, psi)`` on the torus.

    .. math::

        p(\phi, \psi) = C^{-1} \exp(\kappa_1 \cos(\phi - \mu_1)
            + \kappa_2 \cos(\psi - \mu_2)
            + \rho \sin(\phi - \mu_1) \sin(\psi - \mu_2)),

    with :math:`C = (2\pi)^2 \sum_{i \ge 0} \binom{2i}{i}
    (\rho^2 / 4\kappa_1\kappa_2)^i I_i(\kappa_1) I_i(\kappa_2)`.  The density is
    unimodal when :math:`\rho^2 < \kappa_1 \kappa_2` and bimodal otherwise;
    sampling stays exact in both cases but slows down in the bimodal one.

    Give exactly one of ``correlation`` and ``weighted_correlation``; the latter
    sets ``correlation = weighted_correlation * sqrt(k1 * k2)`` so a value in
    ``(-1, 1)`` keeps the density unimodal.

    The normaliser's Bessel ratios come from a recurrence whose length grows
    with the largest concentration, so very large concentrations (beyond
    ~1e4) are exact but slow.

    Samples lie in ``[-pi, pi)^2``; ``log_prob`` is ``2 pi``-periodic in each
    angle, so (as in Pyro) the declared support is the whole plane, which lets
    HMC move freely round the torus.

    :param torch.Tensor phi_loc: location of the first angle.
    :param torch.Tensor psi_loc: location of the second angle.
    :param torch.Tensor phi_concentration: concentration ``k1 > 0`` of the first.
    :param torch.Tensor psi_concentration: concentration ``k2 > 0`` of the second.
    :param torch.Tensor correlation: ``rho``, any real.
    :param torch.Tensor weighted_correlation: ``rho / sqrt(k1 k2)``.

    Example::

        >>> d = SineBivariateVonMises(torch.tensor(0.0), torch.tensor(1.0),
        ...                           torch.tensor(2.0), torch.tensor(3.0),
        ...                           weighted_correlation=torch.tensor(0.5))
        >>> d.sample((4,)).shape
        torch.Size([4, 2])
    """

    arg_constraints = {
        "phi_loc": constraints.real,
        "psi_loc": constraints.real,
        "phi_concentration": constraints.positive,
        "psi_concentration": constraints.positive,
        "correlation": constraints.real,
    }
    support = constraints.independent(constraints.real, 1)
    max_sample_iter = 1000

    def __init__(self, phi_loc, psi_loc, phi_concentration, psi_concentration,
                 correlation=None, weighted_correlation=None, validate_args=None):
        if (correlation is None) == (weighted_correlation is None):
            raise ValueError(
                "SineBivariateVonMises: give exactly one of correlation and weighted_correlation"
            )
        if weighted_correlation is not None:
            weighted_correlation = torch.as_tensor(weighted_correlation)
            phi_c, psi_c = broadcast_all(phi_concentration, psi_concentration)
            correlation = weighted_correlation * torch.sqrt(phi_c * psi_c)
        (self.phi_loc, self.psi_loc, self.phi_concentration, self.psi_concentration,
         self.correlation) = broadcast_all(
            phi_loc, psi_loc, phi_concentration, psi_concentration, correlation)
        super().__init__(self.phi_loc.shape, torch.Size([2]), validate_args)
        if (self._validate_args and weighted_correlation is not None
                and (weighted_correlation.abs() > 1).any()):
            raise ValueError(
                "SineBivariateVonMises: weighted_correlation must lie in [-1, 1], got "
                f"{weighted_correlation}"
            )

    @classmethod
    def infer_shapes(cls, **arg_shapes):
        return torch.Size(broadcast_shape(*arg_shapes.values())), torch.Size([2])

    @property
    def norm_const(self):
        """``log C``, the log normalising constant (computed once)."""
        if "_norm_const" not in self.__dict__:
            self._norm_const = log_normalizer(
                self.phi_concentration, self.psi_concentration, self.correlation)
        return self._norm_const

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(SineBivariateVonMises, _instance)
        for name in self.arg_constraints:
            setattr(new, name, getattr(self, name).expand(batch_shape))
        if "_norm_const" in self.__dict__:
            new._norm_const = self._norm_const.expand(batch_shape)
        super(SineBivariateVonMises, new).__init__(batch_shape, self.event_shape,
                                                   validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        dphi = value[..., 0] - self.phi_loc
        dpsi = value[..., 1] - self.psi_loc
        return (self.phi_concentration * torch.cos(dphi)
                + self.psi_concentration * torch.cos(dpsi)
                + self.correlation * torch.sin(dphi) * torch.sin(dpsi)
                - self.norm_const)

    @property
    def mean(self):
        """The locations ``(phi_loc, psi_loc)`` (the circular mean direction)."""
        return torch.stack([self.phi_loc, self.psi_loc], dim=-1)

    def sample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        shape = sample_shape + self.batch_shape
        with torch.no_grad():
            k1 = self.phi_concentration.expand(shape)
            k2 = self.psi_concentration.expand(shape)
            rho = self.correlation.expand(shape)
            phi = _sample_phi_marginal(k1, k2, rho, self.max_sample_iter)
            # psi | phi is von Mises: k2 cos(u) + rho sin(phi) sin(u) = R cos(u - delta).
            sin_phi = torch.sin(phi)
            concentration = torch.sqrt(k2 * k2 + (rho * sin_phi) ** 2)
            delta = torch.atan2(rho * sin_phi, k2)
            psi = VonMises(delta, concentration).sample()
            return torch.stack([_wrap_angle(phi + self.phi_loc),
                                _wrap_angle(psi + self.psi_loc)], dim=-1)


def _marginal_log_density(s, k1, k2, rho):
    """The centred marginal of the first angle in terms of ``s = sin^2(phi / 2)``,
    less its value at ``s = 0``, and its derivative in ``s``."""
    u = 4 * s * (1 - s)  # sin^2(phi)
    z = torch.sqrt(k2 * k2 + rho * rho * u)
    value = -2 * k1 * s + _log_i0(z) - _log_i0(k2)
    dh_du = rho * rho * torch.special.i1e(z) / (2 * z * torch.special.i0e(z))
    return value, -2 * k1 + 4 * (1 - 2 * s) * dh_du


def _envelope(k1, k2, rho, num_candidates=33):
    r"""A Bingham bound ``q(s) <= c - lam * s`` on the marginal log density.

    ``q`` is concave in ``s`` (``log I_0(sqrt(a + b u))`` is concave in ``u``,
    and ``u = 4 s (1 - s)`` is concave), so every tangent line bounds it.  Of a
    few tangent points in ``[0, 1/2]`` (the mode lies there) we keep the one
    whose envelope has the least mass, :math:`e^{c} \int e^{-\lambda \sin^2
    \theta} d\theta = 2\pi e^{c - \lambda/2} I_0(\lambda/2)`.
    """
    s0 = torch.linspace(0, 0.5, num_candidates, dtype=k1.dtype, device=k1.device)
    q0, dq0 = _marginal_log_density(s0, *(x.unsqueeze(-1) for x in (k1, k2, rho)))
    lam = -dq0
    c = q0 + lam * s0
    log_mass = c - lam / 2 + _log_i0(lam.abs() / 2)
    best = log_mass.argmin(-1, keepdim=True)
    return c.gather(-1, best).squeeze(-1), lam.gather(-1, best).squeeze(-1)


def _sample_phi_marginal(k1, k2, rho, max_iter):
    r"""Draw the centred first angle from its marginal
    :math:`\propto \exp(k_1 \cos\phi)\, I_0(\sqrt{k_2^2 + \rho^2 \sin^2\phi})`.

    On the half angle :math:`\theta = \phi / 2` the log marginal is a concave
    function of :math:`s = \sin^2\theta`, bounded by a line :math:`c - \lambda s`
    (:func:`_envelope`): a Bingham density on the circle.  That in turn is
    bounded by an angular central Gaussian (Kent et al. 2018), which is what
    we propose from; only the draws still pending are redrawn each round.
    """
    shape = k1.shape
    k1, k2, rho = k1.reshape(-1), k2.reshape(-1), rho.reshape(-1)
    c, lam = _envelope(k1, k2, rho)
    # -lam s = shift - x^T A x with A = diag(a_cos, a_sin) >= 0, x = (cos, sin) theta.
    a_cos, a_sin = (-lam).clamp(min=0), lam.clamp(min=0)
    shift = a_cos
    big = torch.maximum(a_cos, a_sin)
    b = 1 - big + torch.sqrt(big * big + 1)  # Kent et al.'s choice, in (0, 2]
    # exp(-q) <= exp(log_c) / (1 + 2 q / b) for all q >= 0.
    log_c = (b - 2) / 2 + torch.log(2 / b)
    scale_cos, scale_sin = torch.rsqrt(1 + 2 * a_cos / b), torch.rsqrt(1 + 2 * a_sin / b)

    theta = torch.zeros_like(k1)
    pending = torch.arange(k1.numel(), device=k1.device)
    for _ in range(max_iter):
        if pending.numel() == 0:
            return _wrap_angle(2 * theta).reshape(shape)
        i = pending
        proposal = torch.atan2(scale_sin[i] * torch.randn_like(scale_sin[i]),
                               scale_cos[i] * torch.randn_like(scale_cos[i]))
        sin2 = torch.sin(proposal) ** 2
        quad = a_cos[i] * (1 - sin2) + a_sin[i] * sin2
        log_target = _marginal_log_density(sin2, k1[i], k2[i], rho[i])[0]
        # log_target <= c - lam s = c + shift - quad <= c + shift + log_c - log1p(2 quad / b).
        log_accept = log_target - c[i] - shift[i] + torch.log1p(2 * quad / b[i]) - log_c[i]
        accept = torch.rand_like(log_accept).log() < log_accept
        theta[i[accept]] = proposal[accept]
        pending = i[~accept]
    if pending.numel() == 0:
        return _wrap_angle(2 * theta).reshape(shape)
    raise RuntimeError(
        f"SineBivariateVonMises.sample: {pending.numel()} draws still rejected after "
        f"{max_iter} rounds; raise SineBivariateVonMises.max_sample_iter"
    )
