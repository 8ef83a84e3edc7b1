"""Compiled ELBOs: ``JitTrace_ELBO``, ``JitTraceMeanField_ELBO`` and
``JitTraceGraph_ELBO``.

The first step for each model, guide and argument shapes runs eagerly, with
every check, and records which parameters it touches. Later steps run model,
guide and the loss arithmetic as one ``torch.compile``-d function of the
arguments (validation off, no handlers from outside visible to it), so a step
costs a few fused kernels plus the backward pass instead of hundreds of small
eager operations and the Python around them. Python control flow that depends
on tensor values, or code the compiler cannot follow, makes ``torch.compile``
split the function or fall back to eager execution: results stay correct, only
the speed-up shrinks. ``JitTraceGraph_ELBO`` with a decaying-average baseline
updates the param store inside the loss, which the compiler cannot capture, so
it gains least.

Compilation takes seconds (more on the first use in a fresh process, while
the compiler's caches warm up), so these pay off over long runs of small or
medium models. Only ``loss_and_grads`` (what :class:`~probpl.infer.svi.SVI`
calls) is compiled; ``loss`` and ``differentiable_loss`` run eagerly. Random
draws inside compiled code come from the compiler's own generator, seeded
from torch's, so runs are reproducible but differ from eager runs.
"""

import warnings

import torch

from probpl.infer.elbo import validation_off
from probpl.infer.trace_elbo import Trace_ELBO, _to_float, check_finite
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
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


class _CompiledLossAndGrads:
    """Mixin compiling ``_loss_and_surrogate`` of a Trace_ELBO subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.vectorize_particles:
            raise ValueError(f"{type(self).__name__} does not support vectorize_particles; "
                             "use the eager ELBO")
        self._compiled = {}
        self._param_names = {}

    def _compile(self, model, guide):
        key = (id(model), id(guide))
        fn = self._compiled.get(key)
        if fn is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import torch._inductor.compile_fx  # noqa: F401

            def terms(args, kwargs):
                loss, surrogate, _ = self._loss_and_surrogate(model, guide, args, kwargs)
                return loss, surrogate

            fn = self._compiled[key] = torch.compile(terms, **(self.jit_options or {}))
        return fn

    def loss_and_grads(self, model, guide, *args, **kwargs):
        key = self._validation_key(model, guide, args, kwargs)
        names = self._param_names.get(key)
        if names is None:
            with _ParamNames() as recorder:
                loss = super().loss_and_grads(model, guide, *args, **kwargs)
            self._param_names[key] = list(recorder.names)
            self._validated.add(key)
            return loss
        fn = self._compile(model, guide)
        with block_messengers(lambda h: True), validation_off(), warnings.catch_warnings():
            # The compiler's own imports raise deprecation warnings on first use.
            warnings.simplefilter("ignore", DeprecationWarning)
            loss, surrogate = fn(args, kwargs)
        # Announce the parameters to handlers outside (SVI updates what it sees).
        for name in names:
            param(name)
        value = _to_float(loss)
        if value != value or value in (float("inf"), float("-inf")):
            # Re-run eagerly with checks on to name the offending site.
            self._validated.discard(key)
            with torch.no_grad():
                loss, _, last = self._loss_and_surrogate(model, guide, args, kwargs)
            check_finite(value, last)
        if isinstance(surrogate, torch.Tensor) and surrogate.requires_grad:
            surrogate.backward(retain_graph=self.retain_graph)
        return value


class JitTrace_ELBO(_CompiledLossAndGrads, Trace_ELBO):
    """:class:`~probpl.infer.trace_elbo.Trace_ELBO` with a compiled step (see the module
    description). ``jit_options`` are passed to ``torch.compile``.

    Example::

        >>> from probpl.infer.jit_elbo import JitTrace_ELBO
        >>> elbo = JitTrace_ELBO(jit_options={"dynamic": False})
    """


class JitTraceMeanField_ELBO(_CompiledLossAndGrads, TraceMeanField_ELBO):
    """:class:`~probpl.infer.trace_mean_field_elbo.TraceMeanField_ELBO` with a compiled step."""


class JitTraceGraph_ELBO(_CompiledLossAndGrads, TraceGraph_ELBO):
    """:class:`~probpl.infer.tracegraph_elbo.TraceGraph_ELBO` with a compiled step."""
