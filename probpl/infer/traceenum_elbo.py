"""``TraceEnum_ELBO``: an ELBO that sums out enumerated discrete sites exactly.

The guide runs under :class:`~probpl.poutine.enum_messenger.EnumMessenger`,
then the model is replayed against it under a second one whose dims start left
of the guide's.  Model sites marked for enumeration are summed out of the
model's log-densities by a plated sum-product contraction
(:mod:`probpl.ops.contract`); what remains is an expectation under the guide.
Guide sites marked for enumeration are averaged exactly, weighted by their
probabilities; other non-reparameterised guide sites contribute score-function
gradients through DiCE factors ``exp(log q - stop_grad(log q))`` attached to
the costs in their plates.  With neither (a reparameterised or empty guide)
the objective is a plain sum and the contraction is the whole cost.

References

1. Obermeyer et al. (2019), "Tensor Variable Elimination for Plated Factor Graphs".
2. Foerster et al. (2018), "DiCE: The Infinitely Differentiable Monte Carlo Estimator".
"""

import math
from collections import OrderedDict

import torch

import probpl.util as util
from probpl.infer.elbo import ELBO, PARTICLE_PLATE, check_model_guide_match
from probpl.infer.enum import (
    Symbols,
    _full_sum,
    compute_log_probs,
    trace_factors,
)
from probpl.infer.enum_sequential import is_sequential, sequential_assignments
from probpl.ops.contract import Factor, contract_tensor_tree, contract_to_tensor
from probpl.poutine.enum_messenger import EnumMessenger
from probpl.poutine.handlers import block, replay, trace


def _align(factor, target, sizes):
    """View ``factor`` in the dim order ``target`` (missing dims size 1)."""
    tensor, dims = factor.tensor, factor.dims
    perm = [dims.index(d) for d in target if d in dims]
    if perm != list(range(len(perm))):
        tensor = tensor.permute(perm)
    shape = [sizes[d] if d in dims else 1 for d in target]
    return tensor.reshape(shape)


class TraceEnum_ELBO(ELBO):
    """ELBO with exact enumeration of discrete sites in model and guide.

    Mark sites with ``infer={"enumerate": "parallel"}`` (or wrap the model or
    guide in :func:`~probpl.infer.config_enumerate`).  Enumeration dims start
    at ``-1 - max_plate_nesting``, so ``max_plate_nesting`` must cover every
    plate in model and guide.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.enum import config_enumerate
        >>> @config_enumerate
        ... def model(data):
        ...     with probpl.plate("data", len(data)):
        ...         z = probpl.sample("z", dist.Bernoulli(0.5))
        ...         probpl.sample("x", dist.Normal(z * 2.0, 1.0), obs=data)
        >>> elbo = TraceEnum_ELBO(max_plate_nesting=1)
        >>> loss = elbo.loss(model, lambda data: None, torch.zeros(3))
    """

    def _first_available_dim(self):
        first = -1 - self.max_plate_nesting
        if self.vectorize_particles and self.num_particles > 1:
            first -= 1
        return first

    def _get_trace(self, model, guide, args, kwargs):
        if self.max_plate_nesting == math.inf:
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        first = self._first_available_dim()
        guide_enum = EnumMessenger(first_available_dim=first)
        with guide_enum:
            guide_trace = trace(guide).get_trace(*args, **kwargs)
        model_enum = EnumMessenger(first_available_dim=first)
        with model_enum:
            model_enum.adopt(guide_enum)
            # Replaying a guide without sites (only its input and return nodes)
            # would change nothing: skip that handler's per-site cost.
            if len(guide_trace.nodes) > 2 or any(
                site["type"] not in ("args", "return") for site in guide_trace.nodes.values()
            ):
                model = replay(model, trace=guide_trace)
            model_trace = trace(model).get_trace(*args, **kwargs)
        if util._VALIDATION_ENABLED:
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        compute_log_probs(model_trace)
        compute_log_probs(guide_trace)
        if util._VALIDATION_ENABLED:
            self._check_plates(model_trace, guide_trace)
        return model_trace, guide_trace

    def _get_traces(self, model, guide, args, kwargs):
        """Yield trace pairs, one per particle, or, when the guide marks sites
        ``infer={"enumerate": "sequential"}``, one per assignment of those sites
        (each then counts with its guide probability, see :meth:`_particle`)."""
        for pair in super()._get_traces(model, guide, args, kwargs):
            if not any(is_sequential(site) for site in pair[1].nodes.values()):
                yield pair
                continue
            if self.vectorize_particles and self.num_particles > 1:
                raise ValueError(
                    "sequential enumeration of guide sites needs vectorize_particles=False "
                    "(each particle re-runs the guide once per assignment)"
                )
            for fixed in sequential_assignments(guide, args, kwargs):
                yield self._get_trace(model, replay(guide, trace=fixed), args, kwargs)

    def _check_plates(self, model_trace, guide_trace):
        for name, site in model_trace.nodes.items():
            if is_sequential(site) and name not in guide_trace.nodes:
                raise ValueError(
                    f"model site '{name}' is marked infer={{'enumerate': 'sequential'}}; "
                    "TraceEnum_ELBO sums model sites out in parallel only: mark it "
                    "infer={'enumerate': 'parallel'}, or enumerate it sequentially in the guide"
                )
        for label, tr in (("guide", guide_trace), ("model", model_trace)):
            for name, site in tr.nodes.items():
                if site["type"] != "sample":
                    continue
                for f in site["cond_indep_stack"]:
                    if f.dim is not None and -f.dim > self.max_plate_nesting \
                            and f.name != PARTICLE_PLATE:
                        raise ValueError(
                            f"{label} site '{name}' is in plate '{f.name}' at dim {f.dim}, but "
                            f"max_plate_nesting={self.max_plate_nesting} leaves that dim to "
                            f"enumeration; use TraceEnum_ELBO(max_plate_nesting={-f.dim})"
                        )

    def _particle(self, model_trace, guide_trace):
        """The surrogate ELBO of one trace pair; its value is the ELBO estimate."""
        # One symbol table for every step: symbols name plates and enumeration
        # ids, and it remembers how each site layout is packed.
        symbols = self.__dict__.get("_symbols")
        if symbols is None or len(symbols._table) > 4096:
            symbols = self._symbols = Symbols()
        parts = trace_factors(model_trace, exclude=guide_trace.nodes, symbols=symbols)
        plate_sizes = parts["plate_sizes"]
        weights = []
        costs = list(parts["others"])
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site["infer"].get("_subsample"):
                continue
            ordinal, factor, sizes = symbols.pack(name, site, site["log_prob"])
            plate_sizes.update(sizes)
            costs.append((ordinal, factor._replace(tensor=-factor.tensor)))
            if site["infer"].get("_enumerate_dim") is not None or is_sequential(site):
                # Summed exactly: in parallel along its dim, or sequentially with one
                # trace per value, each weighted by its guide probability.
                weights.append((ordinal, factor))
            elif not getattr(site["fn"], "has_rsample", False):
                t = factor.tensor
                weights.append((ordinal, factor._replace(tensor=t - t.detach())))
        elbo = 0.0
        tree, scale = parts["tree"], parts["scale"]
        if tree:
            if not weights:
                z = contract_to_tensor(tree, parts["sum_dims"], plate_sizes)
                elbo = z * scale if not (isinstance(scale, float) and scale == 1.0) else z
            else:
                contracted = contract_tensor_tree(tree, parts["sum_dims"], plate_sizes)
                for ordinal, terms in contracted.items():
                    for term in terms:
                        costs.append((ordinal, term._replace(tensor=term.tensor * scale)))
        if not weights:
            for ordinal, factor in costs:
                elbo = elbo + _full_sum(factor, ordinal, plate_sizes)
            return elbo
        for ordinal, factor in costs:
            elbo = elbo + self._expected_cost(ordinal, factor, weights, plate_sizes)
        return elbo

    @staticmethod
    def _expected_cost(ordinal, cost, weights, plate_sizes):
        relevant = [w for t, w in weights if t <= ordinal]
        if not relevant:
            return _full_sum(cost, ordinal, plate_sizes)
        sizes = dict(plate_sizes)
        for f in relevant + [cost]:
            sizes.update(zip(f.dims, f.tensor.shape))
        target = cost.dims + "".join(p for p in sorted(ordinal) if p not in cost.dims)
        elim = {d for f in relevant for d in f.dims if d not in target}
        tree = OrderedDict([(ordinal, relevant)])
        log_w = 0.0
        for terms in contract_tensor_tree(tree, elim, plate_sizes).values():
            for term in terms:
                missing = [d for d in term.dims if d not in target]
                if missing:
                    raise ValueError(
                        f"guide factor dims {missing} do not appear in a cost at plates "
                        f"{sorted(ordinal)}; is a guide site outside the plates it depends on?"
                    )
                log_w = log_w + _align(term, target, sizes)
        prob = log_w.exp()
        value = _align(cost, target, sizes)
        if not bool((prob > 0).all()):
            value = value.masked_fill(prob == 0, 0.0)
        return (prob * value).sum()

    # ----- public API -----

    def _loss(self, model, guide, args, kwargs):
        """The negative surrogate ELBO and the last particle's traces.

        Validation (distribution arguments, supports, model/guide agreement)
        runs on the first call per model, guide and argument shapes only; a
        value that later drifts out of support still shows as a non-finite
        loss, reported with the site that caused it.
        """
        loss = None
        last = None
        weight = self._particle_weight
        with self._validation_scope(model, guide, args, kwargs):
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                elbo = self._particle(model_trace, guide_trace)
                term = -elbo if weight == 1 else -elbo * weight
                loss = term if loss is None else loss + term
                last = (model_trace, guide_trace)
        return (0.0 if loss is None else loss), last

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The negative ELBO (a surrogate whose gradient is unbiased)."""
        return self._loss(model, guide, args, kwargs)[0]

    def loss(self, model, guide, *args, **kwargs):
        """The negative ELBO as a float."""
        with torch.no_grad():
            loss, last = self._loss(model, guide, args, kwargs)
        return _check_finite(loss, last)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The negative ELBO; its gradient is accumulated into parameters' ``.grad``."""
        loss, last = self._loss(model, guide, args, kwargs)
        value = _check_finite(loss, last)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return value

    def compute_marginals(self, model, guide, *args, **kwargs):
        """Posterior marginals of the model's enumerated sites.

        :returns: a dict from site name to a distribution of the site's type
            (``Categorical``, ``Bernoulli``, ...) with the marginal ``logits``;
            its batch shape is the site's plate shape.
        """
        with block():
            model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        parts = trace_factors(model_trace, exclude=guide_trace.nodes)
        if not parts["enum_sites"]:
            return {}
        tree = OrderedDict((t, list(fs)) for t, fs in parts["tree"].items())
        probes = {}
        symbols = parts["symbols"]
        for name, sym in parts["enum_sites"].items():
            site = model_trace.nodes[name]
            plates = sorted(
                (f.dim, symbols(("plate", f.name)), f.size)
                for f in site["cond_indep_stack"] if f.dim is not None
            )
            enum_dim = site["infer"]["_enumerate_dim"] - len(site["fn"].event_shape)
            like = site["log_prob"]
            # A zero factor whose gradient of log Z is the posterior marginal.
            probe = torch.zeros([site["value"].shape[enum_dim]] + [n for _, _, n in plates],
                                dtype=like.dtype, device=like.device, requires_grad=True)
            probes[name] = (probe, plates)
            ordinal = frozenset(p for _, p, _ in plates)
            tree.setdefault(ordinal, []).append(
                Factor(probe, sym + "".join(p for _, p, _ in plates))
            )
        with torch.enable_grad():
            log_z = contract_to_tensor(tree, parts["sum_dims"], parts["plate_sizes"])
            grads = torch.autograd.grad(log_z, [p for p, _ in probes.values()])
        result = {}
        for (name, (_, plates)), g in zip(probes.items(), grads):
            site = model_trace.nodes[name]
            # Marginal probabilities, with the values along the rightmost dim and
            # each plate at its own dim.
            depth = max([-d for d, _, _ in plates], default=0)
            shape = [1] * depth
            for d, _, n in plates:
                shape[d] = n
            probs = g.movedim(0, -1).reshape(shape + [g.shape[0]])
            result[name] = _marginal_dist(site["fn"], probs.clamp(min=0).log())
        return result


def _check_finite(loss, last):
    """``loss`` as a float; if it is not finite, raise naming the likeliest site."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isfinite(value) or last is None:
        return value
    model_trace, guide_trace = last
    # A NaN or +inf log-density is always wrong; -inf is legitimate for single
    # enumerated values, so it is named only when no site has a worse value.
    found = None
    for label, tr in (("guide", guide_trace), ("model", model_trace)):
        for name, site in tr.nodes.items():
            lp = site.get("log_prob")
            if site["type"] != "sample" or not isinstance(lp, torch.Tensor):
                continue
            lp = lp.detach()
            if bool(torch.isnan(lp).any()) or bool((lp == math.inf).any()):
                found = (label, name, site, "is NaN or +inf")
                break
            if found is None and not bool(torch.isfinite(lp).all()):
                found = (label, name, site, "is -inf for some values")
        if found is not None and found[3] == "is NaN or +inf":
            break
    if found is None:
        raise ValueError(f"TraceEnum_ELBO loss is {value}, but every site's log-density is finite")
    label, name, site, what = found
    shape = tuple(getattr(site["value"], "shape", ()))
    raise ValueError(
        f"TraceEnum_ELBO loss is {value}: {label} site '{name}' has a log-density that {what} "
        f"(value shape {shape}); check its parameters and support, or whether an observation "
        "has zero probability under every enumerated assignment"
    )


def _marginal_dist(fn, logits):
    from probpl.distributions import Bernoulli, Categorical

    if isinstance(fn, Bernoulli):
        return Bernoulli(logits=logits[..., 1] - logits[..., 0])
    try:
        return type(fn)(logits=logits)
    except (TypeError, ValueError):
        return Categorical(logits=logits)
