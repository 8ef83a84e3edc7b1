"""``Importance``: self-normalised importance sampling with a guide as proposal,
and ``EmpiricalMarginal`` over its weighted draws.

Each draw runs the guide (or the prior, without a guide) and scores the model
at the drawn values: ``log w = log p(x, z) - log q(z)``. The mean of the
weights estimates the evidence ``p(x)``; the effective sample size
``(sum w)^2 / sum w^2`` says how many equally weighted draws they are worth.
"""

import math

import torch

from probpl.distributions.empirical import Empirical
from probpl.poutine.handlers import replay, trace


class Importance:
    """Importance sampling from ``guide`` (the prior when None).

    :param model: the model.
    :param guide: the proposal; ``None`` proposes from the model's prior.
    :param int num_samples: number of draws.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.importance import Importance
        >>> def model():
        ...     z = probpl.sample("z", dist.Normal(0., 1.))
        ...     probpl.sample("x", dist.Normal(z, 1.), obs=torch.tensor(0.))
        >>> posterior = Importance(model, num_samples=1000).run()
        >>> round(posterior.log_evidence(), 1)  # log N(0 | 0, 2)
        -1.3
    """

    def __init__(self, model, guide=None, num_samples=None):
        if num_samples is None or num_samples < 1:
            raise ValueError(f"Importance needs num_samples >= 1, got {num_samples}")
        self.model = model
        self.guide = guide
        self.num_samples = num_samples
        self.exec_traces = []
        self.log_weights = []

    def _draw(self, args, kwargs):
        if self.guide is None:
            model_trace = trace(self.model).get_trace(*args, **kwargs)
            return model_trace, model_trace.log_prob_sum(lambda n, s: s["is_observed"])
        guide_trace = trace(self.guide).get_trace(*args, **kwargs)
        model_trace = trace(replay(self.model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, model_trace.log_prob_sum() - guide_trace.log_prob_sum()

    def run(self, *args, **kwargs):
        """Draw ``num_samples`` weighted traces; returns ``self``."""
        self.exec_traces, weights = [], []
        with torch.no_grad():
            for _ in range(self.num_samples):
                tr, log_w = self._draw(args, kwargs)
                self.exec_traces.append(tr)
                weights.append(torch.as_tensor(log_w).detach())
        self.log_weights = torch.stack(weights)
        return self

    def _check_run(self):
        if not self.exec_traces:
            raise RuntimeError("Importance: call run(*args) first")

    def get_log_normalizer(self):
        """The log of the mean importance weight: an estimate of ``log p(x)``."""
        self._check_run()
        return torch.logsumexp(self.log_weights, 0) - math.log(self.log_weights.numel())

    def log_evidence(self):
        """``get_log_normalizer()`` as a float."""
        return self.get_log_normalizer().item()

    def get_normalized_weights(self, log_scale=False):
        """Weights that sum to one (their logs with ``log_scale``)."""
        self._check_run()
        log_w = self.log_weights - torch.logsumexp(self.log_weights, 0)
        return log_w if log_scale else log_w.exp()

    def get_ESS(self):
        """The effective sample size ``1 / sum(normalised weight^2)``."""
        w = self.get_normalized_weights()
        return 1.0 / (w * w).sum()

    ess = get_ESS


def EmpiricalMarginal(trace_posterior, sites=None, validate_args=None):
    """The weighted empirical distribution of site values (a single site name, a
    list of names stacked along a new last dim, or the model's return value
    when ``sites`` is None) over the draws of ``trace_posterior``."""
    trace_posterior._check_run()
    sites = "_RETURN" if sites is None else sites
    names = [sites] if isinstance(sites, str) else list(sites)
    rows = []
    for tr in trace_posterior.exec_traces:
        missing = [n for n in names if n not in tr.nodes]
        if missing:
            raise ValueError(f"EmpiricalMarginal: sites {missing} are not in the traces")
        values = [torch.as_tensor(tr.nodes[n]["value"]) for n in names]
        rows.append(values[0] if isinstance(sites, str) else torch.stack(values, -1))
    return Empirical(torch.stack(rows), trace_posterior.log_weights,
                     validate_args=validate_args)
