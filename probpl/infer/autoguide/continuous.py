"""Guides over one packed vector of all latent sites in unconstrained space.

:class:`AutoContinuous` concatenates the unconstrained values of every latent
site into a vector of length ``latent_dim``, draws that vector from
``get_posterior()`` as one auxiliary site, and hands each model site its slice
mapped onto its support, as a :class:`~probpl.distributions.Delta` carrying the
log-Jacobian so the guide's density is right. Subclasses choose the posterior:
diagonal, full-rank or low-rank Normal, a normalizing flow, or a point mass
turned into a Laplace approximation.
"""

from contextlib import ExitStack

import torch

from probpl.distributions import (
    Delta,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
    constraints,
)
from probpl.distributions.transforms import AffineTransform, Transform
from probpl.distributions.util import sum_rightmost
from probpl.infer.autoguide.guides import AutoGuide, _enter_plates
from probpl.infer.autoguide.initialization import init_to_median
from probpl.infer.autoguide.utils import (
    is_identity,
    product,
    site_transform,
    unconstrained_event_dim,
)
from probpl.nn.module import PyroParam
from probpl.poutine.handlers import block, substitute, trace
from probpl.primitives import sample


class AutoContinuous(AutoGuide):
    """Base class of guides over the packed unconstrained latent vector.

    :param callable model: the model (its plates may not be subsampled).
    :param callable init_loc_fn: initialisation strategy for the latent sites.
    """

    def __init__(self, model, init_loc_fn=init_to_median):
        self.init_loc_fn = init_loc_fn
        super().__init__(model)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        plan = []
        for name, site in self._latent_sites(self.prototype_trace):
            for frame in site["cond_indep_stack"]:
                if frame.full_size != frame.size:
                    raise NotImplementedError(
                        f"{type(self).__name__}: sample site '{name}' is in the subsampled plate "
                        f"'{frame.name}' (size {frame.full_size}, subsample {frame.size}); "
                        "use AutoNormal for models with local latents under subsampling"
                    )
            transform = site_transform(site)
            shape = transform.inv(site["value"]).shape
            event_dim = unconstrained_event_dim(site, transform)
            plan.append((name, site, transform, is_identity(transform), shape, event_dim,
                         tuple(site["cond_indep_stack"])))
        self._plan = plan
        self.latent_dim = sum(product(entry[4]) for entry in plan)
        if self.latent_dim == 0:
            raise RuntimeError(
                f"{type(self).__name__} found no latent sites in the model; an empty guide "
                "(def guide(*args): pass) fits it"
            )

    def _init_loc(self):
        """The initial latent vector, from the prototype's (initialised) values."""
        parts = [t.inv(site["value"].detach()).reshape(-1) for _, site, t, *_ in self._plan]
        return torch.cat(parts)

    def _setup_loc_scale(self):
        """A location at the initial point and a per-coordinate scale of ``init_scale``."""
        loc = self._init_loc()
        self.loc = torch.nn.Parameter(loc)
        self.scale = PyroParam(torch.full_like(loc, self._init_scale),
                               constraints.softplus_positive)
        return loc

    def get_base_dist(self):
        """The base distribution when the posterior is written as a transformed one."""
        raise NotImplementedError

    def get_transform(self, *args, **kwargs):
        """The transform from the base distribution to the posterior."""
        raise NotImplementedError

    def get_posterior(self, *args, **kwargs):
        """The distribution of the packed unconstrained latent vector."""
        return TransformedDistribution(self.get_base_dist(), self.get_transform(*args, **kwargs))

    def sample_latent(self, *args, **kwargs):
        """Draw the packed latent vector as an auxiliary site."""
        return sample(f"_{self._pyro_name}_latent", self.get_posterior(*args, **kwargs),
                      infer={"is_auxiliary": True})

    def _unpack_latent(self, latent):
        """Yield ``(site, unconstrained value)`` for each latent site; leading dims of
        ``latent`` (e.g. vectorised particles) are kept as batch dims."""
        batch_shape = latent.shape[:-1]
        pos = 0
        for _, site, _, _, shape, event_dim, _ in self._plan:
            size = product(shape)
            target = torch.broadcast_shapes(shape, batch_shape + (1,) * event_dim)
            yield site, latent[..., pos: pos + size].reshape(target)
            pos += size
        if pos != latent.size(-1):
            raise ValueError(
                f"{type(self).__name__}: latent vector has size {latent.size(-1)}, "
                f"expected {pos}"
            )

    def forward(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        latent = self.sample_latent(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs) if self._prototype_frames else None
        result = {}
        unpacked = self._unpack_latent(latent)
        for (name, site, transform, identity, _, _, frames), (_, u) in zip(self._plan, unpacked):
            event_dim = site["fn"].event_dim
            if identity:
                value, log_density = u, 0.0
            else:
                value = transform(u)
                ladj = transform.log_abs_det_jacobian(u, value)
                log_density = -sum_rightmost(ladj, ladj.dim() - value.dim() + event_dim)
            fn = Delta(value, log_density=log_density, event_dim=event_dim, validate_args=False)
            if frames:
                with ExitStack() as stack:
                    _enter_plates(stack, plates, frames)
                    result[name] = sample(name, fn)
            else:
                result[name] = sample(name, fn)
        return result

    def _loc_scale(self, *args, **kwargs):
        """``(loc, scale)`` of the posterior's marginals in unconstrained space."""
        raise NotImplementedError

    def _constrain(self, latent):
        return {
            site["name"]: t(u) for (_, site, t, *_), (_, u) in
            zip(self._plan, self._unpack_latent(latent))
        }

    def median(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            loc, _ = self._loc_scale(*args, **kwargs)
            return {k: v.detach() for k, v in self._constrain(loc).items()}

    def quantiles(self, quantiles, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            loc, scale = self._loc_scale(*args, **kwargs)
            q = torch.as_tensor(quantiles, dtype=loc.dtype, device=loc.device).unsqueeze(-1)
            latent = torch.distributions.Normal(loc, scale).icdf(q)
            return {k: v.detach() for k, v in self._constrain(latent).items()}


class AutoDiagonalNormal(AutoContinuous):
    """A Normal with diagonal covariance over the packed unconstrained latents.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy.
    :param float init_scale: initial scale of every coordinate.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.autoguide import AutoDiagonalNormal
        >>> def model():
        ...     probpl.sample("a", dist.Normal(0., 1.))
        ...     probpl.sample("b", dist.LogNormal(0., 1.).expand([2]).to_event(1))
        >>> guide = AutoDiagonalNormal(model)
        >>> sorted(guide()), guide.latent_dim
        (['a', 'b'], 3)
    """

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1):
        self._init_scale = _check_init_scale(init_scale)
        super().__init__(model, init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self._setup_loc_scale()

    def get_base_dist(self):
        loc = self._init_loc()
        return Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)

    def get_transform(self, *args, **kwargs):
        return AffineTransform(self.loc, self.scale)

    def get_posterior(self, *args, **kwargs):
        return Normal(self.loc, self.scale, validate_args=False).to_event(1)

    def _loc_scale(self, *args, **kwargs):
        return self.loc, self.scale


def _check_init_scale(init_scale):
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    return init_scale


class _LowerCholeskyAffine(Transform):
    """``y = loc + scale_tril @ x`` on vectors."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, loc, scale_tril, cache_size=0):
        super().__init__(cache_size=cache_size)
        self.loc = loc
        self.scale_tril = scale_tril

    def _call(self, x):
        return self.loc + (self.scale_tril @ x.unsqueeze(-1)).squeeze(-1)

    def _inverse(self, y):
        rhs = (y - self.loc).unsqueeze(-1)
        return torch.linalg.solve_triangular(self.scale_tril, rhs, upper=False).squeeze(-1)

    def log_abs_det_jacobian(self, x, y):
        ladj = self.scale_tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
        return ladj.expand(x.shape[:-1])


class AutoMultivariateNormal(AutoContinuous):
    """A Normal with full covariance over the packed unconstrained latents,
    ``scale_tril = diag(scale) @ L`` with ``L`` unit lower triangular.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy.
    :param float init_scale: initial scale of every coordinate.
    """

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1):
        self._init_scale = _check_init_scale(init_scale)
        super().__init__(model, init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        loc = self._setup_loc_scale()
        # Stored unconstrained; only its strict lower triangle is used (see _scale_tril),
        # so starting from the identity it stays unit lower triangular.
        eye = torch.eye(self.latent_dim, dtype=loc.dtype, device=loc.device)
        self.scale_tril = PyroParam(eye, constraints.real)

    def _unit_tril(self):
        raw = self.scale_tril
        eye = torch.eye(raw.size(-1), dtype=raw.dtype, device=raw.device)
        return raw.tril(-1) + eye

    def _full_scale_tril(self):
        return self.scale[..., None] * self._unit_tril()

    def get_base_dist(self):
        loc = self._init_loc()
        return Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)

    def get_transform(self, *args, **kwargs):
        return _LowerCholeskyAffine(self.loc, self._full_scale_tril())

    def get_posterior(self, *args, **kwargs):
        return MultivariateNormal(self.loc, scale_tril=self._full_scale_tril(),
                                  validate_args=False)

    def _loc_scale(self, *args, **kwargs):
        return self.loc, self._full_scale_tril().pow(2).sum(-1).sqrt()


class AutoLowRankMultivariateNormal(AutoContinuous):
    """A Normal whose covariance is ``D (W W^T + I) D`` with ``W`` of shape
    ``(latent_dim, rank)`` and ``D = diag(scale)``: a cheap correlated posterior.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy.
    :param float init_scale: initial marginal scale of every coordinate.
    :param int rank: rank of ``W`` (default ``round(sqrt(latent_dim))``).
    """

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, rank=None):
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        if rank is not None and not (isinstance(rank, int) and rank > 0):
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        self._init_scale = init_scale
        self.rank = rank
        super().__init__(model, init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        loc = self._init_loc()
        if self.rank is None:
            self.rank = max(1, int(round(self.latent_dim ** 0.5)))
        self.loc = torch.nn.Parameter(loc)
        # Half the initial variance on the diagonal, half (in expectation) low rank.
        self.scale = PyroParam(torch.full_like(loc, self._init_scale * 0.5 ** 0.5),
                               constraints.softplus_positive)
        factor = torch.randn(self.latent_dim, self.rank, dtype=loc.dtype, device=loc.device)
        self.cov_factor = torch.nn.Parameter(factor / self.rank ** 0.5)

    def get_posterior(self, *args, **kwargs):
        scale = self.scale
        return LowRankMultivariateNormal(self.loc, scale.unsqueeze(-1) * self.cov_factor,
                                         scale.pow(2), validate_args=False)

    def _loc_scale(self, *args, **kwargs):
        scale = self.scale
        return self.loc, scale * (1 + self.cov_factor.pow(2).sum(-1)).sqrt()


class AutoLaplaceApproximation(AutoContinuous):
    """A point-mass guide over the packed latents (MAP in unconstrained space) whose
    :meth:`laplace_approximation` turns the fitted point into a Gaussian with the
    inverse Hessian of the negative log joint as its covariance.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy.
    """

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self.loc = torch.nn.Parameter(self._init_loc())

    def get_posterior(self, *args, **kwargs):
        return Delta(self.loc, event_dim=1)

    def _loc_scale(self, *args, **kwargs):
        return self.loc, torch.zeros_like(self.loc)

    def _neg_log_joint(self, latent, args, kwargs):
        """The negative log density of the model in unconstrained coordinates."""
        values, log_jacobian = {}, 0.0
        for (name, site, t, *_), (_, u) in zip(self._plan, self._unpack_latent(latent)):
            value = t(u)
            values[name] = value
            log_jacobian = log_jacobian + t.log_abs_det_jacobian(u, value).sum()
        with block():
            tr = trace(substitute(self.model, data=values)).get_trace(*args, **kwargs)
        return -(tr.log_prob_sum() + log_jacobian)

    def laplace_approximation(self, *args, **kwargs):
        """An :class:`AutoMultivariateNormal` centred at the current point, with
        covariance the inverse Hessian of the negative log joint there.

        :returns: the Gaussian guide (its parameters are in the param store).
        """
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        loc = self.loc.detach()
        hessian = torch.autograd.functional.hessian(
            lambda z: self._neg_log_joint(z, args, kwargs), loc
        )
        cov = torch.linalg.inv(hessian)
        cov = (cov + cov.transpose(-1, -2)) / 2
        scale_tril = torch.linalg.cholesky(cov)
        scale = scale_tril.diagonal()
        guide = AutoMultivariateNormal(self.model)
        guide._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            guide.loc.copy_(loc)
            guide.scale = scale
            guide.scale_tril = scale_tril / scale[:, None]
        return guide
