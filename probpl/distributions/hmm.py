"""``DiscreteHMM``: a hidden Markov model with discrete states and the forward
algorithm as ``log_prob``.

States are summed out by a parallel-scan product of log-space matrices, so the
sequential depth is ``log2(num_steps)`` rather than ``num_steps``.
"""

import torch

from . import constraints
from .torch import Categorical
from .torch_distribution import TorchDistribution
from .util import broadcast_shape


def logmatmulexp(x, y):
    """``log(exp(x) @ exp(y))`` computed stably through a matrix product.

    :param torch.Tensor x: shape ``(..., a, b)``.
    :param torch.Tensor y: shape ``(..., b, c)``.
    :returns: shape ``(..., a, c)``.
    """
    x_max = x.detach().amax(-1, keepdim=True)
    y_max = y.detach().amax(-2, keepdim=True)
    # Rows or columns that are entirely -inf would turn into NaN after shifting.
    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))
    y_max = torch.where(torch.isfinite(y_max), y_max, torch.zeros_like(y_max))
    prod = (x - x_max).exp() @ (y - y_max).exp()
    return prod.log() + x_max + y_max


def sequential_logmatmulexp(logits):
    """Multiply a time series of log-space square matrices: ``logits[..., 0, :, :]
    @ logits[..., 1, :, :] @ ...``, by a pairwise tree reduction.

    :param torch.Tensor logits: shape ``(..., T, S, S)``.
    :returns: shape ``(..., S, S)``.
    """
    while logits.shape[-3] > 1:
        time = logits.shape[-3]
        even = time - time % 2
        paired = logmatmulexp(logits[..., 0:even:2, :, :], logits[..., 1:even:2, :, :])
        if time > even:
            paired = torch.cat([paired, logits[..., even:, :, :]], dim=-3)
        logits = paired
    return logits.squeeze(-3)


class DiscreteHMM(TorchDistribution):
    """A hidden Markov model with discrete latent states, marginalised exactly.

    The generative story: ``z_0 ~ Categorical(logits=initial_logits)``, then
    for each step ``t = 0..T-1``: ``z_{t+1} ~ Categorical(logits=
    transition_logits[t, z_t])`` and ``x_t ~ observation_dist[t, z_{t+1}]``.

    :param torch.Tensor initial_logits: shape ``batch_shape + (S,)``.
    :param torch.Tensor transition_logits: broadcastable to ``batch_shape +
        (T, S, S)``; the last dim indexes the destination state.
    :param observation_dist: a distribution with batch shape broadcastable to
        ``batch_shape + (T, S)``.
    :returns: a distribution with event shape ``(T,) + observation event shape``.
    """

    arg_constraints = {
        "initial_logits": constraints.real_vector,
        "transition_logits": constraints.independent(constraints.real, 2),
    }

    def __init__(self, initial_logits, transition_logits, observation_dist, validate_args=None,
                 duration=None):
        if initial_logits.dim() < 1:
            raise ValueError(
                f"DiscreteHMM: initial_logits must have shape (..., S), got {initial_logits.shape}"
            )
        if transition_logits.dim() < 2 or transition_logits.shape[-1] != transition_logits.shape[
            -2
        ]:
            raise ValueError(
                "DiscreteHMM: transition_logits must have shape (..., S, S), got "
                f"{tuple(transition_logits.shape)}"
            )
        if len(observation_dist.batch_shape) < 1:
            raise ValueError(
                "DiscreteHMM: observation_dist.batch_shape must end in the state dim S, got "
                f"{tuple(observation_dist.batch_shape)}"
            )
        num_states = initial_logits.shape[-1]
        for name, size in [
            ("transition_logits", transition_logits.shape[-1]),
            ("observation_dist.batch_shape", observation_dist.batch_shape[-1]),
        ]:
            if size != num_states:
                raise ValueError(
                    f"DiscreteHMM: {name} has {size} states but initial_logits has {num_states}"
                )
        try:
            shape = broadcast_shape(
                initial_logits.shape[:-1] + (1,),
                transition_logits.shape[:-2],
                observation_dist.batch_shape[:-1],
            )
        except ValueError:
            raise ValueError(
                "DiscreteHMM: shapes do not broadcast: initial_logits "
                f"{tuple(initial_logits.shape)}, transition_logits "
                f"{tuple(transition_logits.shape)}, observation_dist.batch_shape "
                f"{tuple(observation_dist.batch_shape)}"
            ) from None
        batch_shape, time_shape = torch.Size(shape[:-1]), torch.Size(shape[-1:])
        if duration is not None:
            # A time-homogeneous model (time dim of size 1) scores sequences of this length.
            if time_shape[0] not in (1, duration):
                raise ValueError(
                    f"DiscreteHMM: duration={duration} but the parameters have {time_shape[0]} "
                    "time steps"
                )
            time_shape = torch.Size((duration,))
        event_shape = time_shape + observation_dist.event_shape
        self.initial_logits = initial_logits - initial_logits.logsumexp(-1, keepdim=True)
        self.transition_logits = transition_logits - transition_logits.logsumexp(-1, keepdim=True)
        self.observation_dist = observation_dist
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(self.observation_dist.support, 1)

    @property
    def duration(self):
        return self.event_shape[0]

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(DiscreteHMM, _instance)
        num_states = self.initial_logits.shape[-1]
        new.initial_logits = self.initial_logits.expand(batch_shape + (num_states,))
        new.transition_logits = self.transition_logits.expand(
            batch_shape + self.transition_logits.shape[-3:]
            if self.transition_logits.dim() >= 3
            else batch_shape + (1,) + self.transition_logits.shape
        )
        obs_batch = self.observation_dist.batch_shape
        new.observation_dist = self.observation_dist.expand(
            batch_shape + obs_batch[-2:] if len(obs_batch) >= 2 else batch_shape + (1,) + obs_batch
        )
        super(DiscreteHMM, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _step_logits(self, value):
        # Add a state dim so every observation is scored under every state.
        obs_event_dim = self.observation_dist.event_dim
        value = value.unsqueeze(-1 - obs_event_dim)
        obs_logp = self.observation_dist.log_prob(value)  # (..., T, S)
        return self.transition_logits + obs_logp.unsqueeze(-2)  # (..., T, S, S)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        joint = sequential_logmatmulexp(self._step_logits(value))
        return (self.initial_logits + joint.logsumexp(-1)).logsumexp(-1)

    def filter(self, value):
        """The posterior over the final hidden state given observations ``value``.

        :param torch.Tensor value: observations, shape ``sample_shape + batch_shape
            + event_shape``.
        :returns: a :class:`~probpl.distributions.Categorical` over the last state.
        """
        joint = sequential_logmatmulexp(self._step_logits(value))
        logits = (self.initial_logits.unsqueeze(-1) + joint).logsumexp(-2)
        return Categorical(logits=logits - logits.logsumexp(-1, keepdim=True))

    def sample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        num_steps = self.event_shape[0]
        trans = self.transition_logits.expand(
            self.batch_shape + (num_steps,) + self.transition_logits.shape[-2:]
        )
        state = Categorical(logits=self.initial_logits).sample(sample_shape)
        states = []
        for t in range(num_steps):
            logits_t = trans[..., t, :, :]
            rows = logits_t.expand(sample_shape + logits_t.shape)
            rows = rows.gather(-2, state[..., None, None].expand(state.shape + (1, rows.size(-1))))
            state = Categorical(logits=rows.squeeze(-2)).sample()
            states.append(state)
        states = torch.stack(states, dim=-1)  # sample_shape + batch_shape + (T,)
        obs = self.observation_dist.expand(
            self.batch_shape + (num_steps, self.initial_logits.shape[-1])
        ).sample(sample_shape)
        index = states.reshape(states.shape + (1,) * (1 + self.observation_dist.event_dim))
        index = index.expand(states.shape + (1,) + self.observation_dist.event_shape)
        return obs.gather(states.dim(), index).squeeze(states.dim())
