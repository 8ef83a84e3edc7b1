"""Automatic guides: :class:`AutoGuide`, the base that reads a model's structure
once, and the per-site guides :class:`AutoDelta` and :class:`AutoNormal` (guides
that combine others live in ``guide_list.py``).

A guide runs its model once, on the first call, under ``block`` so nothing leaks
to the handlers outside, and keeps that *prototype trace* of the latent sites.
Later calls only read parameters and sample. Guides are ``PyroModule`` s: their
parameters live both on the module (``state_dict``, pickling) and in the param
store under the guide's names (``"AutoNormal.locs.z"``), where SVI updates them.
"""

import pickle
import weakref
from contextlib import ExitStack

import torch

from probpl.distributions import Delta, constraints
from probpl.infer.autoguide.initialization import (
    InitMessenger,
    init_to_feasible,
    init_to_median,
)
from probpl.infer.autoguide.normal_site import NormalSite
from probpl.infer.autoguide.utils import (
    deep_owner,
    deep_setattr,
    is_identity,
    periodic_repeat,
    site_transform,
    unconstrained_event_dim,
)
from probpl.nn.module import PyroModule, PyroParam
from probpl.poutine.handlers import block, trace
from probpl.poutine.plate_messenger import plate
from probpl.primitives import sample


def _prototype_hide_fn(msg):
    # The prototype records latent sample sites only.
    return msg["type"] != "sample" or msg["is_observed"] or msg["infer"].get("_subsample", False)


def _picklable(fn):
    """Whether ``fn`` can be pickled (a closure or a local function cannot)."""
    if isinstance(fn, torch.nn.Module):
        return True
    try:
        pickle.dumps(fn)
        return True
    except Exception:
        return False


class AutoGuide(PyroModule):
    """Base class of automatic guides: callables with the model's signature that
    return a dict of latent values.

    :param callable model: the model.
    :param callable create_plates: optional function of the model's arguments
        returning a plate or plates for the guide to use (e.g. one with
        ``subsample`` indices); plates it does not return are made from the
        model's plates.
    """

    def __init__(self, model, *, create_plates=None):
        super().__init__(name=type(self).__name__)
        self.master = None
        self._model = (model,)  # a tuple, so a model that is an nn.Module is not a child
        self.create_plates = create_plates
        self.prototype_trace = None
        self._prototype_frames = {}
        self.plates = {}

    @property
    def model(self):
        """The model this guide approximates the posterior of."""
        return self._model[0] if self._model is not None else None

    def __getstate__(self):
        state = super().__getstate__()
        state["master"] = None
        model = self.model
        state["_model"] = (model,) if _picklable(model) else None
        state["plates"] = {}
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        ref = weakref.ref(self)
        for _, mod in self.named_modules():
            if mod is not self and isinstance(mod, AutoGuide):
                mod.master = ref

    def __setattr__(self, name, value):
        if isinstance(value, AutoGuide):
            ref = weakref.ref(self) if self.__dict__.get("master") is None else self.master
            for _, mod in value.named_modules():
                if isinstance(mod, AutoGuide):
                    object.__setattr__(mod, "master", ref)
        super().__setattr__(name, value)

    def call(self, *args, **kwargs):
        """The latent values as a tuple sorted by site name (for tracing with the JIT)."""
        result = self(*args, **kwargs)
        return tuple(v for _, v in sorted(result.items()))

    def sample_latent(self, *args, **kwargs):
        """Draw the guide's latent representation (continuous guides override this)."""
        raise NotImplementedError

    def median(self, *args, **kwargs):
        """The posterior median of each latent site, as a dict."""
        raise NotImplementedError

    def quantiles(self, quantiles, *args, **kwargs):
        """Posterior quantiles of each latent site: a dict of tensors whose leftmost
        dim runs over ``quantiles``."""
        raise NotImplementedError

    # ----- structure -----

    def _latent_sites(self, prototype_trace):
        """The latent sites this guide covers (continuous guides leave out sites
        marked for enumeration, which the ELBO sums out)."""
        return [
            (name, site) for name, site in prototype_trace.iter_stochastic_nodes()
            if site["infer"].get("enumerate") != "parallel"
        ]

    def _prototype_model(self):
        init_loc_fn = getattr(self, "init_loc_fn", None)
        model = self.model
        if model is None:
            raise RuntimeError(
                f"{type(self).__name__} has no model (it was pickled without one) and has "
                "never been run; build a new guide around the model"
            )
        return model if init_loc_fn is None else InitMessenger(init_loc_fn)(model)

    def _setup_prototype(self, *args, **kwargs):
        model = block(self._prototype_model(), hide_fn=_prototype_hide_fn)
        with torch.no_grad(), block():
            self.prototype_trace = trace(model).get_trace(*args, **kwargs)
        if self.master is not None:
            self.master()._check_prototype(self.prototype_trace)
        self._prototype_frames = {}
        for name, site in self._latent_sites(self.prototype_trace):
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized:
                    raise NotImplementedError(
                        f"sample site '{name}' is inside the sequential plate '{frame.name}'; "
                        f"{type(self).__name__} needs vectorized plates (use 'with plate(...)')"
                    )
                self._prototype_frames[frame.name] = frame

    def _create_plates(self, *args, **kwargs):
        if self.master is not None:
            self.plates = self.master().plates
            return self.plates
        if self.create_plates is None:
            plates = {}
        else:
            made = self.create_plates(*args, **kwargs)
            made = [made] if not isinstance(made, (list, tuple)) else made
            plates = {p.name: p for p in made}
        for name, frame in self._prototype_frames.items():
            if name not in plates:
                plates[name] = plate(name, frame.full_size, subsample_size=frame.size,
                                     dim=frame.dim)
        self.plates = plates
        return plates


def _enter_plates(stack, plates, frames):
    for frame in frames:
        stack.enter_context(plates[frame.name])


def _subsample(value, frames, plates, event_dim):
    """Select the minibatch entries of a full-size local parameter."""
    for frame in frames:
        if frame.full_size == frame.size:
            continue
        dim = frame.dim - event_dim
        if value.size(dim) == frame.full_size:
            indices = plates[frame.name].indices
            value = value.index_select(dim, indices.to(value.device))
    return value


def _init_full_size(value, frames, event_dim):
    """Repeat a prototype value (of minibatch size) to the full size of each plate."""
    for frame in frames:
        if frame.full_size != frame.size:
            value = periodic_repeat(value, frame.full_size, frame.dim - event_dim)
    return value.contiguous()


class AutoNormal(AutoGuide):
    """A mean-field guide: each latent site is an independent Normal in
    unconstrained space, mapped onto the site's support. Local sites get one
    location and scale per plate element, subsampled with the plate.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy for the locations.
    :param float init_scale: initial scale of every site.
    :param callable create_plates: see :class:`AutoGuide`.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.autoguide import AutoNormal
        >>> def model(x):
        ...     m = probpl.sample("m", dist.Normal(0., 10.))
        ...     with probpl.plate("data", len(x)):
        ...         probpl.sample("x", dist.Normal(m, 1.), obs=x)
        >>> guide = AutoNormal(model)
        >>> sorted(guide(torch.zeros(3)))
        ['m']
        >>> guide.median()["m"]
        tensor(0.)
    """

    def __init__(self, model, *, init_loc_fn=init_to_feasible, init_scale=0.1,
                 create_plates=None):
        if not init_scale > 0:
            raise ValueError(f"AutoNormal: init_scale must be positive, got {init_scale}")
        self.init_loc_fn = init_loc_fn
        self._init_scale = init_scale
        super().__init__(model, create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        self.locs = PyroModule()
        self.scales = PyroModule()
        plan = []
        for name, site in self._latent_sites(self.prototype_trace):
            transform = site_transform(site)
            event_dim = unconstrained_event_dim(site, transform)
            frames = tuple(site["cond_indep_stack"])
            init_loc = transform.inv(site["value"].detach())
            init_loc = _init_full_size(init_loc, frames, event_dim)
            init_scale = torch.full_like(init_loc, self._init_scale)
            deep_setattr(self.locs, name, PyroParam(init_loc, constraints.real, event_dim))
            deep_setattr(self.scales, name,
                         PyroParam(init_scale, constraints.softplus_positive, event_dim))
            loc_owner, attr = deep_owner(self.locs, name)
            scale_owner, _ = deep_owner(self.scales, name)
            transform = None if is_identity(transform) else transform
            site_event = (site["fn"].event_shape, site["fn"].support)
            plan.append((name, transform, event_dim, site_event, frames, loc_owner, scale_owner,
                         attr))
        self._plan = plan

    def forward(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs) if self._prototype_frames else None
        result = {}
        for name, transform, event_dim, site_event, frames, loc_owner, scale_owner, attr in (
            self._plan
        ):
            event_shape, support = site_event
            if frames:
                with ExitStack() as stack:
                    _enter_plates(stack, plates, frames)
                    loc = _subsample(loc_owner._pyro_read_param(attr), frames, plates, event_dim)
                    scale = _subsample(scale_owner._pyro_read_param(attr), frames, plates,
                                       event_dim)
                    fn = NormalSite(loc, scale, transform, event_dim, support, event_shape)
                    result[name] = sample(name, fn)
            else:
                loc = loc_owner._pyro_read_param(attr)
                scale = scale_owner._pyro_read_param(attr)
                fn = NormalSite(loc, scale, transform, event_dim, support, event_shape)
                result[name] = sample(name, fn)
        return result

    def _loc_scale(self, name):
        loc_owner, attr = deep_owner(self.locs, name)
        scale_owner, _ = deep_owner(self.scales, name)
        return getattr(loc_owner, attr), getattr(scale_owner, attr)

    def _transform(self, name):
        return site_transform(self.prototype_trace.nodes[name])

    def get_posterior(self, *args, **kwargs):
        """The fitted distribution of each latent site over its full (not subsampled)
        plates, as a dict of distributions on the constrained space."""
        self._ensure_prototype(*args, **kwargs)
        result = {}
        for name, transform, event_dim, (event_shape, support), *_ in self._plan:
            loc, scale = self._loc_scale(name)
            result[name] = NormalSite(loc, scale, transform, event_dim, support, event_shape)
        return result

    def _ensure_prototype(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)

    def median(self, *args, **kwargs):
        self._ensure_prototype(*args, **kwargs)
        with torch.no_grad():
            return {
                name: self._transform(name)(self._loc_scale(name)[0]).detach()
                for name, *_ in self._plan
            }

    def quantiles(self, quantiles, *args, **kwargs):
        self._ensure_prototype(*args, **kwargs)
        result = {}
        with torch.no_grad():
            for name, *_ in self._plan:
                loc, scale = self._loc_scale(name)
                q = torch.as_tensor(quantiles, dtype=loc.dtype, device=loc.device)
                q = q.reshape((-1,) + (1,) * loc.dim())
                z = torch.distributions.Normal(loc, scale).icdf(q)
                result[name] = self._transform(name)(z).detach()
        return result


class AutoDelta(AutoGuide):
    """A point-mass guide: MAP estimation when used with an ELBO. Each latent site
    is a :class:`~probpl.distributions.Delta` at a parameter constrained to the
    site's support.

    :param callable model: the model.
    :param callable init_loc_fn: initialisation strategy.
    :param callable create_plates: see :class:`AutoGuide`.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.autoguide import AutoDelta
        >>> def model():
        ...     probpl.sample("s", dist.Gamma(2., 1.))
        >>> guide = AutoDelta(model)
        >>> guide()["s"].item() > 0
        True
    """

    def __init__(self, model, init_loc_fn=init_to_median, *, create_plates=None):
        self.init_loc_fn = init_loc_fn
        super().__init__(model, create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        plan = []
        for name, site in self._latent_sites(self.prototype_trace):
            site_transform(site)  # a clear error for sites with no support bijection
            event_dim = site["fn"].event_dim
            frames = tuple(site["cond_indep_stack"])
            value = _init_full_size(site["value"].detach(), frames, event_dim)
            deep_setattr(self, name, PyroParam(value, site["fn"].support, event_dim))
            owner, attr = deep_owner(self, name)
            plan.append((name, event_dim, frames, owner, attr))
        self._plan = plan

    def forward(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs) if self._prototype_frames else None
        result = {}
        for name, event_dim, frames, owner, attr in self._plan:
            with ExitStack() as stack:
                _enter_plates(stack, plates, frames)
                value = _subsample(owner._pyro_read_param(attr), frames, plates, event_dim)
                result[name] = sample(name, Delta(value, event_dim=event_dim))
        return result

    def median(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            return {name: getattr(owner, attr).detach() for name, _, _, owner, attr in self._plan}
