"""Compiled ELBOs: ``JitTrace_ELBO``, ``JitTraceMeanField_ELBO`` and
``JitTraceGraph_ELBO``.

The first step for each model, guide and argument shapes runs eagerly, with
every check, and records which parameters it touches. The second step records
the whole loss-and-surrogate computation (guide, model, log-densities, the ELBO
arithmetic) once with ``torch.jit.trace``, taking the parameters' unconstrained
leaf tensors and the tensor arguments as explicit inputs; every later step
replays that graph (a few dozen tensor ops, no handlers, no distribution
objects, no validation) and then runs one backward pass. Random draws are
recorded as operations, so each step draws afresh.

Like Pyro's ``JitTrace_ELBO``, this assumes that the model and guide are
*static*: for a given set of argument shapes, the same sites run in the same
order with the same distributions, and no Python control flow depends on
tensor values (the tracer warns where a tensor became a Python number, unless
``ignore_jit_warnings=True``). Non-tensor arguments are baked into the graph;
a change of argument shapes, dtypes or non-tensor values, or of the parameter
tensors themselves (a cleared or reloaded param store), records a new graph.
Code that cannot be traced (a closed-over tensor that requires grad, a
baseline that updates the param store inside the loss) runs eagerly, with a
warning saying why.

Which ELBO to use (``benchmarks/bench_svi.py``, CPU, one thread): the traced
step costs a fraction of the eager one on small models, where Python overhead
dominates (tiny model with ``AutoNormal``: about half the eager time), and
recording takes well under a second; on large tensors (regression with N=10,000)
the arithmetic dominates and the two are close. Prefer ``JitTrace_ELBO`` for
long runs of models with static structure, and the eager ELBO for dynamic
models, debugging, or a few hundred steps.

``jit_options={"compiler": "compile", ...}`` uses ``torch.compile`` instead
(other options go to ``torch.compile``): it takes seconds to tens of seconds
to compile, is slower than the traced graph on these models, and splits
``AutoNormal`` guides into many graphs; it is kept for models the tracer
cannot follow. Other ``jit_options`` go to ``torch.jit.trace``.
Only ``loss_and_grads`` (what :class:`~probpl.infer.svi.SVI` calls) is
compiled; ``loss`` and ``differentiable_loss`` run eagerly.
"""

import importlib
import warnings

import torch

from probpl.infer.elbo import validation_off
from probpl.infer.trace_elbo import Trace_ELBO, _to_float, check_finite
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
from probpl.params import _PYRO_PARAM_STORE
from probpl.poutine.messenger import Messenger, block_messengers
from probpl.primitives import param


class _ParamNames(Messenger):
    def __init__(self):
        super().__init__()
        self.names = {}

    def _process_message(self, msg):
        pass

    def _postprocess_message(self, msg):
        if msg["type"] == "param":
            self.names[msg["name"]] = None


_TENSOR = object()  # placeholder for a tensor argument in an argument template


def _flatten(obj, out):
    """``obj`` with its tensors (inside tuples, lists and dicts) replaced by a
    placeholder, appending the tensors to ``out``."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
        return _TENSOR
    kind = type(obj)
    if kind is tuple or kind is list:
        return kind(_flatten(x, out) for x in obj)
    if kind is dict:
        return {k: _flatten(v, out) for k, v in obj.items()}
    return obj


def _rebuild(template, tensors):
    if template is _TENSOR:
        return next(tensors)
    kind = type(template)
    if kind is tuple or kind is list:
        return kind(_rebuild(x, tensors) for x in template)
    if kind is dict:
        return {k: _rebuild(v, tensors) for k, v in template.items()}
    return template


def _as_tensor(x):
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x))


class _Entry:
    """What one (model, guide, argument shapes) key has learnt: the parameters
    it touches and, once recorded, the compiled step (``None``: run eagerly)."""

    __slots__ = ("names", "params", "fn", "eager")

    def __init__(self, names):
        self.names = names
        self.params = None
        self.fn = None
        self.eager = False


class _CompiledLossAndGrads:
    """Mixin compiling ``_loss_and_surrogate`` of a Trace_ELBO subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.vectorize_particles:
            raise ValueError(f"{type(self).__name__} does not support vectorize_particles; "
                             "use the eager ELBO")
        options = dict(self.jit_options or {})
        self._compiler = options.pop("compiler", "trace")
        if self._compiler not in ("trace", "compile"):
            raise ValueError(f"jit_options['compiler'] must be 'trace' or 'compile', got "
                             f"{self._compiler!r}")
        self._compiler_options = options
        self._entries = {}

    # ----- recording -----

    def _body(self, model, guide, template):
        def body(params, tensors):
            args, kwargs = _rebuild(template, iter(tensors))
            loss, surrogate, _ = self._loss_and_surrogate(model, guide, args, kwargs)
            return _as_tensor(loss), _as_tensor(surrogate)

        return body

    def _record(self, entry, model, guide, template, params, tensors):
        """Fill ``entry.fn``, or mark it eager (with a warning saying why)."""
        body = self._body(model, guide, template)
        if self._compiler == "compile":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                importlib.import_module("torch._inductor.compile_fx")
            entry.fn = torch.compile(body, **self._compiler_options)
            return
        store = _PYRO_PARAM_STORE._params
        before = dict(store)
        options = {"check_trace": False, **self._compiler_options}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fn = torch.jit.trace(body, (params, tensors), **options)
            except Exception as e:  # untraceable code: keep the step eager
                fn = None
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        changed = [k for k, v in store.items() if before.get(k) is not v]
        if fn is not None and changed:
            fn, reason = None, f"the loss writes the param store ({', '.join(changed)})"
        if fn is None:
            entry.eager = True
            warnings.warn(f"{type(self).__name__}: cannot trace this model and guide "
                          f"({reason}); running the eager ELBO instead", UserWarning,
                          stacklevel=4)
            return
        if not self.ignore_jit_warnings:
            for w in caught:
                # Constants made from Python numbers are what static structure means.
                if issubclass(w.category, torch.jit.TracerWarning) and not str(
                    w.message
                ).startswith("torch.tensor results are registered as constants"):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        entry.fn = fn

    # ----- stepping -----

    def loss_and_grads(self, model, guide, *args, **kwargs):
        key = self._validation_key(model, guide, args, kwargs)
        entry = self._entries.get(key)
        if entry is None:
            # First step: eager, with every check, listening for the parameters.
            with _ParamNames() as recorder:
                loss = super().loss_and_grads(model, guide, *args, **kwargs)
            self._entries[key] = _Entry(list(recorder.names))
            self._validated.add(key)
            return loss
        if entry.eager:
            return super().loss_and_grads(model, guide, *args, **kwargs)
        store = _PYRO_PARAM_STORE._params
        names = entry.names
        params = entry.params
        if params is None or any(store.get(n) is not p for n, p in zip(names, params)):
            entry.fn = None
            params = entry.params = tuple(store[n] for n in names if n in store)
        tensors = []
        template = _flatten((args, kwargs), tensors)
        tensors = tuple(tensors)
        with block_messengers(lambda h: True), validation_off():
            if entry.fn is None:
                self._record(entry, model, guide, template, params, tensors)
                if entry.eager:
                    return super().loss_and_grads(model, guide, *args, **kwargs)
            with warnings.catch_warnings():
                # The compiler's own imports raise deprecation warnings on first use.
                warnings.simplefilter("ignore", DeprecationWarning)
                loss, surrogate = entry.fn(params, tensors)
        # Announce the parameters to handlers outside (SVI updates what it sees).
        for name in names:
            param(name)
        value = _to_float(loss)
        if value != value or value in (float("inf"), float("-inf")):
            # Re-run eagerly with checks on to name the offending site.
            with torch.no_grad():
                loss, _, last = self._loss_and_surrogate(model, guide, args, kwargs)
            check_finite(value, last)
        if surrogate.requires_grad:
            surrogate.backward(retain_graph=self.retain_graph)
        return value


class JitTrace_ELBO(_CompiledLossAndGrads, Trace_ELBO):
    """:class:`~probpl.infer.trace_elbo.Trace_ELBO` with a recorded step (see the
    module description). ``jit_options`` are passed to ``torch.jit.trace``, or
    with ``{"compiler": "compile"}`` to ``torch.compile``.

    Example::

        >>> from probpl.infer.jit_elbo import JitTrace_ELBO
        >>> elbo = JitTrace_ELBO(ignore_jit_warnings=True)
    """


class JitTraceMeanField_ELBO(_CompiledLossAndGrads, TraceMeanField_ELBO):
    """:class:`~probpl.infer.trace_mean_field_elbo.TraceMeanField_ELBO` with a recorded step."""


class JitTraceGraph_ELBO(_CompiledLossAndGrads, TraceGraph_ELBO):
    """:class:`~probpl.infer.tracegraph_elbo.TraceGraph_ELBO` with a recorded step
    (a decaying-average baseline updates the param store, so it runs eagerly)."""
