"""``PyroOptim``: a torch optimizer over whichever parameters inference touches.

Parameters are discovered while inference runs, so the wrapped optimizer is
created lazily and grows as new parameters appear. One torch optimizer serves
all parameters (per-parameter options become param groups, parameters with
equal options share a group), and it uses the fused or ``foreach`` update where
torch offers one, which keeps the per-step cost to a few kernel calls instead
of one Python-level update per parameter.

State is saved per parameter *name*, so a checkpoint restores into a fresh
process whose parameters are created in any order: state for a parameter that
does not exist yet waits until the parameter first appears.
"""

import inspect

import torch
from torch.optim import optimizer as _torch_optimizer

_MODULE_SEP = "$$$"
_SCHEDULER_KEY = "__lr_scheduler__"


def _fast_update_option(constructor, options, params):
    """``{"fused": True}`` or ``{"foreach": True}`` when the constructor accepts it,
    the user chose neither, and the parameters allow it."""
    if "fused" in options or "foreach" in options or not isinstance(constructor, type):
        return {}
    try:
        accepted = inspect.signature(constructor.__init__).parameters
    except (TypeError, ValueError):
        return {}
    floating = all(p.is_floating_point() for p in params)
    devices = {p.device.type for p in params}
    if "fused" in accepted and floating and devices <= {"cpu", "cuda"} and not options.get(
        "differentiable", False
    ):
        return {"fused": True}
    if "foreach" in accepted:
        return {"foreach": True}
    return {}


def _plain_step(optim):
    """Whether ``optim.step()`` would only add profiling and hook calls around
    the update itself (no hooks registered, no profiler running, no scheduler
    counting calls), so the update can be called directly: this saves a sizeable
    share of the step of a small model."""
    step = type(optim).step
    return (
        getattr(step, "hooked", False)
        and hasattr(step, "__wrapped__")
        and "step" not in vars(optim)
        and not optim._optimizer_step_pre_hooks
        and not optim._optimizer_step_post_hooks
        and not _torch_optimizer._global_optimizer_pre_hooks
        and not _torch_optimizer._global_optimizer_post_hooks
        and not torch.autograd.profiler._is_profiler_enabled
    )


_FUSED_ADAMS = (torch.optim.Adam, torch.optim.AdamW)


class _FusedAdamPlan:
    """The optimizer-state tensors a fused Adam update reads, gathered once per
    parameter list (they are updated in place, so they stay the same objects).
    The parameters' step counters are re-homed as views of one ``counter``
    tensor, so counting a step is one ``add_`` rather than one per parameter."""

    __slots__ = ("state", "params", "n", "states", "exp_avgs", "exp_avg_sqs", "steps",
                 "counter")

    def __init__(self, optim, params):
        self.state = optim.state
        self.params = params
        self.n = len(params)
        first = params[0]
        device, dtype = first.device, first.dtype
        self.states = []
        for p in params:
            st = optim.state.get(p)
            if st is None or "exp_avg" not in st or p.device != device or p.dtype != dtype:
                raise LookupError  # the general step must run (and create the state) first
            self.states.append(st)
        steps = [st["step"] for st in self.states]
        self.counter = None
        s0 = steps[0]
        if all(isinstance(t, torch.Tensor) and t.dim() == 0 and t.dtype == s0.dtype
               and t.device == s0.device for t in steps):
            with torch.no_grad():
                self.counter = torch.stack(steps)
            steps = list(self.counter.unbind(0))
            for st, t in zip(self.states, steps):
                st["step"] = t
        self.steps = steps
        self.exp_avgs = [st["exp_avg"] for st in self.states]
        self.exp_avg_sqs = [st["exp_avg_sq"] for st in self.states]

    def valid(self, optim, params):
        if self.state is not optim.state or self.params is not params or self.n != len(params):
            return False
        for st, t, m, v in zip(self.states, self.steps, self.exp_avgs, self.exp_avg_sqs):
            if st["step"] is not t or st["exp_avg"] is not m or st["exp_avg_sq"] is not v:
                return False
        return True


def _fused_adam_step(optim, plan=None):
    """The update of a fused ``Adam``/``AdamW`` with one param group, run as the two
    kernel calls torch's ``step`` ends in (count the step, update every tensor),
    without the per-step Python that prepares them. Returns the
    :class:`_FusedAdamPlan` used (pass it back next time), or None, having done
    nothing, whenever the general ``step`` is needed: several groups, options
    the kernels take elsewhere (amsgrad, capturable, differentiable, tensor
    ``lr``, gradient scaling), a parameter without a gradient or optimizer state
    yet, or tensors on several devices or dtypes."""
    groups = optim.param_groups
    if type(optim) not in _FUSED_ADAMS or len(groups) != 1:
        return None
    group = groups[0]
    if not group.get("fused") or group.get("amsgrad", True) or group.get("capturable", True) \
            or group.get("differentiable", True):
        return None
    lr = group["lr"]
    if not isinstance(lr, float) or getattr(optim, "grad_scale", None) is not None or getattr(
        optim, "found_inf", None
    ) is not None:
        return None
    kernel = getattr(torch, "_fused_adamw_" if group.get("decoupled_weight_decay") else
                     "_fused_adam_", None)
    if kernel is None:
        return None
    params = group["params"]
    grads = []
    for p in params:
        g = p.grad
        if g is None or g.is_sparse:
            return None
        grads.append(g)
    if plan is None or not plan.valid(optim, params):
        try:
            plan = _FusedAdamPlan(optim, params)
        except LookupError:
            return None
    beta1, beta2 = group["betas"]
    grad_enabled = torch.is_grad_enabled()
    torch._C._set_grad_enabled(False)  # torch.no_grad() without its Python context object
    try:
        if plan.counter is not None:
            plan.counter.add_(1)
        else:
            torch._foreach_add_(plan.steps, 1)
        kernel(params, grads, plan.exp_avgs, plan.exp_avg_sqs, [], plan.steps, amsgrad=False,
               lr=lr, beta1=float(beta1), beta2=float(beta2), weight_decay=group["weight_decay"],
               eps=group["eps"], maximize=group["maximize"], grad_scale=None, found_inf=None)
    finally:
        torch._C._set_grad_enabled(grad_enabled)
    return plan


def _state_to_param(state, param, options):
    """Saved per-parameter state moved onto ``param``'s device; ``step`` counters
    stay on the CPU unless the update runs on the device (fused or capturable)."""
    on_device = options.get("fused") or options.get("capturable")
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and (k != "step" or on_device):
            v = v.to(param.device)
        out[k] = v
    return out


def _split_name(name):
    if name is not None and _MODULE_SEP in name:
        module, param = name.split(_MODULE_SEP, 1)
        return module, param
    return name, name


class PyroOptim:
    """Wrap a ``torch.optim.Optimizer`` class.

    :param optim_constructor: e.g. ``torch.optim.Adam``.
    :param optim_args: a dict of keyword arguments, or a callable giving
        per-parameter options: ``fn(param_name) -> dict`` (module parameters
        named ``module.path``), or ``fn(module_name, param_name) -> dict``.
    :param clip_args: ``{"clip_norm": ...}`` and/or ``{"clip_value": ...}``, or a
        callable ``(module_name, param_name) -> dict``; applied to each parameter's
        gradient separately before each step.

    Example::

        >>> import torch
        >>> from probpl.optim import Adam
        >>> optim = Adam(lambda name: {"lr": 0.1 if name.startswith("loc") else 0.01})
    """

    def __init__(self, optim_constructor, optim_args=None, clip_args=None):
        optim_args = {} if optim_args is None else optim_args
        clip_args = {} if clip_args is None else clip_args
        if not (callable(optim_args) or isinstance(optim_args, dict)):
            raise TypeError(f"optim_args must be a dict or a callable, got {type(optim_args)}")
        if not (callable(clip_args) or isinstance(clip_args, dict)):
            raise TypeError(f"clip_args must be a dict or a callable, got {type(clip_args)}")
        if isinstance(clip_args, dict):
            unknown = set(clip_args) - {"clip_norm", "clip_value"}
            if unknown:
                raise ValueError(f"clip_args: unknown keys {sorted(unknown)}; expected "
                                 "'clip_norm' and/or 'clip_value'")
        self.pt_optim_constructor = optim_constructor
        self.pt_optim_args = optim_args
        self.pt_clip_args = clip_args
        self._optim_argc = (
            len(inspect.signature(optim_args).parameters) if callable(optim_args) else 0
        )
        self.optim = None
        self._params = {}  # id -> param already handed to the torch optimizer
        self._clip = {}  # id -> clip options of that param (empty: none)
        self._any_clip = False
        self._pending = {}  # name -> saved state of a param not seen yet
        self._pending_scheduler = None
        self._fused = None  # what the fused Adam update reuses between steps

    # ----- options -----

    @staticmethod
    def _name(param):
        from probpl.params import _PYRO_PARAM_STORE

        return _PYRO_PARAM_STORE.param_name(param)

    def _options(self, param):
        args = self.pt_optim_args
        if not callable(args):
            return dict(args)
        name = self._name(param)
        if self._optim_argc == 1:
            opts = args(None if name is None else name.replace(_MODULE_SEP, "."))
        else:
            opts = args(*_split_name(name))
        if not isinstance(opts, dict):
            raise TypeError(
                f"per-parameter optim_args for '{name}' must return a dict, got {type(opts)}"
            )
        return dict(opts)

    def _clip_options(self, param):
        args = self.pt_clip_args
        if not callable(args):
            return args
        opts = args(*_split_name(self._name(param)))
        if not isinstance(opts, dict):
            raise TypeError(f"per-parameter clip_args must return a dict, got {type(opts)}")
        return opts

    # ----- growing the optimizer -----

    def _register(self, params):
        new = [p for p in params if id(p) not in self._params]
        if not new:
            return
        self._fused = None
        groups = []  # [(options, [params], [(param, saved state)])]
        for p in new:
            self._params[id(p)] = p
            clip = self._clip_options(p)
            self._clip[id(p)] = clip
            self._any_clip = self._any_clip or bool(clip)
            saved = self._pending.pop(self._name(p), None) if self._pending else None
            opts = dict(saved["options"]) if saved is not None else self._options(p)
            for g in groups:
                if g[0] == opts:
                    g[1].append(p)
                    break
            else:
                groups.append((opts, [p], []))
                g = groups[-1]
            if saved is not None:
                g[2].append((p, saved["state"]))
        for opts, ps, states in groups:
            if self.optim is None:
                opts = {**_fast_update_option(self.pt_optim_constructor, opts, ps), **opts}
                self.optim = self._make_optimizer([{"params": ps, **opts}])
            else:
                self._add_group({"params": ps, **opts})
            for p, state in states:
                self.optim.state[p] = _state_to_param(state, p, opts)

    def _make_optimizer(self, groups):
        return self.pt_optim_constructor(groups)

    def _add_group(self, group):
        self.optim.add_param_group(group)

    # ----- stepping -----

    def __call__(self, params, *args, **kwargs):
        """Take one step on ``params`` (an iterable of unconstrained tensors)."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        self._register(params)
        if self._any_clip:
            self._clip_grads(params)
        optim = self.optim
        if args or kwargs or not _plain_step(optim):
            optim.step(*args, **kwargs)
            return
        self._fused = _fused_adam_step(optim, self._fused)
        if self._fused is None:
            type(optim).step.__wrapped__(optim)

    def _clip_grads(self, params):
        for p in params:
            clip = self._clip[id(p)]
            if "clip_norm" in clip:
                torch.nn.utils.clip_grad_norm_(p, clip["clip_norm"])
            if "clip_value" in clip:
                torch.nn.utils.clip_grad_value_(p, clip["clip_value"])

    # ----- checkpointing -----

    def get_state(self):
        """``{param name: {"state": ..., "options": ...}}`` for every parameter this
        optimizer has stepped, plus states still waiting for their parameter."""
        out = {name: saved for name, saved in self._pending.items()}
        if self.optim is None:
            return out
        for group in self.optim.param_groups:
            options = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                state = self.optim.state.get(p, {})
                out[self._name(p)] = {
                    "state": {
                        k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                        for k, v in state.items()
                    },
                    "options": options,
                }
        return out

    def set_state(self, state):
        """Restore a :meth:`get_state` snapshot. Parameters already known take
        their state now; the others when they first appear."""
        state = dict(state)
        scheduler_state = state.pop(_SCHEDULER_KEY, None)
        self._pending.update(state)
        self._fused = None
        if self.optim is not None:
            known = [p for p in self._params.values() if self._name(p) in self._pending]
            for p in known:
                saved = self._pending.pop(self._name(p))
                for group in self.optim.param_groups:
                    if any(q is p for q in group["params"]):
                        group.update(saved["options"])
                        self.optim.state[p] = _state_to_param(saved["state"], p, group)
        if scheduler_state is not None:
            self._set_scheduler_state(scheduler_state)

    def _set_scheduler_state(self, state):
        pass

    def save(self, filename):
        """Save :meth:`get_state` to ``filename``."""
        torch.save(self.get_state(), filename)

    def load(self, filename, map_location=None):
        """Load a state saved by :meth:`save`."""
        self.set_state(torch.load(filename, map_location=map_location, weights_only=False))


def _make_wrapper(torch_cls):
    def constructor(optim_args=None, clip_args=None):
        return PyroOptim(torch_cls, optim_args, clip_args)

    constructor.__name__ = torch_cls.__name__
    constructor.__qualname__ = torch_cls.__name__
    constructor.__doc__ = (
        f"``{torch_cls.__name__}`` from ``torch.optim`` over the parameters inference touches.\n\n"
        ":param optim_args: dict of options, or a callable giving per-parameter options.\n"
        ":param clip_args: optional per-parameter gradient clipping options.\n"
    )
    return constructor
