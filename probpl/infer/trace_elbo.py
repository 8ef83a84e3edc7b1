"""``Trace_ELBO``: the standard Monte Carlo ELBO with reparameterised and
score-function gradients.

For a reparameterised guide site the gradient flows through its value. For
any other site the surrogate adds ``log q(z) * stop_grad(learning signal)``,
where the learning signal keeps only the log-density terms that can depend on
the site: terms in other slices of a vectorised plate it sits in are dropped,
which keeps the estimator unbiased and lowers its variance.
"""

import math

import torch

from probpl.distributions.util import is_identically_zero
from probpl.infer.elbo import ELBO, get_importance_trace
from probpl.infer.util import scalar_backward


def _site_terms(model_trace, guide_trace):
    """``(log_prob, plate dims)`` for every term of log p - log q."""
    terms = []
    for tr, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in tr.nodes.values():
            if site["type"] != "sample" or site["infer"].get("_subsample"):
                continue
            if sign < 0 and site["is_observed"]:
                continue
            dims = frozenset(f.dim for f in site["cond_indep_stack"] if f.dim is not None)
            terms.append((sign * site["log_prob"], dims))
    return terms


def _sum_to(x, keep):
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return x
    reduce = [d for d in range(-x.dim(), 0) if d not in keep]
    return x.sum(reduce, keepdim=True) if reduce else x


def learning_signal(terms, site):
    """The detached sum of ``terms`` that may depend on ``site``."""
    keep = frozenset(f.dim for f in site["cond_indep_stack"] if f.dim is not None)
    total = 0.0
    for lp, dims in terms:
        total = total + _sum_to(lp.detach(), keep & dims)
    return total


def enumerated_guide_error(guide_trace):
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel":
            raise ValueError(
                f"guide site '{name}' is marked for parallel enumeration, which this ELBO "
                "cannot sum out; use TraceEnum_ELBO, or remove infer={'enumerate': ...}"
            )


def checked_importance_trace(graph_type, max_plate_nesting, model, guide, args, kwargs):
    """:func:`~probpl.infer.elbo.get_importance_trace`, refusing guides with sites
    marked for parallel enumeration (which these ELBOs cannot sum out)."""
    model_trace, guide_trace = get_importance_trace(
        graph_type, max_plate_nesting, model, guide, args, kwargs
    )
    enumerated_guide_error(guide_trace)
    return model_trace, guide_trace


def is_latent(site):
    """A guide or model site drawn (not observed), excluding plate subsample indices."""
    return site["type"] == "sample" and not site["is_observed"] and not site["infer"].get(
        "_subsample"
    )


class Trace_ELBO(ELBO):
    """The evidence lower bound estimated from guide samples.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer import Trace_ELBO
        >>> def model():
        ...     probpl.sample("x", dist.Normal(0., 1.))
        >>> def guide():
        ...     probpl.sample("x", dist.Normal(0., 1.))
        >>> Trace_ELBO().loss(model, guide)
        0.0
    """

    _graph_type = "flat"  # TraceGraph_ELBO needs the dependency edges: "dense"

    def _get_trace(self, model, guide, args, kwargs):
        return checked_importance_trace(
            self._graph_type, self.max_plate_nesting, model, guide, args, kwargs
        )

    def _particle(self, model_trace, guide_trace):
        """``(elbo, surrogate_elbo)`` of one trace pair."""
        loss, surrogate_loss = self._particle_losses(model_trace, guide_trace)
        if surrogate_loss is loss:
            elbo = -loss
            return elbo, elbo
        return -loss, -surrogate_loss

    def _particle_losses(self, model_trace, guide_trace):
        """``(loss, surrogate_loss)`` of one trace pair: the negative ELBO and the
        negative surrogate. For a guide made only of reparameterised sites the
        surrogate *is* the loss (one tensor, so the backward pass walks one sum)."""
        plus = []
        for site in model_trace.nodes.values():
            if site["type"] == "sample" and not site["infer"].get("_subsample"):
                plus.append(site["log_prob_sum"])
        minus = []
        surrogate_terms = None  # terms of surrogate - elbo, once a site needs them
        terms = None
        for site in guide_trace.nodes.values():
            if site["type"] != "sample" or site["is_observed"] or site["infer"].get("_subsample"):
                continue
            log_prob, score_function, entropy_term = site["score_parts"]
            minus.append(site["log_prob_sum"])
            no_score = _is_zero(score_function)
            if entropy_term is log_prob and no_score:
                continue  # reparameterised: its surrogate term equals its ELBO term
            if surrogate_terms is None:
                surrogate_terms = []
            # The surrogate keeps the entropy term in place of log q.
            surrogate_terms.append(site["log_prob_sum"])
            if not _is_zero(entropy_term):
                surrogate_terms.append(-entropy_term.sum())
            if not no_score:
                if terms is None:
                    terms = _site_terms(model_trace, guide_trace)
                signal = learning_signal(terms, site)
                surrogate_terms.append((score_function * signal).sum())
        loss = _total(minus, plus)
        if surrogate_terms is None:
            return loss, loss
        return loss, loss - _total(surrogate_terms, [])

    def _loss_and_surrogate(self, model, guide, args, kwargs):
        if type(self)._particle is Trace_ELBO._particle:
            particle_losses = self._particle_losses
        else:
            particle_losses = self._negated_particle
        if self.num_particles == 1 or self.vectorize_particles:
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                loss, surrogate_loss = particle_losses(model_trace, guide_trace)
            if not self.vectorize_particles:
                return loss, surrogate_loss, (model_trace, guide_trace)
            weight = self._particle_weight
            return loss * weight, surrogate_loss * weight, (model_trace, guide_trace)
        loss = 0.0
        surrogate_loss = 0.0
        last = None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_surrogate = particle_losses(model_trace, guide_trace)
            loss = loss + particle_loss * self._particle_weight
            surrogate_loss = surrogate_loss + particle_surrogate * self._particle_weight
            last = (model_trace, guide_trace)
        return loss, surrogate_loss, last

    def _negated_particle(self, model_trace, guide_trace):
        elbo, surrogate = self._particle(model_trace, guide_trace)
        loss = -elbo
        return loss, (loss if surrogate is elbo else -surrogate)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative ELBO as a tensor whose gradient is the surrogate's (so
        score-function sites get unbiased gradients too)."""
        with self._validation_scope(model, guide, args, kwargs):
            loss, surrogate_loss, _ = self._loss_and_surrogate(model, guide, args, kwargs)
        if isinstance(surrogate_loss, torch.Tensor) and surrogate_loss.requires_grad:
            loss = loss.detach() + (surrogate_loss - surrogate_loss.detach())
        return loss

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad(), self._validation_scope(model, guide, args, kwargs):
            loss, _, last = self._loss_and_surrogate(model, guide, args, kwargs)
        return check_finite(_to_float(loss), last)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        with self._validation_scope(model, guide, args, kwargs):
            loss, surrogate_loss, last = self._loss_and_surrogate(model, guide, args, kwargs)
        loss = check_finite(_to_float(loss), last)
        if isinstance(surrogate_loss, torch.Tensor) and surrogate_loss.requires_grad:
            scalar_backward(surrogate_loss, self.retain_graph)
        return loss


def _total(plus, minus):
    """``sum(plus) - sum(minus)`` of scalar terms, as few tensor ops as possible:
    0-dim tensors of one dtype and device are stacked once and dotted with
    their signs (two autograd nodes, whatever the number of terms)."""
    terms = plus + minus
    if len(terms) > 2:
        signs = _signs(terms, len(plus))
        if signs is not None:
            return torch.dot(torch.stack(terms), signs)
    total = plus[0] if plus else 0.0
    for t in plus[1:]:
        total = total + t
    for t in minus:
        total = total - t
    return total


def _is_zero(x):
    # Score parts hold the number 0 for absent terms: a type test first, as
    # is_identically_zero's isinstance(x, Number) is an abstract-class check.
    if x.__class__ is int or x.__class__ is float:
        return x == 0
    return not isinstance(x, torch.Tensor) and is_identically_zero(x)


# (number of terms, number of positive terms, dtype, device) -> the signs as a
# tensor. Read-only: it is only ever an operand of the dot product.
_SIGNS = {}


def _signs(terms, n_plus):
    """The sign vector for ``terms`` (``n_plus`` positive ones first), or None
    unless all are 0-dim tensors of one dtype and device."""
    first = terms[0]
    if not isinstance(first, torch.Tensor):
        return None
    dtype, device = first.dtype, first.device
    for t in terms:
        if not isinstance(t, torch.Tensor) or t.dim() or t.dtype != dtype or t.device != device:
            return None
    key = (len(terms), n_plus, dtype, device)
    signs = _SIGNS.get(key)
    if signs is None:
        values = [1.0] * n_plus + [-1.0] * (len(terms) - n_plus)
        signs = torch.tensor(values, dtype=dtype, device=device)
        # Keep only a plain tensor: not one made in inference mode (autograd
        # could not save it later) nor a tracer's fake or proxy tensor.
        if type(signs) is torch.Tensor and not signs.is_inference():
            if len(_SIGNS) > 256:
                _SIGNS.clear()
            _SIGNS[key] = signs
    return signs


def _to_float(x):
    return x.item() if isinstance(x, torch.Tensor) else float(x)


def check_finite(loss, last_traces):
    """Return ``loss`` if finite; otherwise raise naming the first bad site."""
    if math.isfinite(loss):
        return loss
    if last_traces is None:
        raise ValueError(f"loss is {loss}")
    raise_nonfinite(loss, *last_traces)


def raise_nonfinite(loss, model_trace, guide_trace):
    """Name the first site whose log-density is not finite."""
    for label, tr in (("guide", guide_trace), ("model", model_trace)):
        for name, site in tr.nodes.items():
            lp = site.get("log_prob")
            if isinstance(lp, torch.Tensor) and not bool(torch.isfinite(lp).all()):
                value = site["value"]
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else "()"
                raise ValueError(
                    f"loss is {loss}: {label} site '{name}' has a log-density that is not finite "
                    f"(value shape {shape}); check its parameters and support"
                )
    raise ValueError(f"loss is {loss}, but every site's log-density is finite")
