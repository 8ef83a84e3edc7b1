"""``PyroModule``: a ``torch.nn.Module`` whose attributes can be random or learnable sites.

A :class:`PyroModule` behaves like any torch module, and in addition

* an attribute set to :class:`PyroParam` is a constrained parameter, stored
  unconstrained as ``<name>_unconstrained`` and read through :func:`probpl.param`;
* an attribute set to :class:`PyroSample` is a latent variable, read through
  :func:`probpl.sample` once per call of the module;
* ordinary ``nn.Parameter`` attributes and plain ``nn.Module`` children are
  registered in the param store when read during a call.

Sites are named by the attribute path from the root module (``"layer.weight"``),
and module and param store share the same tensors, so SVI updates the module.
``PyroModule[nn.Linear]`` makes a Pyro-aware subclass of any torch module class.
"""

import functools
from collections import OrderedDict
from typing import Callable, NamedTuple, Optional, Union

import torch

from probpl.distributions import constraints
from probpl.distributions.transforms import biject_to
from probpl.params import _PYRO_PARAM_STORE
from probpl.primitives import deterministic, module, param, sample


class PyroParam(NamedTuple):
    """A learnable attribute of a :class:`PyroModule`, like :func:`probpl.param`.

    :param init_value: initial (constrained) value, or a callable returning it.
    :param constraint: the parameter's constraint (default ``constraints.real``).
    :param int event_dim: number of rightmost dims that are not batch dims.

    Example::

        >>> import torch
        >>> from probpl.distributions import constraints
        >>> from probpl.nn import PyroModule, PyroParam
        >>> m = PyroModule()
        >>> m.scale = PyroParam(torch.ones(2), constraints.positive)
        >>> m.scale.detach()
        tensor([1., 1.])
    """

    init_value: Optional[Union[torch.Tensor, Callable[[], torch.Tensor]]] = None
    constraint: constraints.Constraint = constraints.real
    event_dim: Optional[int] = None


class PyroSample:
    """A random attribute of a :class:`PyroModule`, like :func:`probpl.sample`.

    :param prior: a distribution, or a callable taking the module and returning
        a distribution (or a tensor, recorded as a deterministic site).

    Example::

        >>> import probpl.distributions as dist
        >>> from probpl.nn import PyroModule, PyroSample
        >>> m = PyroModule()
        >>> m.x = PyroSample(dist.Normal(0., 1.))
        >>> m.y = PyroSample(lambda self: dist.Normal(self.x, 1.))
    """

    __slots__ = ("prior",)

    def __init__(self, prior):
        if not (hasattr(prior, "sample") or callable(prior)):
            raise TypeError(
                f"PyroSample: prior must be a distribution or a callable of the module, got "
                f"{type(prior).__name__}"
            )
        self.prior = prior

    def __getstate__(self):
        return self.prior

    def __setstate__(self, prior):
        self.prior = prior


def _make_name(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class _Context:
    """Per-call state shared by a root module and its PyroModule descendants:
    how deeply the call is nested, and the values of sample sites already drawn."""

    def __init__(self):
        self.active = 0
        self.cache = {}

    def __enter__(self):
        self.active += 1

    def __exit__(self, *exc):
        self.active -= 1
        if not self.active:
            self.cache.clear()


def _share_with_store(fullname, owner, attr, unconstrained, constraint, event_dim):
    """Make the store and ``owner._parameters[attr]`` hold the same tensor. A store
    entry that differs (e.g. after ``get_param_store().load``) wins, so the store
    stays the single source of truth that SVI optimises."""
    store = _PYRO_PARAM_STORE
    stored = store._params.get(fullname)
    if stored is unconstrained:
        return
    if stored is None:
        store.adopt(fullname, unconstrained, constraint, event_dim)
        return
    if not isinstance(stored, torch.nn.Parameter):
        stored = torch.nn.Parameter(stored.detach())
        store.adopt(fullname, stored, store._constraints[fullname])
    owner._parameters[attr] = stored


class _PyroModuleMeta(type):
    _mixins = {}

    def __getitem__(cls, Module):
        if not (isinstance(Module, type) and issubclass(Module, torch.nn.Module)):
            raise TypeError(f"PyroModule[...] expects a torch.nn.Module subclass, got {Module!r}")
        if issubclass(Module, PyroModule):
            return Module
        if Module is torch.nn.Module:
            return PyroModule
        if Module not in cls._mixins:
            bases = tuple(PyroModule[b] for b in Module.__bases__ if issubclass(b, torch.nn.Module))
            mixin = type("Pyro" + Module.__name__, (Module,) + bases, {
                "__reduce__": _reduce_mixin, "_pyro_torch_class": Module,
                "__module__": __name__,
            })
            cls._mixins[Module] = mixin
        return cls._mixins[Module]


def _new_mixin(Module):
    return object.__new__(PyroModule[Module])


def _reduce_mixin(self):
    # Generated classes cannot be found by name, so rebuild them from the torch class.
    return _new_mixin, (type(self)._pyro_torch_class,), self.__getstate__()


class PyroModule(torch.nn.Module, metaclass=_PyroModuleMeta):
    """A torch module whose attributes may be :class:`PyroParam` or :class:`PyroSample`.

    :param str name: the prefix of this module's site names when it is the root.

    Example::

        >>> import torch
        >>> import probpl, probpl.distributions as dist
        >>> from probpl.nn import PyroModule, PyroSample
        >>> class Regression(PyroModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.linear = PyroModule[torch.nn.Linear](2, 1)
        ...         self.linear.weight = PyroSample(dist.Normal(0., 1.).expand([1, 2]).to_event(2))
        ...     def forward(self, x, y=None):
        ...         mean = self.linear(x).squeeze(-1)
        ...         with probpl.plate("data", x.shape[0]):
        ...             return probpl.sample("obs", dist.Normal(mean, 1.), obs=y)
        >>> tr = probpl.poutine.trace(Regression()).get_trace(torch.randn(5, 2))
        >>> [n for n in tr.nodes if not n.startswith("_")]
        ['linear.weight', 'linear.bias', 'obs']
    """

    def __init__(self, name=""):
        object.__setattr__(self, "_pyro_name", name)
        object.__setattr__(self, "_pyro_context", _Context())
        object.__setattr__(self, "_pyro_params", OrderedDict())
        object.__setattr__(self, "_pyro_samples", OrderedDict())
        super().__init__()

    def __call__(self, *args, **kwargs):
        with self._pyro_context:
            return super().__call__(*args, **kwargs)

    def add_module(self, name, module):
        if isinstance(module, PyroModule):
            module._pyro_set_supermodule(_make_name(self._pyro_name, name), self._pyro_context)
        super().add_module(name, module)

    def _pyro_set_supermodule(self, name, context):
        object.__setattr__(self, "_pyro_name", name)
        object.__setattr__(self, "_pyro_context", context)
        for key, child in self._modules.items():
            if isinstance(child, PyroModule):
                child._pyro_set_supermodule(_make_name(name, key), context)

    def _pyro_get_fullname(self, name):
        return _make_name(self._pyro_name, name)

    def named_pyro_params(self, prefix="", recurse=True):
        """``(name, constrained value)`` of every parameter, PyroParams under their
        own names rather than ``<name>_unconstrained``."""
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_name, mod in modules:
            pyro_params = getattr(mod, "_pyro_params", {})
            for name in list(mod._parameters):
                base = name[: -len("_unconstrained")]
                if name.endswith("_unconstrained") and base in pyro_params:
                    yield _make_name(mod_name, base), getattr(mod, base)
                elif mod._parameters[name] is not None:
                    yield _make_name(mod_name, name), mod._parameters[name]

    # ----- reading attributes -----

    def _pyro_read_param(self, name):
        constraint, event_dim = self._pyro_params[name]
        attr = name + "_unconstrained"
        unconstrained = self._parameters[attr]
        if self._pyro_context.active:
            prefix = self._pyro_name
            fullname = f"{prefix}.{name}" if prefix else name
            if _PYRO_PARAM_STORE._params.get(fullname) is not unconstrained:
                _share_with_store(fullname, self, attr, unconstrained, constraint, event_dim)
            return param(fullname, event_dim=event_dim)
        if constraint is constraints.real:
            return unconstrained
        return biject_to(constraint)(unconstrained)

    def _pyro_read_sample(self, name, prior):
        context = self._pyro_context
        if not context.active:
            prior = prior if hasattr(prior, "sample") else prior(self)
            return prior if isinstance(prior, torch.Tensor) else prior()
        fullname = _make_name(self._pyro_name, name)
        value = context.cache.get(fullname)
        if value is None:
            prior = prior if hasattr(prior, "sample") else prior(self)
            if isinstance(prior, torch.Tensor):
                value = deterministic(fullname, prior)
            else:
                value = sample(fullname, prior)
            context.cache[fullname] = value
        return value

    def __getattr__(self, name):
        d = self.__dict__
        pyro_params = d.get("_pyro_params")
        if pyro_params is not None and name in pyro_params:
            return self._pyro_read_param(name)
        pyro_samples = d.get("_pyro_samples")
        if pyro_samples is not None and name in pyro_samples:
            return self._pyro_read_sample(name, pyro_samples[name])
        result = super().__getattr__(name)
        if isinstance(result, torch.nn.Parameter):
            if self._pyro_context.active and not name.endswith("_unconstrained"):
                fullname = _make_name(self._pyro_name, name)
                _share_with_store(fullname, self, name, result, constraints.real, None)
                return param(fullname)
        elif isinstance(result, PyroModule):
            if not result._pyro_name:
                # a child converted in place by to_pyro_module_ learns its name here
                result._pyro_set_supermodule(_make_name(self._pyro_name, name), self._pyro_context)
        elif isinstance(result, torch.nn.Module) and self._pyro_context.active:
            module(_make_name(self._pyro_name, name), result)
        return result

    # ----- setting attributes -----

    def __setattr__(self, name, value):
        if isinstance(value, PyroModule):
            self._pyro_drop(name)
            self.add_module(name, value)
        elif isinstance(value, PyroParam):
            self._pyro_drop(name)
            init, constraint, event_dim = value
            if init is None:
                raise ValueError(f"PyroParam '{self._pyro_get_fullname(name)}' needs an init_value")
            with torch.no_grad():
                if callable(init) and not isinstance(init, torch.Tensor):
                    init = init()
                init = torch.as_tensor(init)
                if constraint is not constraints.real and not bool(constraint.check(init).all()):
                    raise ValueError(
                        f"PyroParam '{self._pyro_get_fullname(name)}': initial value of shape "
                        f"{tuple(init.shape)} violates its constraint {constraint}"
                    )
                unconstrained = biject_to(constraint).inv(init.detach()).clone()
            self._pyro_params[name] = (constraint, event_dim)
            super().__setattr__(name + "_unconstrained", torch.nn.Parameter(unconstrained))
        elif isinstance(value, PyroSample):
            self._pyro_drop(name)
            self._pyro_samples[name] = value.prior
        elif isinstance(value, torch.nn.Parameter):
            self._pyro_drop(name)
            super().__setattr__(name, value)
        elif isinstance(value, torch.Tensor) and name in self.__dict__.get("_pyro_params", ()):
            # assigning a tensor to a PyroParam sets its value in place
            constraint, _ = self._pyro_params[name]
            with torch.no_grad():
                self._parameters[name + "_unconstrained"].copy_(
                    biject_to(constraint).inv(value.detach())
                )
        else:
            super().__setattr__(name, value)

    def _pyro_drop(self, name):
        """Forget any earlier meaning of attribute ``name`` (and its store entry)."""
        if "_pyro_params" not in self.__dict__:
            return
        try:
            delattr(self, name)
        except AttributeError:
            pass

    def __delattr__(self, name):
        if name in self._pyro_params:
            del self._pyro_params[name]
            del self._parameters[name + "_unconstrained"]
            self._pyro_forget(name)
        elif name in self._pyro_samples:
            del self._pyro_samples[name]
        elif name in self._parameters:
            del self._parameters[name]
            self._pyro_forget(name)
        elif name in self._modules:
            del self._modules[name]
            prefix = self._pyro_get_fullname(name)
            for key in list(_PYRO_PARAM_STORE.keys()):
                if key.startswith(prefix + ".") or key.startswith(prefix + "$$$"):
                    del _PYRO_PARAM_STORE[key]
        else:
            super().__delattr__(name)

    def _pyro_forget(self, name):
        fullname = self._pyro_get_fullname(name)
        if fullname in _PYRO_PARAM_STORE:
            del _PYRO_PARAM_STORE[fullname]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pyro_context"] = _Context()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        # Children are unpickled before their parent, each with a fresh context; the
        # parent, restored last, hands its context down again.
        self._pyro_set_supermodule(self._pyro_name, self._pyro_context)


def pyro_method(fn):
    """Decorate a method of a :class:`PyroModule` other than ``forward`` that reads
    Pyro attributes, so that its sites are named and sampled once per call.

    Example::

        >>> import probpl.distributions as dist
        >>> from probpl.nn import PyroModule, PyroSample, pyro_method
        >>> class M(PyroModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.x = PyroSample(dist.Normal(0., 1.))
        ...     @pyro_method
        ...     def twice(self):
        ...         return self.x + self.x  # one sample site, read twice
    """

    @functools.wraps(fn)
    def cached_fn(self, *args, **kwargs):
        with self._pyro_context:
            return fn(self, *args, **kwargs)

    return cached_fn


def to_pyro_module_(m, recurse=True):
    """Turn a ``torch.nn.Module`` instance (and, with ``recurse``, its children) into
    a :class:`PyroModule` in place, keeping its parameters.

    :param torch.nn.Module m: the module.
    :param bool recurse: convert the children too.
    """
    if not isinstance(m, torch.nn.Module):
        raise TypeError(f"to_pyro_module_ expects an nn.Module instance, got {type(m).__name__}")
    if not isinstance(m, PyroModule):
        m.__class__ = PyroModule[type(m)]
        object.__setattr__(m, "_pyro_name", "")
        object.__setattr__(m, "_pyro_context", _Context())
        object.__setattr__(m, "_pyro_params", OrderedDict())
        object.__setattr__(m, "_pyro_samples", OrderedDict())
    if recurse:
        for name, child in list(m._modules.items()):
            if child is not None:
                to_pyro_module_(child, recurse=True)
                m.add_module(name, child)
    return m


def clear(mod):
    """Remove every PyroParam, parameter and child of ``mod``, and their store entries."""
    for name in list(mod._pyro_params) + list(mod._parameters) + list(mod._modules):
        delattr(mod, name)


class PyroModuleList(torch.nn.ModuleList, PyroModule):
    """``nn.ModuleList`` whose PyroModule members are named by their index."""

    def __init__(self, modules=None):
        super().__init__(modules)


_PyroModuleMeta._mixins[torch.nn.ModuleList] = PyroModuleList

__all__ = [
    "PyroModule", "PyroModuleList", "PyroParam", "PyroSample", "clear", "pyro_method",
    "to_pyro_module_",
]
