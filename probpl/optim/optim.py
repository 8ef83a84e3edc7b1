"""``PyroOptim``: a torch optimizer over whichever parameters inference touches.

Parameters are discovered while inference runs, so the wrapped optimizer is
created lazily and grows as new parameters appear. One torch optimizer serves
all parameters (per-parameter options become param groups), which keeps the
per-step cost to a single fused update.
"""

import torch


class PyroOptim:
    """Wrap a ``torch.optim.Optimizer`` class.

    :param optim_constructor: e.g. ``torch.optim.Adam``.
    :param optim_args: a dict of keyword arguments, or a callable
        ``(param_name, param) -> dict`` giving per-parameter options.
    :param clip_args: optional ``{"clip_norm": ...}`` or ``{"clip_value": ...}``
        applied to gradients before each step.
    """

    def __init__(self, optim_constructor, optim_args=None, clip_args=None):
        self.pt_optim_constructor = optim_constructor
        self.optim_args = {} if optim_args is None else optim_args
        self.clip_args = clip_args or {}
        self.optim = None
        self._params = {}  # id -> param already handed to the torch optimizer
        self._pending_state = None

    def _options(self, param):
        if callable(self.optim_args):
            from probpl.params import _PYRO_PARAM_STORE

            return dict(self.optim_args(_PYRO_PARAM_STORE.param_name(param), param))
        return dict(self.optim_args)

    def _register(self, params):
        new = [p for p in params if id(p) not in self._params]
        if not new:
            return
        for p in new:
            self._params[id(p)] = p
        if self.optim is None:
            if callable(self.optim_args):
                groups = [{"params": [p], **self._options(p)} for p in new]
                self.optim = self.pt_optim_constructor(groups)
            else:
                self.optim = self.pt_optim_constructor(new, **self._options(new[0]))
            if self._pending_state is not None:
                self._load_pending()
        elif callable(self.optim_args):
            for p in new:
                self.optim.add_param_group({"params": [p], **self._options(p)})
        else:
            self.optim.add_param_group({"params": new, **self._options(new[0])})

    def __call__(self, params, *args, **kwargs):
        """Take one step on ``params`` (an iterable of unconstrained tensors)."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        self._register(params)
        if self.clip_args:
            if "clip_norm" in self.clip_args:
                torch.nn.utils.clip_grad_norm_(params, self.clip_args["clip_norm"])
            if "clip_value" in self.clip_args:
                torch.nn.utils.clip_grad_value_(params, self.clip_args["clip_value"])
        self.optim.step(*args, **kwargs)

    def get_state(self):
        """Optimizer state keyed by parameter name, portable across processes."""
        from probpl.params import _PYRO_PARAM_STORE

        if self.optim is None:
            return {"state": {}, "param_names": []}
        names = []
        for group in self.optim.param_groups:
            for p in group["params"]:
                names.append(_PYRO_PARAM_STORE.param_name(p))
        return {"state": self.optim.state_dict(), "param_names": names}

    def set_state(self, state):
        """Restore a :meth:`get_state` snapshot; applied once parameters are known."""
        self._pending_state = state
        if self.optim is not None:
            self._load_pending()

    def _load_pending(self):
        from probpl.params import _PYRO_PARAM_STORE

        state = self._pending_state
        names = state["param_names"]
        params = [_PYRO_PARAM_STORE._params.get(n) for n in names]
        if any(p is None for p in params):
            return
        self.optim = None
        self._params = {}
        groups_state = state["state"]["param_groups"]
        groups, i = [], 0
        for g in groups_state:
            n = len(g["params"])
            opts = {k: v for k, v in g.items() if k != "params"}
            groups.append({"params": params[i: i + n], **opts})
            i += n
        for p in params:
            self._params[id(p)] = p
        self.optim = self.pt_optim_constructor(groups)
        self.optim.load_state_dict(state["state"])
        self._pending_state = None

    def save(self, filename):
        torch.save(self.get_state(), filename)

    def load(self, filename, map_location=None):
        self.set_state(torch.load(filename, map_location=map_location, weights_only=False))


def _make_wrapper(torch_cls):
    def constructor(optim_args=None, clip_args=None):
        return PyroOptim(torch_cls, optim_args, clip_args)

    constructor.__name__ = torch_cls.__name__
    constructor.__qualname__ = torch_cls.__name__
    constructor.__doc__ = (
        f"``{torch_cls.__name__}`` from ``torch.optim`` over the parameters inference touches.\n\n"
        ":param optim_args: dict of options, or callable ``(name, param) -> dict``.\n"
    )
    return constructor
