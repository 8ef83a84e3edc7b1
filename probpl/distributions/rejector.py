"""``Rejector``: a distribution defined by rejection sampling from a proposal."""

import torch

from .score_parts import ScoreParts
from .torch_distribution import TorchDistribution


class Rejector(TorchDistribution):
    """The density ``propose(x) * accept(x) / exp(log_scale)``, sampled by
    proposing from ``propose`` and accepting with probability
    ``exp(log_prob_accept(x))``.

    :param propose: a proposal distribution (called to draw a batch of proposals).
    :param callable log_prob_accept: log acceptance probability of a proposal, ``<= 0``.
    :param log_scale: the log total acceptance probability (the normaliser).
    :param batch_shape: the batch shape (defaults to the proposal's).
    :param event_shape: the event shape (defaults to the proposal's).
    """

    arg_constraints = {}

    def __init__(self, propose, log_prob_accept, log_scale, *, batch_shape=None,
                 event_shape=None):
        self.propose = propose
        self.log_prob_accept = log_prob_accept
        self.log_scale = log_scale
        batch_shape = propose.batch_shape if batch_shape is None else torch.Size(batch_shape)
        event_shape = propose.event_shape if event_shape is None else torch.Size(event_shape)
        super().__init__(batch_shape, event_shape, validate_args=False)

    @property
    def support(self):
        return self.propose.support

    @property
    def has_rsample(self):
        return self.propose.has_rsample

    def _draw(self, sample_shape, draw):
        shape = self.shape(sample_shape)
        batch = shape[: len(shape) - self.event_dim]
        x = draw(sample_shape)
        done = torch.zeros(batch, dtype=torch.bool, device=x.device)
        out = torch.zeros_like(x)
        mask_view = (Ellipsis,) + (None,) * self.event_dim
        while not done.all():
            u = torch.rand(batch, dtype=x.dtype, device=x.device)
            accept = (u.log() < self.log_prob_accept(x)) & ~done
            out = torch.where(accept[mask_view], x, out)
            done = done | accept
            if not done.all():
                x = draw(sample_shape)
        return out

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape), self.propose.sample)

    def rsample(self, sample_shape=torch.Size()):
        return self._draw(torch.Size(sample_shape), self.propose.rsample)

    def log_prob(self, value):
        return self.propose.log_prob(value) + self.log_prob_accept(value) - self.log_scale

    def score_parts(self, value):
        # A reparameterised proposal still carries a score term through the
        # acceptance step, whose gradient the path derivative misses.
        log_prob = self.log_prob(value)
        if not self.has_rsample:
            return ScoreParts(log_prob, log_prob, 0)
        return ScoreParts(log_prob, self.log_prob_accept(value), log_prob)
