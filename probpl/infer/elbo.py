"""The base class of evidence lower bounds, and the trace plumbing they share.

An ELBO draws a guide trace, replays the model against it, and turns the two
traces into a loss. Subclasses implement ``differentiable_loss``/``loss``/
``loss_and_grads`` from the per-particle traces that :meth:`ELBO._get_traces`
yields; particles are drawn one by one or, with ``vectorize_particles``, all at
once along an extra plate to the left of the model's plates.

Checks that cost more than the step itself (model/guide agreement, site
shapes, distribution arguments and supports) run on the first step for each
new model, guide and argument shapes, and are skipped afterwards: a model's
structure does not change between steps with same-shaped inputs, and a value
that drifts out of support still surfaces as a non-finite loss, which is
reported with the offending site.
"""

import math
import warnings

import torch

import probpl.util as util
from probpl.poutine.handlers import block, replay, trace
from probpl.poutine.plate_messenger import PlateMessenger
from probpl.poutine.replay_messenger import ReplayMessenger
from probpl.poutine.trace_messenger import TraceHandler, TraceMessenger

PARTICLE_PLATE = "num_particles_vectorized"


class ELBO:
    """Base class for ELBO objectives.

    :param int num_particles: samples per estimate.
    :param int max_plate_nesting: bound on nested plates; guessed from one run
        of model and guide when left at infinity and needed.
    :param bool vectorize_particles: draw all particles in one vectorised run.
    :param bool strict_enumeration_warning: warn about enumeration mistakes.
    """

    def __init__(
        self,
        num_particles=1,
        max_plate_nesting=float("inf"),
        max_iarange_nesting=None,
        vectorize_particles=False,
        strict_enumeration_warning=True,
        ignore_jit_warnings=False,
        jit_options=None,
        retain_graph=None,
        tail_adaptive_beta=-1.0,
    ):
        if max_iarange_nesting is not None:
            max_plate_nesting = max_iarange_nesting
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        self.num_particles = num_particles
        self.max_plate_nesting = max_plate_nesting
        self.vectorize_particles = vectorize_particles
        self.strict_enumeration_warning = strict_enumeration_warning
        self.ignore_jit_warnings = ignore_jit_warnings
        self.jit_options = jit_options
        self.retain_graph = retain_graph
        self.tail_adaptive_beta = tail_adaptive_beta
        self._user_max_plate_nesting = max_plate_nesting
        self._validated = set()

    # ----- validation scope -----

    @staticmethod
    def _validation_key(model, guide, args, kwargs):
        return (id(model), id(guide), _shape_signature(args),
                _shape_signature(kwargs) if kwargs else ())

    def _validation_scope(self, model, guide, args, kwargs):
        """A context that validates on the first run per (model, guide, argument
        shapes) only, and turns validation off on later runs; it enters as
        whether this run validates."""
        if not util._VALIDATION_ENABLED:
            return _NOT_VALIDATING
        key = self._validation_key(model, guide, args, kwargs)
        if key not in self._validated:
            return _FirstRun(self._validated, key)
        return _ValidationOff()

    def _infer_plate_nesting(self, model_trace, guide_trace):
        """Adopt the nesting seen in the first traces when the user gave none, so
        that later shape checks catch batch dims left of every plate."""
        if self._user_max_plate_nesting == float("inf") and not self.vectorize_particles:
            nesting = max(plate_nesting(model_trace), plate_nesting(guide_trace))
            check_site_shapes(model_trace, nesting)
            check_site_shapes(guide_trace, nesting)

    # ----- traces -----

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        with block():
            guide_trace = trace(guide).get_trace(*args, **kwargs)
            model_trace = trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        self.max_plate_nesting = max(
            [plate_nesting(guide_trace), plate_nesting(model_trace)], default=0
        )

    def _vectorized_num_particles(self, fn):
        def wrapped(*args, **kwargs):
            if self.num_particles == 1:
                return fn(*args, **kwargs)
            with PlateMessenger(
                PARTICLE_PLATE, self.num_particles, dim=-self.max_plate_nesting - 1
            ):
                return fn(*args, **kwargs)

        return wrapped

    def _get_trace(self, model, guide, args, kwargs):
        """One particle's ``(model_trace, guide_trace)``; subclasses say how."""
        raise NotImplementedError

    def _get_vectorized_trace(self, model, guide, args, kwargs):
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        return self._get_trace(
            self._vectorized_num_particles(model), self._vectorized_num_particles(guide), args,
            kwargs,
        )

    def _get_traces(self, model, guide, args, kwargs):
        """Yield ``(model_trace, guide_trace)`` for each particle."""
        if self.vectorize_particles:
            pair = self._get_vectorized_trace(model, guide, args, kwargs)
            if util._VALIDATION_ENABLED:
                self._infer_plate_nesting(*pair)
            yield pair
        else:
            for _ in range(self.num_particles):
                pair = self._get_trace(model, guide, args, kwargs)
                if util._VALIDATION_ENABLED:
                    self._infer_plate_nesting(*pair)
                yield pair

    @property
    def _particle_weight(self):
        """Weight of one yielded trace pair in the particle average (a vectorised
        trace sums all particles, each sequential one holds one)."""
        return 1.0 / self.num_particles

    # ----- public API (subclasses fill in) -----

    def loss(self, model, guide, *args, **kwargs):
        """An estimate of the negative ELBO, as a float."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs):
        raise NotImplementedError

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Estimate the negative ELBO, backpropagate its surrogate into the
        parameters' ``.grad``, and return the estimate as a float."""
        raise NotImplementedError


class _ValidationOff:
    """Skip probpl's and torch's checks inside the block (cheap: two flags)."""

    __slots__ = ("_old",)

    def __enter__(self):
        dist_cls = torch.distributions.Distribution
        self._old = (util._VALIDATION_ENABLED, dist_cls._validate_args)
        util._VALIDATION_ENABLED = False
        dist_cls._validate_args = False
        return False

    def __exit__(self, *exc):
        util._VALIDATION_ENABLED, torch.distributions.Distribution._validate_args = self._old
        return False


class _FirstRun:
    """Validate inside the block; remember ``key`` as validated if it succeeds."""

    __slots__ = ("_validated", "_key")

    def __init__(self, validated, key):
        self._validated, self._key = validated, key

    def __enter__(self):
        return True

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self._validated.add(self._key)
        return False


class _NotValidating:
    __slots__ = ()

    def __enter__(self):
        return False

    def __exit__(self, *exc):
        return False


_NOT_VALIDATING = _NotValidating()


def validation_off():
    """A context that skips probpl's and torch's checks inside it (cheap: two flags)."""
    return _ValidationOff()


def _shape_signature(obj):
    if isinstance(obj, torch.Tensor):
        return (obj.shape, obj.dtype, obj.device)
    if isinstance(obj, (tuple, list)):
        return tuple([_shape_signature(x) for x in obj])
    if isinstance(obj, dict):
        return tuple((k, _shape_signature(v)) for k, v in obj.items())
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    return id(obj)


def plate_nesting(tr):
    """The number of vectorised plate dims used by the sample sites of a trace."""
    nesting = 0
    for site in tr.nodes.values():
        if site["type"] == "sample":
            for f in site["cond_indep_stack"]:
                if f.dim is not None:
                    nesting = max(nesting, -f.dim)
    return nesting


def get_importance_trace(graph_type, max_plate_nesting, model, guide, args, kwargs, detach=False):
    """Run the guide, replay the model against it, check that the two agree,
    and compute log-densities (score parts for the guide)."""
    guide_trace = TraceHandler(TraceMessenger(graph_type), guide).get_trace(*args, **kwargs)
    if detach:
        guide_trace.detach_()
    replaying = ReplayMessenger(trace=guide_trace)

    def replayed_model(*args, **kwargs):  # replay(model, ...) without functools.wraps
        with replaying:
            return model(*args, **kwargs)

    model_trace = TraceHandler(TraceMessenger(graph_type), replayed_model).get_trace(*args,
                                                                                    **kwargs)
    if util._VALIDATION_ENABLED:
        check_model_guide_match(model_trace, guide_trace, max_plate_nesting)
    model_trace.compute_log_prob()
    guide_trace.compute_score_parts()
    if util._VALIDATION_ENABLED:
        check_site_shapes(model_trace, max_plate_nesting)
        check_site_shapes(guide_trace, max_plate_nesting)
    return model_trace, guide_trace


def check_model_guide_match(model_trace, guide_trace, max_plate_nesting=math.inf):
    """Errors and warnings for model/guide pairs that do not fit together."""
    model_latent = {n for n, s in model_trace.iter_stochastic_nodes()}
    model_observed = set(model_trace.observation_nodes)
    guide_latent = {
        n for n, s in guide_trace.iter_stochastic_nodes() if not s["infer"].get("is_auxiliary")
    }
    both = guide_latent & model_observed
    if both:
        raise RuntimeError(
            f"sites {sorted(both)} are sampled in the guide but observed in the model; "
            "a guide must not sample observed sites"
        )
    extra = guide_latent - model_latent
    if extra:
        warnings.warn(
            f"Found sites {sorted(extra)} in the guide but not in the model; mark them "
            "infer={'is_auxiliary': True} if that is intended",
            stacklevel=3,
        )
    missing = {
        n
        for n in model_latent - guide_latent
        if not model_trace.nodes[n]["infer"].get("enumerate")
        and not model_trace.nodes[n]["infer"].get("_deterministic")
    }
    if missing:
        warnings.warn(
            f"Found latent sites {sorted(missing)} in the model but not in the guide; they are "
            "drawn from the prior",
            stacklevel=3,
        )


def check_site_shapes(tr, max_plate_nesting):
    """Each sample site's batch dims beyond ``max_plate_nesting`` must be size 1,
    and every plate dim must lie within ``max_plate_nesting``."""
    if max_plate_nesting == math.inf:
        return
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or site["infer"].get("_subsample"):
            continue
        allowed = max_plate_nesting
        for f in site["cond_indep_stack"]:
            if f.name == PARTICLE_PLATE:
                allowed += 1
        for f in site["cond_indep_stack"]:
            if f.dim is not None and -f.dim > allowed and f.name != PARTICLE_PLATE:
                raise ValueError(
                    f"sample site '{name}' is in plate '{f.name}' at dim {f.dim}, but "
                    f"max_plate_nesting={max_plate_nesting}; increase max_plate_nesting"
                )
        lp = site.get("log_prob")
        if isinstance(lp, torch.Tensor) and lp.dim() > allowed:
            extra = lp.shape[: lp.dim() - allowed]
            if site["infer"].get("enumerate") is None and any(s != 1 for s in extra):
                raise ValueError(
                    f"sample site '{name}': log_prob has shape {tuple(lp.shape)}, with batch "
                    f"dims {tuple(extra)} left of the {max_plate_nesting} plate dim(s) allowed "
                    "by max_plate_nesting; declare those dims with plates or move them into the "
                    "event shape with .to_event()"
                )
