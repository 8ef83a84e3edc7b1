"""Compiling a potential (and the steps built on it) into a lean ATen graph.

A function of tensors is traced once into an ATen graph by recording the operations it
dispatches (a small ``TorchDispatchMode``; ``make_fx`` would do the same but imports the
whole of ``torch._dynamo``, seconds of start-up for every run).  The graph is simplified
(:func:`~probpl.infer.mcmc.simplify.simplify`: no identity arithmetic, no repeated
subexpressions, every value kept bit for bit) and then run by TorchScript (its static
runtime on a CPU), which costs about a microsecond per remaining operation and no Python.

The trace is static: it is only valid for functions whose control flow and shapes do not
depend on the values of their inputs.  The tracer refuses to read a traced value
(``if x > 0``, ``x.item()``), which catches the common violations;
:func:`compile_function` also checks the compiled function against the eager one at
perturbed points before it is used.
"""

import operator
import warnings

import torch

from probpl.infer.mcmc.simplify import simplify

__all__ = ["DataDependentError", "compile_function", "is_compiled", "simplify", "trace_graph"]

_aten = torch.ops.aten


class DataDependentError(RuntimeError):
    """A traced function read the value of a tensor that depends on its inputs."""


# reading a value out of a tensor: fine for constants, fatal for traced values
_READS = {_aten._local_scalar_dense.default, _aten.is_nonzero.default, _aten.equal.default}


def _functional_variant(op):
    # aten.add_.Tensor -> aten.add.Tensor; None when there is none
    name = op._schema.name.split("::")[-1]
    if not name.endswith("_") or name.startswith("_"):
        return None
    packet = getattr(_aten, name[:-1], None)
    overload = op._overloadname
    return None if packet is None else getattr(packet, overload, None)


class _Recorder(torch.utils._python_dispatch.TorchDispatchMode):
    # Records every ATen call (forward and backward alike go through the dispatcher) into
    # an fx graph.  Tensors are matched to graph nodes by identity; a tensor met for the
    # first time is a constant.  In-place updates are recorded as their out-of-place form,
    # after which the mutated tensor stands for the new node.
    def __init__(self, graph, root):
        super().__init__()
        self.graph = graph
        self.root = root
        self.nodes = {}  # id(tensor) -> (tensor, node); holding the tensor keeps ids unique
        self.num_consts = 0

    @classmethod
    def _should_skip_dynamo(cls):
        # otherwise __torch_dispatch__ is wrapped to be skipped by torch.compile, which
        # imports torch._dynamo (seconds) on the first call; nothing here is compiled
        return False

    def bind(self, tensor, node):
        self.nodes[id(tensor)] = (tensor, node)

    def traced(self, x):
        return isinstance(x, torch.Tensor) and id(x) in self.nodes

    def node_of(self, x):
        if not isinstance(x, torch.Tensor):
            return x
        entry = self.nodes.get(id(x))
        if entry is not None:
            return entry[1]
        name = f"_const_{self.num_consts}"
        self.num_consts += 1
        self.root.register_buffer(name, x.detach(), persistent=False)
        node = self.graph.get_attr(name)
        self.bind(x, node)
        return node

    def _aliased(self, tensor):
        if tensor._base is not None:
            return True
        ptr = tensor.untyped_storage().data_ptr()
        return any(t is not tensor and t.untyped_storage().data_ptr() == ptr
                   for t, _ in self.nodes.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _READS and any(self.traced(a) for a in args):
            raise DataDependentError(
                f"{func} reads the value of a traced tensor (data-dependent control flow)")
        if torch.Tag.nondeterministic_seeded in func.tags:
            raise DataDependentError(f"{func} draws random numbers")
        target = func
        if func._schema.is_mutable:
            # recorded out of place; only sound when no other tensor sees the update
            target = _functional_variant(func)
            mutated = args[0] if args else None
            if target is None or not isinstance(mutated, torch.Tensor) or self._aliased(mutated):
                raise DataDependentError(f"cannot record the in-place operation {func}")
        out = func(*args, **kwargs)
        node_args = torch.utils._pytree.tree_map(self.node_of, args)
        node_kwargs = torch.utils._pytree.tree_map(self.node_of, kwargs)
        node = self.graph.call_function(target, node_args, node_kwargs)
        if isinstance(out, torch.Tensor):
            self.bind(out, node)
        elif isinstance(out, (tuple, list)):
            for i, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    self.bind(o, self.graph.call_function(operator.getitem, (node, i)))
        return out


def trace_graph(fn, inputs, functionalize=False):
    """Trace ``fn`` (a function of tensors returning a tuple of tensors) into a functional
    ATen graph by recording the operations it dispatches, gradients included.

    :param bool functionalize: run ``fn`` under ``torch.func.functionalize``, which turns
        in-place updates (of views too) into pure operations; ``fn`` must then take its
        gradients with ``torch.func`` transforms rather than autograd.
    :raises DataDependentError: when ``fn`` reads a value computed from its inputs, draws
        random numbers or makes an in-place update that cannot be recorded.
    """
    graph = torch.fx.Graph()
    root = torch.nn.Module()
    recorder = _Recorder(graph, root)
    args = []
    for i, x in enumerate(inputs):
        # a fresh alias per input so that two equal inputs stay two placeholders
        a = x.detach().view(x.shape)
        recorder.bind(a, graph.placeholder(f"x{i}"))
        args.append(a)
    run = torch.func.functionalize(fn) if functionalize else fn
    with torch.enable_grad(), recorder:
        outputs = run(*args)
    graph.output(tuple(recorder.node_of(o) for o in outputs))
    return torch.fx.GraphModule(root, graph)


def compile_function(build, inputs, check_inputs=()):
    """Trace, simplify and script a function.

    :param callable build: ``functional -> fn``, where ``fn`` is a function of tensors
        returning a tuple of tensors, with control flow and shapes independent of the input
        values; with ``functional=True`` it takes gradients by ``torch.func`` transforms.
        The autograd form is traced first, the functional form (functionalized) when the
        first records an in-place update it cannot represent.
    :param tuple inputs: example inputs.
    :param check_inputs: further input tuples at which the compiled function must agree
        with ``fn``.
    :returns: the compiled function.
    :raises RuntimeError: when tracing fails or a check disagrees.
    """
    # TorchScript runs the traced ATen graph without Python overhead per op; its tracing
    # and deprecation warnings concern this internal use only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn = build(False)
            gm = trace_graph(fn, inputs)
        except DataDependentError as e:
            if "in-place" not in str(e):
                raise
            fn = build(True)
            gm = trace_graph(fn, inputs, functionalize=True)
        static = all(x.device.type == "cpu" for x in inputs)
        gm = simplify(gm, inputs, numbers_as_tensors=static)
        scripted = torch.jit.trace(gm, tuple(inputs), check_trace=False)
        run = (_static_runtime(scripted) if static else None) or scripted.forward
    for args in (tuple(inputs),) + tuple(check_inputs):
        expected = fn(*args)
        got = run(*args)
        for e, g in zip(expected, got):
            if e.shape != g.shape or not torch.allclose(e, g, rtol=1e-4, atol=1e-5,
                                                        equal_nan=True):
                raise RuntimeError("the compiled function disagrees with the eager one: its "
                                   "control flow or shapes depend on the input values")
    return run


def _static_runtime(scripted):
    # On a CPU, TorchScript's static runtime runs the same graph with less overhead per
    # operation (out-of-place kernels writing into buffers planned once and reused across
    # calls, a leaner interpreter): about 1.4x faster on graphs of many small operations.
    # Outputs are fresh tensors on every call.  The graph's buffers are folded in first.
    try:
        frozen = torch.jit.freeze(scripted.eval())
        return torch._C._jit_to_static_module(frozen._c)
    except Exception:  # noqa: BLE001 - TorchScript's own interpreter runs any graph
        return None


def is_compiled(fn):
    """Whether ``fn`` came from :func:`compile_function`."""
    # A torch built without the static runtime has no StaticModule class.
    return isinstance(fn, (torch._C.ScriptMethod, getattr(torch._C, "StaticModule", ())))
