"""The parameter store: named, optimisable tensors shared across model runs.

Each parameter is kept *unconstrained* (a leaf tensor that optimisers update)
together with its constraint; reading it returns the constrained value
``biject_to(constraint)(unconstrained)``. Parameters live on the device and
dtype of their initial value.
"""

import re
import weakref
from contextlib import contextmanager

import torch
from torch.distributions.transforms import Transform

from probpl.distributions import constraints
from probpl.distributions.transforms import (
    AffineTransform,
    ComposeTransform,
    biject_to,
    transform_to,
)


def _bijection(constraint):
    """``biject_to(constraint)``, or ``transform_to`` where no bijection is registered
    (e.g. lower-Cholesky factors), as parameters only need a map onto the set."""
    try:
        return biject_to(constraint)
    except NotImplementedError:
        return transform_to(constraint)


def _drop_identity_parts(transform):
    """``transform`` without its ``AffineTransform(0, 1)`` parts (e.g. the bijection
    onto ``positive`` is ``exp`` then a shift by the lower bound 0): each costs
    two tensor ops per call and leaves the value unchanged."""
    if not isinstance(transform, ComposeTransform):
        return transform
    parts = [
        p for p in transform.parts
        if not (isinstance(p, AffineTransform) and isinstance(p.loc, (int, float))
                and isinstance(p.scale, (int, float)) and p.loc == 0 and p.scale == 1)
    ]
    if len(parts) == len(transform.parts):
        return transform
    return parts[0] if len(parts) == 1 else ComposeTransform(parts)


def _forward(transform):
    """The function applying ``transform`` to a stored parameter: without identity
    parts, and its ``_call`` when calling the transform would only forward to it
    (no cache), saving a call per read."""
    transform = _drop_identity_parts(transform)
    if transform._cache_size == 0 and type(transform).__call__ is Transform.__call__:
        return transform._call
    return transform


class ParamStoreDict:
    """A dict-like store of parameters by name (see :func:`probpl.param`)."""

    def __init__(self):
        self._params = {}  # name -> unconstrained leaf tensor
        self._constraints = {}  # name -> constraint
        self._event_dims = {}
        self._param_to_name = {}  # id(unconstrained tensor) -> name
        self._transforms = {}  # name -> bijection of its constraint (looked up once)

    # ----- dict interface (constrained values) -----

    def clear(self):
        self._params.clear()
        self._constraints.clear()
        self._event_dims.clear()
        self._param_to_name = {}  # id(unconstrained tensor) -> name
        self._transforms.clear()

    def __len__(self):
        return len(self._params)

    def __contains__(self, name):
        return name in self._params

    def __iter__(self):
        return iter(self.keys())

    def keys(self):
        return self._params.keys()

    def values(self):
        return [self[k] for k in self._params]

    def items(self):
        """``(name, constrained value)`` pairs."""
        return [(k, self[k]) for k in self._params]

    def named_parameters(self):
        """``(name, unconstrained leaf tensor)`` pairs: what optimisers update."""
        return self._params.items()

    def get_all_param_names(self):
        return list(self._params)

    def __getitem__(self, name):
        unconstrained = self._params[name]
        return self._constrain(name, unconstrained)

    def __setitem__(self, name, new_constrained_value):
        constraint = self._constraints.get(name, constraints.real)
        self._store(name, new_constrained_value, constraint)

    def __delitem__(self, name):
        unconstrained = self._params.pop(name)
        self._constraints.pop(name, None)
        self._event_dims.pop(name, None)
        self._transforms.pop(name, None)
        self._param_to_name.pop(id(unconstrained), None)

    def _constrain(self, name, unconstrained):
        transform = self._transforms.get(name)
        if transform is None:
            constraint = self._constraints[name]
            if constraint is constraints.real:
                return unconstrained
            transform = self._transforms[name] = _forward(_bijection(constraint))
        value = transform(unconstrained)
        value.unconstrained = weakref.ref(unconstrained)
        return value

    def _store(self, name, constrained_value, constraint):
        with torch.no_grad():
            if constraint is constraints.real and constrained_value.is_leaf:
                # Keep the caller's tensor (e.g. an nn.Module's Parameter) so both share it.
                unconstrained = constrained_value
            else:
                unconstrained = _bijection(constraint).inv(constrained_value).detach().clone()
                unconstrained = unconstrained.contiguous()
        self.adopt(name, unconstrained, constraint)

    # ----- the param statement -----

    def setdefault(self, name, init_constrained_value, constraint=constraints.real):
        """The constrained value of ``name``, creating it from the initial value if absent."""
        if name not in self._params:
            if callable(init_constrained_value) and not isinstance(
                init_constrained_value, torch.Tensor
            ):
                init_constrained_value = init_constrained_value()
            if not isinstance(init_constrained_value, torch.Tensor):
                init_constrained_value = torch.as_tensor(
                    init_constrained_value, dtype=torch.get_default_dtype()
                )
            self._check_init(name, init_constrained_value, constraint)
            self._store(name, init_constrained_value, constraint)
        return self[name]

    def _check_init(self, name, value, constraint):
        if torch.distributions.Distribution._validate_args and constraint is not constraints.real:
            ok = constraint.check(value)
            if not bool(ok.all()):
                raise ValueError(
                    f"param '{name}': initial value of shape {tuple(value.shape)} violates its "
                    f"constraint {constraint}"
                )

    def get_param(self, name, init_tensor=None, constraint=None, event_dim=None):
        """Get ``name``, creating it from ``init_tensor`` when absent."""
        if constraint is None:
            unconstrained = self._params.get(name)
            if unconstrained is not None:  # the common case: a read
                return self._constrain(name, unconstrained)
        if name not in self._params:
            if init_tensor is None:
                raise KeyError(
                    f"param '{name}' does not exist yet and no initial value was given"
                )
            if constraint is None:
                constraint = constraints.real
            self.setdefault(name, init_tensor, constraint)
            if event_dim is not None:
                self._event_dims[name] = event_dim
            return self[name]
        if constraint is not None and not _same_constraint(constraint, self._constraints[name]):
            raise ValueError(
                f"param '{name}' was created with constraint {self._constraints[name]} and is "
                f"now re-declared with constraint {constraint}; use a different name or clear "
                "the param store"
            )
        return self[name]

    def adopt(self, name, unconstrained, constraint=constraints.real, event_dim=None):
        """Store an existing unconstrained leaf tensor (e.g. a module's Parameter)
        under ``name`` without copying it, replacing any previous entry."""
        unconstrained.requires_grad_(True)
        old = self._params.get(name)
        if old is not None:
            self._param_to_name.pop(id(old), None)
        self._params[name] = unconstrained
        self._constraints[name] = constraint
        self._transforms.pop(name, None)
        if event_dim is not None:
            self._event_dims[name] = event_dim
        self._param_to_name[id(unconstrained)] = name

    def param_name(self, p):
        """The name of an unconstrained parameter tensor, or None."""
        return self._param_to_name.get(id(p))

    def match(self, name):
        """``{name: constrained value}`` of params whose names fully match the regex."""
        pattern = re.compile(name)
        return {k: self[k] for k in self._params if pattern.fullmatch(k)}

    def get_state(self):
        """A picklable snapshot: unconstrained values and constraints."""
        return {
            "params": {k: v.detach().clone() for k, v in self._params.items()},
            "constraints": dict(self._constraints),
        }

    def set_state(self, state):
        """Restore a snapshot made by :meth:`get_state` (replaces what is stored)."""
        self.clear()
        for name, unconstrained in state["params"].items():
            constraint = state["constraints"].get(name, constraints.real)
            self.adopt(name, unconstrained.detach().clone(), constraint)

    def save(self, filename):
        """Save the store to ``filename`` with ``torch.save``."""
        torch.save(self.get_state(), filename)

    def load(self, filename, map_location=None):
        """Load a store saved by :meth:`save`, optionally onto another device."""
        state = torch.load(filename, map_location=map_location, weights_only=False)
        self.set_state(state)

    @contextmanager
    def scope(self, state=None):
        """Temporarily use a separate set of parameters."""
        saved = self.get_state()
        if state is not None:
            self.set_state(state)
        else:
            self.clear()
        try:
            yield self
        finally:
            self.set_state(saved)


def _same_constraint(c1, c2):
    if c1 is c2:
        return True
    if type(c1) is not type(c2):
        return False
    return vars(c1) == vars(c2) if hasattr(c1, "__dict__") else c1 == c2


_PYRO_PARAM_STORE = ParamStoreDict()
