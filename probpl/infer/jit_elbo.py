"""Recorded ELBOs: ``JitTrace_ELBO``, ``JitTraceMeanField_ELBO`` and
``JitTraceGraph_ELBO``.

The first step for each model, guide and argument shapes runs eagerly, with
every check, and notes which parameters it reads. The second step records the
whole step once: guide, model, log-densities, the ELBO arithmetic *and* the
backward pass, as one graph of tensor operations whose inputs are the
parameters' unconstrained leaf tensors and the tensor arguments and whose
outputs are the loss and the gradients (``make_fx`` records it, including
the operations autograd runs, then ``torch.jit.trace`` and ``torch.jit.freeze``
turn it into a TorchScript function). Every later step runs that function
without autograd, handlers, distribution objects or validation, and writes the
gradients into ``.grad`` as ``backward()`` would. Random draws (``randn``,
``randperm`` of subsampling plates) are operations in the graph, so each step
draws afresh. The recording is checked against autograd twice, at the same
random draws: when it is made, and on the next step, at the updated
parameters (a value baked in by mistake would differ by then); if a check
fails the step falls back to a traced forward pass with an autograd backward
pass (``jit_options={"compiler": "trace_forward"}`` asks for that directly).

With ``vectorize_particles=True`` the particles are drawn along the extra
plate left of the model's plates, as in the eager ELBO, inside the recorded
graph: one run of the recorded function draws and evaluates all of them. The
first (eager) step settles ``max_plate_nesting`` when it was not given.

Like Pyro's ``JitTrace_ELBO``, this assumes the model and guide are *static*:
for given argument shapes the same sites run in the same order with the same
distributions, and no Python control flow depends on tensor values (values
read out of tensors are baked into the graph). Non-tensor arguments are baked
in too; new argument shapes, dtypes or non-tensor values, or new parameter
tensors (a cleared or reloaded param store) start again with an eager step and
a new recording. What cannot be recorded (a closed-over tensor that requires
grad, a baseline that writes the param store inside the loss) runs eagerly,
with a warning saying why.

When to use which (``benchmarks/bench_svi.py``, CPU, one thread, ratios to
Pyro 1.9.2's ``Trace_ELBO`` measured side by side): on small models, where
Python overhead and autograd bookkeeping dominate, the recorded step costs a
quarter to a third of the eager one (tiny model with ``AutoNormal``: about
0.1 of Pyro's step against about 0.35 for the eager ``Trace_ELBO``); on
regression with N=10,000 the arithmetic dominates, yet the recorded step
still costs about a third of the eager one. Recording takes 0.1-0.5 s per
model and argument shapes, plus about 2 s and 100 MiB once per process for
importing the recorder. Prefer ``JitTrace_ELBO`` for runs of more than a few
thousand steps of a static model; prefer the eager ELBO for dynamic models,
debugging, short runs, or where the per-process import matters.

``jit_options={"compiler": "compile", ...}`` uses ``torch.compile`` on the
forward pass instead (other options go to ``torch.compile``). On the tiny
model it compiled for about 26 s and stepped in 0.91 ms (mean-field guide) and
3.1 ms (``AutoNormal``, split into many graphs), against 0.51 and 0.41 ms for
the recorded step; it is kept for code the recorder cannot follow.
``jit_options={"compiler": "inductor", ...}`` compiles the recorded graph
(forward and backward passes) with inductor instead of TorchScript (other
options patch ``torch._inductor.config``), fusing its elementwise operations
into generated kernels; random operations keep torch's generator, so the
draws are the eager ELBO's. It pays where elementwise work is a good share of
the step: on the MLP VAE of ``benchmarks/bench_vae.py`` (784-400-20, batch
256, modules registered with ``probpl.module``) a step costs about 0.66 of
Pyro's ``Trace_ELBO`` step against about 0.76 for the eager ``Trace_ELBO``,
after about 13 s of compilation in a fresh process (about 4 s with a warm
inductor cache). Other ``jit_options`` go to ``torch.jit.trace``. Only
``loss_and_grads`` (what :class:`~probpl.infer.svi.SVI` calls) is recorded;
``loss`` and ``differentiable_loss`` run eagerly.
"""

import importlib
import os
import warnings

import torch

from probpl.infer.elbo import validation_off
from probpl.infer.svi import _ParamCapture
from probpl.infer.trace_elbo import Trace_ELBO, check_finite
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO
from probpl.params import _PYRO_PARAM_STORE
from probpl.poutine.messenger import block_messengers
from probpl.poutine.runtime import _PYRO_STACK
from probpl.primitives import param

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    it touches and, once recorded, the compiled step."""

    __slots__ = ("names", "params", "frozen", "grad_args", "fn", "mode", "used", "verify")

    def __init__(self, names, params, grad_args):
        self.names = names  # {param name: None}, in order of first use
        self.params = params  # their unconstrained tensors
        self.frozen = tuple(not p.requires_grad for p in params)
        self.grad_args = grad_args  # positions of tensor arguments that require grad
        self.fn = None  # the recorded step
        self.mode = None  # "trace", "trace_forward", "compile" or "eager"
        self.used = ()  # the gradient targets whose gradients ``fn`` returns
        self.verify = False  # compare the next recorded step with autograd


def _rng_state():
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return torch.get_rng_state(), cuda


def _set_rng_state(state):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _same(outputs, reference, scaled=False):
    """Whether the recorded outputs match autograd's. ``scaled``: rounding
    errors are judged against each tensor's largest value (generated kernels
    reorder the sums of large reductions)."""
    if len(outputs) != len(reference):
        return False
    for a, b in zip(outputs, reference):
        if a.shape != b.shape:
            return False
        atol = 1e-6
        if scaled and b.numel():
            atol += 1e-5 * float(b.detach().abs().max())
        if not torch.allclose(a, b, rtol=1e-4, atol=atol, equal_nan=True):
            return False
    return True


def _check_constants(gm, inputs):
    """Refuse a recording that holds a tensor requiring grad (or an input's
    storage) as a constant: its gradient would be lost."""
    ptrs = {t.untyped_storage().data_ptr() for t in inputs}
    for value in list(gm.buffers()) + list(gm.parameters()):
        if value.requires_grad or value.untyped_storage().data_ptr() in ptrs:
            raise RuntimeError(f"a tensor that requires grad was recorded as a constant "
                               f"({tuple(value.shape)})")


def _trace_with_gradients(body, params, tensors, options):
    """Record ``body``, backward pass included, as one TorchScript function to
    run without autograd. ``torch.jit.trace`` alone cannot follow autograd into
    the tensors it saved for backward, so the operations are first recorded at
    the ATen level with ``make_fx``, whose graph is then traced and frozen."""
    from torch.fx.experimental.proxy_tensor import make_fx

    gm = make_fx(body)(params, tensors)
    _check_constants(gm, params + tensors)
    with torch.no_grad():
        fn = torch.jit.trace(gm, (params, tensors), **options)
    state = _rng_state()
    try:
        # Constants inlined and folded: fewer operations per call.
        frozen = torch.jit.freeze(fn.eval())
        # TorchScript's graph optimizations can reject a frozen graph when it
        # first runs (seen with the matrix products of ``nn.Linear`` modules,
        # whose weights are recorded as inputs); the unfrozen graph runs then.
        # Two runs: the graph executor optimizes on the second.
        with torch.no_grad():
            for _ in range(2):
                frozen(params, tensors)
                _set_rng_state(state)
        return frozen
    except Exception:
        _set_rng_state(state)
        return fn


def _compile_with_gradients(body, params, tensors, options):
    """Record ``body``, backward pass included, as in
    :func:`_trace_with_gradients`, and compile the recorded ATen graph with
    inductor, which fuses its elementwise operations into generated kernels.
    Random operations keep torch's generator (``fallback_random``), so a step
    draws what the eager ELBO draws at the same seed."""
    from torch.fx.experimental.proxy_tensor import make_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        inductor = importlib.import_module("torch._inductor")
        config = importlib.import_module("torch._inductor.config")
    count = len(params)

    def flat(*inputs):
        return body(inputs[:count], inputs[count:])

    gm = make_fx(flat)(*params, *tensors)
    _check_constants(gm, params + tensors)
    with torch.no_grad(), config.patch({"fallback_random": True, **options}):
        compiled = inductor.compile(gm, [t.detach() for t in params + tensors])

    def fn(params, tensors):
        return compiled(*params, *tensors)

    return fn


def _announce(names):
    """Tell the handlers outside that the step read these parameters (SVI
    optimises what it hears of). SVI's own listener only needs the names."""
    stack = _PYRO_STACK
    if all(type(h) is _ParamCapture for h in stack):
        for h in stack:
            h.names.update(names)
        return
    for name in names:
        param(name)


def _apply_gradients(targets, used, grads):
    """Accumulate ``grads`` into ``.grad`` as ``backward()`` would, giving each
    parameter a tensor of its own (recorded outputs may be views or aliases)."""
    seen = set()
    for i, g in zip(used, grads):
        ptr = g.untyped_storage().data_ptr()
        if g._base is not None or ptr in seen or not g.is_contiguous():
            g = g.clone(memory_format=torch.contiguous_format)
        seen.add(ptr)
        t = targets[i]
        if t.grad is None:
            t.grad = g
        else:
            t.grad.add_(g)


class _CompiledLossAndGrads:
    """Mixin recording the step of a Trace_ELBO subclass."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = dict(self.jit_options or {})
        self._compiler = options.pop("compiler", "trace")
        if self._compiler not in ("trace", "trace_forward", "compile", "inductor"):
            raise ValueError("jit_options['compiler'] must be 'trace', 'trace_forward', "
                             f"'compile' or 'inductor', got {self._compiler!r}")
        self._compiler_options = options
        self._entries = {}

    # ----- recording -----

    def _body(self, model, guide, template, grad_args, with_grads, reference=None):
        """The function to record: ``(params, tensors) -> (loss, *gradients)``, or
        ``-> (loss, surrogate)`` when the backward pass is left to autograd.
        ``reference`` receives ``[used, outputs]`` of the run."""

        def body(params, tensors):
            args, kwargs = _rebuild(template, iter(tensors))
            loss, surrogate, _ = self._loss_and_surrogate(model, guide, args, kwargs)
            loss = _as_tensor(loss).detach()
            if not with_grads:
                return loss, _as_tensor(surrogate)
            targets = params + tuple(tensors[i] for i in grad_args)
            live = [i for i, t in enumerate(targets) if t.requires_grad]
            grads = [None] * len(targets)
            if isinstance(surrogate, torch.Tensor) and surrogate.requires_grad and live:
                found = torch.autograd.grad(
                    surrogate, [targets[i] for i in live], allow_unused=True
                )
                for i, g in zip(live, found):
                    grads[i] = g
            used = tuple(i for i, g in enumerate(grads) if g is not None)
            out = (loss,) + tuple(grads[i] for i in used)
            if reference is not None:
                reference[:] = [used, out]
            return out

        return body

    def _trace(self, body, params, tensors, with_grads, inductor=False):
        """``(traced function, None)`` or ``(None, reason)``."""
        store = _PYRO_PARAM_STORE._params
        before = dict(store)
        options = {"check_trace": False}
        if self._compiler != "inductor":  # inductor's options are its config's
            options.update(self._compiler_options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if inductor:
                    fn = _compile_with_gradients(body, params, tensors, self._compiler_options)
                elif with_grads:
                    fn = _trace_with_gradients(body, params, tensors, options)
                else:
                    fn = torch.jit.trace(body, (params, tensors), **options)
            except Exception as e:  # untraceable code: keep the step eager
                text = str(e).splitlines()[0] if str(e) else ""
                fn, reason = None, f"{type(e).__name__}: {text}"
        changed = [k for k, v in store.items() if before.get(k) is not v]
        if changed:
            return None, f"the loss writes the param store ({', '.join(changed)})"
        if fn is None:
            return None, reason
        if not self.ignore_jit_warnings:
            for w in caught:
                # Only values read out of tensors matter: shapes are part of the
                # key, and constants from Python numbers are what static means.
                # probpl's own code reads only shapes (e.g. plate sizes taken from
                # traced ``x.shape[0]``), so only the user's reads are reported.
                if (
                    issubclass(w.category, torch.jit.TracerWarning)
                    and str(w.message).startswith("Converting a tensor to a Python")
                    and not w.filename.startswith(_PACKAGE_DIR)
                ):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return fn, None

    def _record(self, entry, model, guide, template, params, tensors):
        """Record the step and run it once: returns ``_run``'s result, or None
        when the step must stay eager (with a warning saying why)."""
        mode = entry.mode or self._compiler
        if mode == "compile":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                importlib.import_module("torch._inductor.compile_fx")
            body = self._body(model, guide, template, entry.grad_args, False)
            entry.fn, entry.mode = torch.compile(body, **self._compiler_options), mode
            return self._run(entry, params, tensors)
        state = _rng_state()
        reason = None
        if mode in ("trace", "inductor"):
            # Forward and backward in one recording, checked against the autograd
            # gradients computed while recording (same random draws), and again
            # on the next step, at new parameter values.
            reference = []
            body = self._body(model, guide, template, entry.grad_args, True, reference)
            fn, reason = self._trace(body, params, tensors, True, mode == "inductor")
            if fn is not None:
                entry.fn, entry.mode, entry.used = fn, mode, reference[0]
                _set_rng_state(state)
                result = self._run(entry, params, tensors)
                if _same(result[0], reference[1], mode == "inductor"):
                    entry.verify = True
                    return result
                _set_rng_state(state)
            if mode == "inductor":
                warnings.warn(f"{type(self).__name__}: inductor did not compile this step "
                              f"({reason or 'its results differ from autograd'}); "
                              "using TorchScript instead", UserWarning, stacklevel=4)
        if reason is None or not reason.startswith("the loss writes"):
            body = self._body(model, guide, template, entry.grad_args, False)
            fn, reason = self._trace(body, params, tensors, False)
        _set_rng_state(state)
        if fn is None:
            entry.fn, entry.mode = None, "eager"
            warnings.warn(f"{type(self).__name__}: cannot trace this model and guide "
                          f"({reason}); running the eager ELBO instead", UserWarning,
                          stacklevel=4)
            return None
        entry.fn, entry.mode = fn, "trace_forward"
        return self._run(entry, params, tensors)

    def _verify(self, entry, model, guide, template, params, tensors):
        """The first step after recording, checked against autograd at the same
        draws: a value baked into the recording would differ by now."""
        entry.verify = False
        state = _rng_state()
        result = self._run(entry, params, tensors)
        _set_rng_state(state)
        reference = []
        self._body(model, guide, template, entry.grad_args, True, reference)(params, tensors)
        scaled = entry.mode == "inductor"
        if reference[0] == entry.used and _same(result[0], reference[1], scaled):
            return result
        # Record again without the backward pass; this step uses autograd's values.
        entry.fn, entry.mode, entry.used = None, "trace_forward", reference[0]
        return reference[1], result[1]

    def _run(self, entry, params, tensors):
        """``(outputs, gradient targets)`` of one recorded step; no targets when
        the outputs are ``(loss, surrogate)``, to be differentiated by autograd."""
        if entry.mode in ("trace", "inductor"):
            with torch.no_grad():
                out = entry.fn(params, tensors)
            return out, params + tuple(tensors[i] for i in entry.grad_args)
        with warnings.catch_warnings():
            # The compiler's own imports raise deprecation warnings on first use.
            warnings.simplefilter("ignore", DeprecationWarning)
            return entry.fn(params, tensors), None

    # ----- stepping -----

    def loss_and_grads(self, model, guide, *args, **kwargs):
        key = self._validation_key(model, guide, args, kwargs)
        entry = self._entries.get(key)
        if entry is not None and entry.mode == "eager":
            return super().loss_and_grads(model, guide, *args, **kwargs)
        tensors = []
        template = _flatten((args, kwargs), tensors)
        tensors = tuple(tensors)
        grad_args = tuple(i for i, t in enumerate(tensors) if t.requires_grad)
        store = _PYRO_PARAM_STORE._params
        if entry is not None and (
            grad_args != entry.grad_args
            or any(store.get(n) is not p for n, p in zip(entry.names, entry.params))
            or entry.frozen != tuple(not p.requires_grad for p in entry.params)
        ):
            entry = None  # new parameter tensors (a reloaded store): start again
        if entry is None:
            # An eager step, with every check on the first, listening for the
            # parameters; the next step records.
            with _ParamCapture() as recorder:
                loss = super().loss_and_grads(model, guide, *args, **kwargs)
            names = {n: None for n in recorder.names if n in store}
            params = tuple(store[n] for n in names)
            self._entries[key] = _Entry(names, params, grad_args)
            self._validated.add(key)
            return loss
        params = entry.params
        with block_messengers(lambda h: True), validation_off():
            if entry.fn is None:
                result = self._record(entry, model, guide, template, params, tensors)
            elif entry.verify:
                result = self._verify(entry, model, guide, template, params, tensors)
            else:
                result = self._run(entry, params, tensors)
        if result is None:
            return super().loss_and_grads(model, guide, *args, **kwargs)
        out, targets = result
        _announce(entry.names)
        value = out[0].item()
        if value != value or value in (float("inf"), float("-inf")):
            # Re-run eagerly with checks on to name the offending site.
            with torch.no_grad():
                loss, _, last = self._loss_and_surrogate(model, guide, args, kwargs)
            check_finite(value, last)
        if targets is None:
            surrogate = out[1]
            if surrogate.requires_grad:
                surrogate.backward(retain_graph=self.retain_graph)
        else:
            _apply_gradients(targets, entry.used, out[1:])
        return value


class JitTrace_ELBO(_CompiledLossAndGrads, Trace_ELBO):
    """:class:`~probpl.infer.trace_elbo.Trace_ELBO` with a recorded step (see the
    module description). ``jit_options`` are passed to ``torch.jit.trace``, or
    with ``{"compiler": "compile"}`` to ``torch.compile``; with
    ``{"compiler": "inductor"}`` the recorded step is compiled by inductor.

    Example::

        >>> from probpl.infer.jit_elbo import JitTrace_ELBO
        >>> elbo = JitTrace_ELBO(ignore_jit_warnings=True)
    """


class JitTraceMeanField_ELBO(_CompiledLossAndGrads, TraceMeanField_ELBO):
    """:class:`~probpl.infer.trace_mean_field_elbo.TraceMeanField_ELBO` with a recorded step."""


class JitTraceGraph_ELBO(_CompiledLossAndGrads, TraceGraph_ELBO):
    """:class:`~probpl.infer.tracegraph_elbo.TraceGraph_ELBO` with a recorded step
    (a decaying-average baseline updates the param store, so it runs eagerly)."""
