"""``AutoDiscreteParallel``: a guide for the discrete latent sites of a model, each
an independent learnable ``Bernoulli``/``Categorical``/``OneHotCategorical``
marked for parallel enumeration, so ``TraceEnum_ELBO`` sums them out exactly."""

from contextlib import ExitStack

import torch

from probpl.distributions import Bernoulli, Categorical, OneHotCategorical
from probpl.infer.autoguide.guides import AutoGuide, _enter_plates, _prototype_hide_fn
from probpl.poutine.handlers import block, infer_config, trace
from probpl.primitives import param, sample

_SUPPORTED = (Bernoulli, Categorical, OneHotCategorical)


def _enumerate_discrete(msg):
    if msg["type"] == "sample" and not msg["is_observed"]:
        if getattr(msg["fn"], "has_enumerate_support", False):
            return {"enumerate": msg["infer"].get("enumerate", "parallel")}
    return {}


class AutoDiscreteParallel(AutoGuide):
    """A guide of independent discrete distributions, one per discrete latent site
    (per plate element for local sites), with learnable probabilities, sampled
    with ``infer={"enumerate": "parallel"}``. Use it with ``TraceEnum_ELBO``.

    :param callable model: a model whose latent sites are all Bernoulli,
        Categorical or OneHotCategorical.
    :param callable create_plates: see :class:`AutoGuide`.
    """

    def _setup_prototype(self, *args, **kwargs):
        model = block(infer_config(self.model, config_fn=_enumerate_discrete),
                      hide_fn=_prototype_hide_fn)
        with torch.no_grad(), block():
            self.prototype_trace = trace(model).get_trace(*args, **kwargs)
        self._prototype_frames = {}
        plan = []
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            fn = site["fn"]
            base = _unwrap(fn)
            if site["infer"].get("enumerate") != "parallel" or not isinstance(base, _SUPPORTED):
                raise NotImplementedError(
                    f"AutoDiscreteParallel: sample site '{name}' has a {type(fn).__name__} "
                    "distribution; only enumerable Bernoulli, Categorical and "
                    "OneHotCategorical sites are supported"
                )
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized:
                    raise NotImplementedError(
                        f"AutoDiscreteParallel: site '{name}' is in the sequential plate "
                        f"'{frame.name}'; use a vectorized plate"
                    )
                if frame.full_size != frame.size:
                    raise NotImplementedError(
                        f"AutoDiscreteParallel: site '{name}' is in the subsampled plate "
                        f"'{frame.name}'"
                    )
                self._prototype_frames[frame.name] = frame
            # Categorical's probs carry one dim beyond its batch and event shapes
            extra = base.probs.shape[len(base.batch_shape) + len(base.event_shape):]
            probs = base.probs.detach().expand(fn.batch_shape + fn.event_shape + extra).clone()
            constraint = base.arg_constraints["probs"]
            plan.append((name, type(base), probs, constraint, tuple(site["cond_indep_stack"])))
        self._plan = plan

    def forward(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, Dist, probs_init, constraint, frames in self._plan:
            probs = param(f"{self._pyro_name}_{name}_probs", probs_init, constraint=constraint)
            with ExitStack() as stack:
                _enter_plates(stack, plates, frames)
                result[name] = sample(name, Dist(probs=probs),
                                      infer={"enumerate": "parallel"})
        return result

    def median(self, *args, **kwargs):
        """The most probable value of each site (its mode)."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        result = {}
        with torch.no_grad():
            for name, Dist, probs_init, constraint, _ in self._plan:
                probs = param(f"{self._pyro_name}_{name}_probs", probs_init,
                              constraint=constraint).detach()
                if Dist is Bernoulli:
                    result[name] = (probs > 0.5).to(probs.dtype)
                elif Dist is Categorical:
                    result[name] = probs.argmax(-1)
                else:
                    result[name] = torch.nn.functional.one_hot(
                        probs.argmax(-1), probs.size(-1)).to(probs.dtype)
        return result


def _unwrap(fn):
    """The Bernoulli/Categorical inside plate expansions and ``to_event`` wrappers."""
    while not isinstance(fn, _SUPPORTED) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn
