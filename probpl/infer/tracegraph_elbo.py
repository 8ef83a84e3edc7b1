"""``TraceGraph_ELBO``: score-function gradients that use the dependency
structure of the model and guide, plus optional baselines.

The score-function term of a non-reparameterised guide site ``z`` is weighted
by its *downstream cost*: only the log-density terms that can depend on ``z``.
Those are the guide terms of ``z`` and of every guide site after it, and the
model terms of those sites and of every model site after any of them
(dependencies follow execution order, except across iterations of a
sequential plate, which are independent; see ``Trace(graph_type="dense")``).
Terms in other slices of a vectorised plate that ``z`` sits in are dropped as
well. Leaving out terms that cannot depend on ``z`` keeps the estimator
unbiased and lowers its variance (Rao-Blackwellisation).

A baseline ``b`` is subtracted from the downstream cost as well, chosen per
site with ``infer={"baseline": {...}}``:

- ``{"use_decaying_avg_baseline": True, "baseline_beta": 0.9}``: a running
  average of past costs, kept in the param store under
  ``__baseline_avg_downstream_cost_<site>``;
- ``{"nn_baseline": module, "nn_baseline_input": x}``: a learned function of
  ``x`` (register the module's parameters, e.g. with ``probpl.module``), trained
  by adding ``(cost - b)^2`` to the loss;
- ``{"baseline_value": tensor}``: any differentiable tensor, trained the same way.

References:

1. Schulman, Heess, Weber, Abbeel. *Gradient Estimation Using Stochastic
   Computation Graphs* (2015).
2. Mnih, Gregor. *Neural Variational Inference and Learning in Belief Networks* (2014).
"""

import torch

from probpl.distributions.util import is_identically_zero
from probpl.infer.trace_elbo import Trace_ELBO, _sum_to, is_latent
from probpl.params import _PYRO_PARAM_STORE

_BASELINE_KEYS = {
    "use_decaying_avg_baseline", "baseline_beta", "nn_baseline", "nn_baseline_input",
    "baseline_value",
}


def _plate_dims(site):
    return frozenset(f.dim for f in site["cond_indep_stack"] if f.dim is not None)


def _is_cost(site):
    return site["type"] == "sample" and not site["infer"].get("_subsample")


def downstream_costs(model_trace, guide_trace, site_name):
    """The detached log-density terms that may depend on guide site ``site_name``,
    summed to that site's vectorised plate dims."""
    guide_nodes = {site_name} | set(guide_trace.successors(site_name))
    model_nodes = set()
    for n in guide_nodes:
        if n in model_trace.nodes:
            model_nodes.add(n)
            model_nodes.update(model_trace.successors(n))
    keep = _plate_dims(guide_trace.nodes[site_name])
    cost = 0.0
    for n in model_nodes:
        site = model_trace.nodes[n]
        if _is_cost(site):
            cost = cost + _sum_to(site["log_prob"].detach(), keep & _plate_dims(site))
    for n in guide_nodes:
        site = guide_trace.nodes[n]
        if _is_cost(site) and not site["is_observed"]:
            cost = cost - _sum_to(site["log_prob"].detach(), keep & _plate_dims(site))
    return cost


def _baseline(name, site, cost):
    """``(baseline, baseline_loss)`` for guide site ``name`` given its cost."""
    options = dict(site["infer"].get("baseline", {}))
    unknown = set(options) - _BASELINE_KEYS
    if unknown:
        raise ValueError(
            f"guide site '{name}': unknown baseline options {sorted(unknown)}; expected some of "
            f"{sorted(_BASELINE_KEYS)}"
        )
    nn_baseline = options.get("nn_baseline")
    value = options.get("baseline_value")
    if nn_baseline is not None and value is not None:
        raise ValueError(f"guide site '{name}': give nn_baseline or baseline_value, not both")
    cost = torch.as_tensor(cost, dtype=site["value"].dtype, device=site["value"].device) \
        if not isinstance(cost, torch.Tensor) else cost
    baseline = 0.0
    loss = 0.0
    if options.get("use_decaying_avg_baseline", False):
        beta = options.get("baseline_beta", 0.9)
        key = "__baseline_avg_downstream_cost_" + name
        old = (
            _PYRO_PARAM_STORE[key].detach()
            if key in _PYRO_PARAM_STORE
            else torch.zeros_like(cost)
        )
        if old.shape != cost.shape:
            old = torch.zeros_like(cost)
        _PYRO_PARAM_STORE[key] = beta * old + (1 - beta) * cost
        baseline = baseline + old
    learned = None
    if nn_baseline is not None:
        x = options.get("nn_baseline_input")
        learned = nn_baseline(x.detach() if isinstance(x, torch.Tensor) else x)
    elif value is not None:
        learned = value
    if learned is not None:
        baseline = baseline + learned
        loss = (cost - learned).pow(2).sum()
    if isinstance(baseline, torch.Tensor) and baseline.shape != cost.shape:
        try:
            baseline = baseline.expand(cost.shape)
        except RuntimeError:
            raise ValueError(
                f"guide site '{name}': baseline of shape {tuple(baseline.shape)} does not match "
                f"its downstream cost of shape {tuple(cost.shape)}"
            ) from None
    return baseline, loss


class TraceGraph_ELBO(Trace_ELBO):
    """An ELBO whose score-function terms use only downstream costs, with
    optional baselines (see the module description).

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
        >>> def model():
        ...     probpl.sample("z", dist.Bernoulli(0.5))
        >>> def guide():
        ...     p = probpl.param("p", torch.tensor(0.5))
        ...     probpl.sample("z", dist.Bernoulli(p),
        ...                   infer={"baseline": {"use_decaying_avg_baseline": True}})
        >>> TraceGraph_ELBO().loss(model, guide)
        0.0
    """

    _graph_type = "dense"

    def _particle(self, model_trace, guide_trace):
        elbo = 0.0
        for site in model_trace.nodes.values():
            if _is_cost(site):
                elbo = elbo + site["log_prob_sum"]
        surrogate = elbo
        baseline_loss = 0.0
        for name, site in guide_trace.nodes.items():
            if not is_latent(site):
                continue
            _, score_function, entropy_term = site["score_parts"]
            elbo = elbo - site["log_prob_sum"]
            if not is_identically_zero(entropy_term):
                surrogate = surrogate - entropy_term.sum()
            if is_identically_zero(score_function):
                continue
            cost = downstream_costs(model_trace, guide_trace, name)
            if "baseline" in site["infer"]:
                baseline, loss = _baseline(name, site, cost)
                cost = cost - baseline.detach() if isinstance(baseline, torch.Tensor) \
                    else cost - baseline
                baseline_loss = baseline_loss + loss
            surrogate = surrogate + (score_function * cost).sum()
        # The baseline loss trains the baselines; it is a loss, so it enters the
        # surrogate *elbo* with a minus sign.
        return elbo, surrogate - baseline_loss
