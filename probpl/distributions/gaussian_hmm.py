"""``GaussianHMM``: a linear-Gaussian state space model whose hidden states are
marginalised exactly by the Kalman filter.

``log_prob`` is the exact marginal likelihood of an observation sequence,
accumulated one step at a time from the filter's one-step-ahead predictive
densities; ``filter`` returns the posterior of the last hidden state and
``rsample`` simulates the model forward.

References: Kalman, "A new approach to linear filtering and prediction
problems" (1960); Särkkä, "Bayesian Filtering and Smoothing" (2013), ch. 4.
"""

import math

import torch

from . import constraints
from .torch import MultivariateNormal
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


def _gaussian_parts(d, name):
    """``(loc, scale_tril)`` of a ``MultivariateNormal`` or an ``Independent``
    ``Normal`` with one reinterpreted dim, both spanning its batch shape."""
    if isinstance(d, torch.distributions.MultivariateNormal):
        shape = d.batch_shape + d.event_shape
        return d.loc.expand(shape), d.scale_tril.expand(shape + d.event_shape)
    if (isinstance(d, torch.distributions.Independent)
            and isinstance(d.base_dist, torch.distributions.Normal)
            and d.reinterpreted_batch_ndims == 1):
        shape = d.batch_shape + d.event_shape
        return d.base_dist.loc.expand(shape), torch.diag_embed(d.base_dist.scale.expand(shape))
    raise ValueError(
        f"GaussianHMM: {name} must be a MultivariateNormal or Normal(...).to_event(1), "
        f"got {type(d).__name__}"
    )


def _at_time(x, t, event_dims):
    """Step ``t`` of a parameter whose rightmost batch dim (if any) is time;
    a missing or size-1 time dim means the parameter is the same at every step."""
    if x.dim() <= event_dims:
        return x
    time_dim = x.dim() - event_dims - 1
    return x.select(time_dim, 0 if x.size(time_dim) == 1 else t)


def _vecmat(v, m):
    return (v.unsqueeze(-2) @ m).squeeze(-2)


class GaussianHMM(TorchDistribution):
    """A hidden Markov model with linear-Gaussian dynamics and observations.

    The generative story, in row-vector convention::

        z = initial_dist.sample()
        for t in range(num_steps):
            z = z @ transition_matrix[t] + transition_dist[t].sample()
            x[t] = z @ observation_matrix[t] + observation_dist[t].sample()

    so the initial state is never observed directly.  The rightmost batch dim of
    each ``transition_*`` and ``observation_*`` argument is time; a missing or
    size-1 time dim makes that part time-homogeneous.  If every part is, the
    event shape is ``(1, obs_dim)`` and ``log_prob`` accepts sequences of any
    length (pass ``duration`` to sample them).

    :param initial_dist: the prior of the initial hidden state: a
        ``MultivariateNormal`` or ``Normal(...).to_event(1)`` with event shape
        ``(hidden_dim,)`` and batch shape broadcastable to ``batch_shape``.
    :param torch.Tensor transition_matrix: shape broadcastable to ``batch_shape +
        (num_steps, hidden_dim, hidden_dim)``, rightmost dims ordered ``(old, new)``.
    :param transition_dist: process noise, event shape ``(hidden_dim,)``, batch
        shape broadcastable to ``batch_shape + (num_steps,)``; its mean is added.
    :param torch.Tensor observation_matrix: shape broadcastable to ``batch_shape +
        (num_steps, hidden_dim, obs_dim)``.
    :param observation_dist: observation noise, event shape ``(obs_dim,)``,
        batch shape broadcastable to ``batch_shape + (num_steps,)``.
    :param int duration: the number of steps, needed only to sample a
        time-homogeneous model.

    Example::

        >>> import torch
        >>> import probpl.distributions as dist
        >>> hmm = dist.GaussianHMM(
        ...     dist.Normal(torch.zeros(2), 1.0).to_event(1), 0.9 * torch.eye(2),
        ...     dist.Normal(torch.zeros(2), 0.1).to_event(1), torch.ones(2, 1),
        ...     dist.Normal(torch.zeros(1), 0.5).to_event(1))
        >>> hmm.event_shape  # homogeneous: scores sequences of any length
        torch.Size([1, 1])
        >>> hmm.log_prob(torch.zeros(7, 1)).shape
        torch.Size([])
        >>> hmm5 = dist.GaussianHMM(hmm.initial_dist, hmm.transition_matrix,
        ...                         hmm.transition_dist, hmm.observation_matrix,
        ...                         hmm.observation_dist, duration=5)
        >>> hmm5.sample((3,)).shape
        torch.Size([3, 5, 1])
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, initial_dist, transition_matrix, transition_dist, observation_matrix,
                 observation_dist, validate_args=None, duration=None):
        if not torch.is_tensor(transition_matrix) or not torch.is_tensor(observation_matrix):
            raise ValueError("GaussianHMM: transition_matrix and observation_matrix must be "
                             "tensors")
        if observation_matrix.dim() < 2 or transition_matrix.dim() < 2:
            raise ValueError(
                "GaussianHMM: matrices need two rightmost dims, got transition_matrix "
                f"{tuple(transition_matrix.shape)}, observation_matrix "
                f"{tuple(observation_matrix.shape)}"
            )
        hidden_dim, obs_dim = observation_matrix.shape[-2:]
        self._init_loc, self._init_tril = _gaussian_parts(initial_dist, "initial_dist")
        self._trans_loc, self._trans_tril = _gaussian_parts(transition_dist, "transition_dist")
        self._obs_loc, self._obs_tril = _gaussian_parts(observation_dist, "observation_dist")
        for name, actual, expected in [
            ("initial_dist.event_shape", tuple(initial_dist.event_shape), (hidden_dim,)),
            ("transition_matrix.shape[-2:]", tuple(transition_matrix.shape[-2:]),
             (hidden_dim, hidden_dim)),
            ("transition_dist.event_shape", tuple(transition_dist.event_shape), (hidden_dim,)),
            ("observation_dist.event_shape", tuple(observation_dist.event_shape), (obs_dim,)),
        ]:
            if actual != expected:
                raise ValueError(
                    f"GaussianHMM: {name} is {actual}, expected {expected} (hidden_dim="
                    f"{hidden_dim}, obs_dim={obs_dim} from observation_matrix "
                    f"{tuple(observation_matrix.shape)})"
                )
        try:
            shape = broadcast_shape(
                tuple(initial_dist.batch_shape) + (1,), transition_matrix.shape[:-2],
                transition_dist.batch_shape, observation_matrix.shape[:-2],
                observation_dist.batch_shape)
        except ValueError:
            raise ValueError(
                "GaussianHMM: batch shapes do not broadcast to batch_shape + (num_steps,): "
                f"initial_dist {tuple(initial_dist.batch_shape)} (+ time), transition_matrix "
                f"{tuple(transition_matrix.shape[:-2])}, transition_dist "
                f"{tuple(transition_dist.batch_shape)}, observation_matrix "
                f"{tuple(observation_matrix.shape[:-2])}, observation_dist "
                f"{tuple(observation_dist.batch_shape)}"
            ) from None
        batch_shape, num_steps = torch.Size(shape[:-1]), shape[-1]
        if duration is None:
            duration = None if num_steps == 1 else num_steps
        elif num_steps not in (1, duration):
            raise ValueError(f"GaussianHMM: duration={duration} but the parameters have "
                             f"{num_steps} time steps")
        self._duration = duration
        self.hidden_dim, self.obs_dim = hidden_dim, obs_dim
        self.initial_dist = initial_dist
        self.transition_matrix = transition_matrix
        self.transition_dist = transition_dist
        self.observation_matrix = observation_matrix
        self.observation_dist = observation_dist
        event_shape = torch.Size((duration or 1, obs_dim))
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def duration(self):
        """The number of time steps, or None for a homogeneous model of any length."""
        return self._duration

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GaussianHMM, _instance)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in ("_batch_shape", "_validate_args")})
        batch_shape = torch.Size(broadcast_shape(self.batch_shape, batch_shape))
        super(GaussianHMM, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _validate_sample(self, value):
        if self.duration is not None or value.dim() < 2:
            return super()._validate_sample(value)
        # A homogeneous model scores sequences of any length.
        old = self._event_shape
        try:
            self._event_shape = torch.Size((value.size(-2), self.obs_dim))
            super()._validate_sample(value)
        finally:
            self._event_shape = old

    def _kalman_filter(self, value):
        """Run the filter over ``value``; return the log marginal likelihood and
        the mean and covariance of the last hidden state given all of ``value``."""
        num_steps = value.size(-2)
        if self.duration is not None and num_steps != self.duration:
            raise ValueError(f"GaussianHMM: value has {num_steps} time steps, expected "
                             f"{self.duration} (value shape {tuple(value.shape)})")
        loc = self._init_loc
        cov = self._init_tril @ self._init_tril.mT
        log_prob = value.new_zeros(())
        for t in range(num_steps):
            trans = _at_time(self.transition_matrix, t, 2)
            obs = _at_time(self.observation_matrix, t, 2)
            trans_tril = _at_time(self._trans_tril, t, 2)
            obs_tril = _at_time(self._obs_tril, t, 2)
            # Predict the hidden state, then the observation.
            loc = _vecmat(loc, trans) + _at_time(self._trans_loc, t, 1)
            cov = trans.mT @ cov @ trans + trans_tril @ trans_tril.mT
            cov_obs = cov @ obs  # Cov(z, x) (hidden_dim, obs_dim)
            pred_tril = torch.linalg.cholesky(obs.mT @ cov_obs + obs_tril @ obs_tril.mT)
            resid = value[..., t, :] - _vecmat(loc, obs) - _at_time(self._obs_loc, t, 1)
            white = torch.linalg.solve_triangular(pred_tril, resid.unsqueeze(-1),
                                                  upper=False).squeeze(-1)
            log_prob = log_prob - 0.5 * white.pow(2).sum(-1) - pred_tril.diagonal(
                dim1=-2, dim2=-1).log().sum(-1) - 0.5 * self.obs_dim * math.log(2 * math.pi)
            # Update: with S = L L^T, the gain term is (L^-1 Cov(x, z))^T L^-1 resid.
            gain = torch.linalg.solve_triangular(pred_tril, cov_obs.mT, upper=False)
            loc = loc + _vecmat(white, gain)
            cov = cov - gain.mT @ gain
            cov = 0.5 * (cov + cov.mT)
        return log_prob, loc, cov

    def log_prob(self, value):
        """The exact marginal log likelihood of an observation sequence.

        :param torch.Tensor value: shape ``sample_shape + batch_shape + (T, obs_dim)``.
        :returns: shape ``sample_shape + batch_shape``.
        """
        if self._validate_args:
            self._validate_sample(value)
        log_prob = self._kalman_filter(value)[0]
        return log_prob.expand(broadcast_shape(log_prob.shape, self.batch_shape))

    def filter(self, value):
        """The posterior of the last hidden state given a sequence of observations.

        :param torch.Tensor value: observations, ``sample_shape + batch_shape +
            (T, obs_dim)``.
        :returns: a :class:`~probpl.distributions.MultivariateNormal`, usable as
            the ``initial_dist`` of a model that continues the sequence.
        """
        if self._validate_args:
            self._validate_sample(value)
        _, loc, cov = self._kalman_filter(value)
        shape = broadcast_shape(loc.shape[:-1], cov.shape[:-2], self.batch_shape)
        return MultivariateNormal(loc.expand(shape + (self.hidden_dim,)),
                                  covariance_matrix=cov.expand(shape + 2 * (self.hidden_dim,)))

    def rsample(self, sample_shape=torch.Size()):
        if self.duration is None:
            raise ValueError("GaussianHMM: this model is time-homogeneous; pass duration= to "
                             "sample from it")
        shape = torch.Size(sample_shape) + self.batch_shape
        eps = self._init_loc.new_empty(shape + (self.hidden_dim,)).normal_()
        z = self._init_loc + _vecmat(eps, self._init_tril.mT)
        xs = []
        for t in range(self.duration):
            eps = torch.randn_like(z)
            z = (_vecmat(z, _at_time(self.transition_matrix, t, 2))
                 + _at_time(self._trans_loc, t, 1)
                 + _vecmat(eps, _at_time(self._trans_tril, t, 2).mT))
            mean = _vecmat(z, _at_time(self.observation_matrix, t, 2))
            eps = mean.new_empty(mean.shape).normal_()
            xs.append(mean + _at_time(self._obs_loc, t, 1)
                      + _vecmat(eps, _at_time(self._obs_tril, t, 2).mT))
        return torch.stack(xs, dim=-2)
