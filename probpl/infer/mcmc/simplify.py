"""Simplifying a recorded ATen graph, keeping every value bit for bit.

The graph of a model's value and gradient, recorded op by op
(:mod:`probpl.infer.mcmc.compile`), carries much that only matters in eager mode:
constants built from Python numbers, multiplications by one and additions of zero
(identity transforms, unit scales), views and expansions back to the same shape,
reductions over unit dimensions, repeated subexpressions and the zero-filled pieces that
assemble a gradient from slices.  :func:`simplify` removes them, checking each rewrite
against the values the graph computes on example inputs, and can turn Python-number
operands into 0-dim tensor constants (the fast form for TorchScript's static runtime).
"""

import operator

import torch
from torch.fx.node import map_arg

_aten = torch.ops.aten

# ops whose result depends only on the shapes (static in a trace) of their tensor inputs
_SHAPE_ONLY = {
    _aten.ones_like.default,
    _aten.zeros_like.default,
    _aten.full_like.default,
    _aten.scalar_tensor.default,
    _aten.arange.default,
    _aten.arange.start,
    _aten.arange.start_step,
    _aten.full.default,
    _aten.zeros.default,
    _aten.ones.default,
    _aten.new_full.default,
    _aten.new_zeros.default,
    _aten.new_ones.default,
}

# overloads taking a Python number, and the ones taking a tensor in its place
_TENSOR_FORMS = {
    _aten.add.Scalar: _aten.add.Tensor,
    _aten.sub.Scalar: _aten.sub.Tensor,
    _aten.mul.Scalar: _aten.mul.Tensor,
    _aten.div.Scalar: _aten.div.Tensor,
    _aten.rsub.Scalar: _aten.rsub.Tensor,
    _aten.eq.Scalar: _aten.eq.Tensor,
    _aten.ne.Scalar: _aten.ne.Tensor,
    _aten.lt.Scalar: _aten.lt.Tensor,
    _aten.le.Scalar: _aten.le.Tensor,
    _aten.gt.Scalar: _aten.gt.Tensor,
    _aten.ge.Scalar: _aten.ge.Tensor,
}

# ops that only reinterpret the elements of their first argument in row-major order
_VIEW_LIKE = {
    _aten.view.default,
    _aten._unsafe_view.default,
    _aten.reshape.default,
    _aten.expand.default,
    _aten.unsqueeze.default,
    _aten.squeeze.dim,
    _aten.squeeze.dims,
    _aten.squeeze.default,
    _aten.alias.default,
    _aten.clone.default,
    _aten.lift_fresh_copy.default,
    _aten.detach.default,
    _aten.contiguous.default,
}


_SCALAR_FORMS = {
    _aten.add.Tensor: _aten.add.Scalar,
    _aten.sub.Tensor: _aten.sub.Scalar,
    _aten.mul.Tensor: _aten.mul.Scalar,
    _aten.div.Tensor: _aten.div.Scalar,
}


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_pure(target):
    if not isinstance(target, torch._ops.OpOverload):
        return target is operator.getitem
    if target._schema.is_mutable:
        return False
    return torch.Tag.nondeterministic_seeded not in target.tags


def _fetch_attr(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _evaluate(gm, inputs):
    """Run the graph once, keeping every node's value (the trace is static, so these are
    the shapes, dtypes and, for constants, the values of every later run)."""
    env = {}
    it = iter(inputs)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(it)
        elif node.op == "get_attr":
            env[node] = _fetch_attr(gm, node.target)
        elif node.op == "call_function":
            args = map_arg(node.args, env.__getitem__)
            kwargs = map_arg(node.kwargs, env.__getitem__)
            env[node] = node.target(*args, **kwargs)
    return env


def _same_meta(a, b):
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.device == b.device
    )


class _Simplifier:
    def __init__(self, gm, inputs):
        self.gm = gm
        self.graph = gm.graph
        self.env = _evaluate(gm, inputs)
        self.const = set()
        self.num_folded = 0
        self.created = []
        self.names = {}  # id(folded value) -> buffer name
        self.numbers = {}  # (number, dtype, device) -> 0-dim constant

    # ----- helpers -----

    def _is_const_value(self, arg, test):
        if isinstance(arg, torch.fx.Node):
            if arg not in self.const:
                return False
            v = self.env[arg]
            return isinstance(v, torch.Tensor) and v.numel() > 0 and bool(test(v).all())
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return bool(test(torch.tensor(float(arg))))
        return False

    def _ones(self, arg):
        return self._is_const_value(arg, lambda v: v == 1)

    def _zeros(self, arg):
        return self._is_const_value(arg, lambda v: v == 0)

    def _new_node(self, before, target, args, kwargs=None):
        with self.graph.inserting_before(before):
            node = self.graph.call_function(target, args, kwargs or {})
        self.env[node] = target(*map_arg(args, self.env.__getitem__),
                                **map_arg(kwargs or {}, self.env.__getitem__))
        return node

    def _new_const(self, before, value):
        name = self.names.get(id(value))
        if name is None or not hasattr(self.gm, name):
            name = f"_folded_{self.num_folded}"
            self.num_folded += 1
            if any(b is value for b in self.gm.buffers()):
                value = value.clone()  # TorchScript wants each buffer object once
            self.gm.register_buffer(name, value, persistent=False)
            self.created.append(name)
            self.names[id(value)] = name
        with self.graph.inserting_before(before):
            node = self.graph.get_attr(name)
        self.env[node] = value
        self.const.add(node)
        return node

    # ----- passes -----

    def fold_constants(self):
        changed = False
        for node in list(self.graph.nodes):
            if node.op == "get_attr":
                self.const.add(node)
                continue
            if node.op != "call_function" or node in self.const or not _is_pure(node.target):
                continue
            inputs = node.all_input_nodes
            if node.target in _SHAPE_ONLY or all(n in self.const for n in inputs):
                value = self.env[node]
                if not isinstance(value, torch.Tensor):
                    continue
                node.replace_all_uses_with(self._new_const(node, value))
                changed = True
        return changed

    def _identity_of(self, node):
        # the input that ``node`` merely reproduces, if any
        t, a, kw = node.target, node.args, node.kwargs
        if t in (_aten.mul.Tensor, _aten.mul.Scalar):
            if self._ones(a[1]):
                return a[0]
            if self._ones(a[0]):
                return a[1]
        elif t in (_aten.div.Tensor, _aten.div.Scalar) and not kw:
            if self._ones(a[1]):
                return a[0]
        elif t in (_aten.add.Tensor, _aten.add.Scalar, _aten.sub.Tensor, _aten.sub.Scalar):
            if self._zeros(a[1]):
                return a[0]
            if t is _aten.add.Tensor and self._zeros(a[0]) and kw.get("alpha", 1) == 1:
                return a[1]
        elif t in (_aten.sum.default, _aten.sum.dim_IntList) and not kw:
            src = a[0]
            if isinstance(src, torch.fx.Node) and self.env[src].dim() == 0:
                return src
        elif t is _aten.pow.Tensor_Scalar and a[1] == 1:
            return a[0]
        elif t is _aten._to_copy.default and set(kw) <= {"dtype"}:
            return a[0]
        elif t is _aten.neg.default:
            src = a[0]
            if isinstance(src, torch.fx.Node) and src.target is _aten.neg.default:
                return src.args[0]
        elif t is _aten.permute.default:
            src = a[0]
            if isinstance(src, torch.fx.Node) and src.target is _aten.permute.default:
                inner, outer = src.args[1], a[1]
                n = len(inner)
                if all(inner[outer[i] % n] % n == i for i in range(n)):
                    return src.args[0]
        elif t is _aten.where.self:
            if self._is_const_value(a[0], lambda v: v):
                return a[1]
        elif t in _VIEW_LIKE:
            # walk up a chain of views: an ancestor of the same shape is the same tensor
            src = a[0]
            while isinstance(src, torch.fx.Node):
                if _same_meta(self.env[src], self.env[node]):
                    return src
                if src.op != "call_function" or src.target not in _VIEW_LIKE:
                    break
                src = src.args[0]
        return None

    def _reduce_unit_dims(self, node):
        # a sum over dimensions of size one is a squeeze (or nothing, with keepdim)
        if node.target is not _aten.sum.dim_IntList or node.kwargs.get("dtype") is not None:
            return None
        x, dims = node.args[0], node.args[1]
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        xv = self.env[x]
        if not dims or not all(xv.shape[d] == 1 for d in dims):
            return None
        if keepdim:
            return x
        return self._new_node(node, _aten.squeeze.dims, (x, list(dims)))

    def rewrite(self):
        changed = False
        for node in list(self.graph.nodes):
            if node.op != "call_function" or node in self.const:
                continue
            out = self._identity_of(node)
            if not isinstance(out, torch.fx.Node) or not _same_meta(self.env[out],
                                                                     self.env[node]):
                out = None
            if out is None:
                out = self._reduce_unit_dims(node)
            if out is not None and out is not node:
                node.replace_all_uses_with(out)
                changed = True
        return changed

    def canonicalize(self):
        # forms TorchScript runs faster: a Python number as the second operand of a binary
        # op would be wrapped into a tensor on every call (a ``.Scalar`` overload takes it
        # as it is), and ``pow(x, 2)`` goes through the general power kernel (``x * x``
        # is what that kernel computes)
        changed = False
        for node in list(self.graph.nodes):
            if node.op != "call_function":
                continue
            t, a = node.target, node.args
            if t in _SCALAR_FORMS and len(a) == 2 and _is_number(a[1]) and isinstance(
                a[0], torch.fx.Node
            ):
                new = self._new_node(node, _SCALAR_FORMS[t], a, dict(node.kwargs))
            elif t is _aten.pow.Tensor_Scalar and a[1] == 2 and isinstance(a[0], torch.fx.Node):
                new = self._new_node(node, _aten.mul.Tensor, (a[0], a[0]))
            else:
                continue
            if _same_meta(self.env[new], self.env[node]) and torch.equal(
                self.env[new], self.env[node]
            ):
                node.replace_all_uses_with(new)
                changed = True
        return changed

    def _number_tensor(self, before, number, like):
        # a number as a 0-dim constant of the dtype of ``like``, where that gives the same
        # result as the number itself (a number of a lower or equal kind than the dtype)
        dtype = like.dtype
        if isinstance(number, bool) or not _is_number(number):
            return None
        if isinstance(number, float) and not dtype.is_floating_point:
            return None
        if not (dtype.is_floating_point or dtype in (torch.int64, torch.int32)):
            return None
        key = (number, dtype, like.device)
        value = self.numbers.get(key)
        if value is None:
            value = self.numbers[key] = torch.tensor(number, dtype=dtype, device=like.device)
        return self._new_const(before, value)

    def tensorize_numbers(self):
        # forms the static runtime runs faster: it has planned-memory kernels for the
        # ``.Tensor`` overloads of binary ops, comparisons and selections, so a Python number
        # operand costs more than a 0-dim constant tensor (which broadcasts and, being of
        # the other operand's dtype, changes no result dtype)
        changed = False
        for node in list(self.graph.nodes):
            if node.op != "call_function" or not node.args:
                continue
            t, a = node.target, list(node.args)
            if t is _aten.masked_fill.Scalar and isinstance(a[0], torch.fx.Node):
                # masked_fill(x, mask, c) is where(mask, c, x), which runs faster
                a = [a[1], a[2], a[0]]
                pos, target, like = 1, _aten.where.self, self.env[a[2]]
            elif t in _TENSOR_FORMS and isinstance(a[0], torch.fx.Node):
                pos, target, like = 1, _TENSOR_FORMS[t], self.env[a[0]]
            elif t in (_aten.where.ScalarOther, _aten.where.ScalarSelf):
                pos = 2 if t is _aten.where.ScalarOther else 1
                other = a[3 - pos]
                if not isinstance(other, torch.fx.Node):
                    continue
                target, like = _aten.where.self, self.env[other]
            else:
                continue
            if len(a) <= pos or not isinstance(like, torch.Tensor):
                continue
            const = self._number_tensor(node, a[pos], like)
            if const is None:
                continue
            a[pos] = const
            new = self._new_node(node, target, tuple(a), dict(node.kwargs))
            if _same_meta(self.env[new], self.env[node]) and torch.equal(
                self.env[new], self.env[node]
            ):
                node.replace_all_uses_with(new)
                changed = True
        return changed

    def _slices(self, node):
        # an add-tree of slice_backward pieces of one tensor: [(start, end, source)]
        if node.op != "call_function":
            return None
        if node.target is _aten.slice_backward.default:
            src, sizes, dim, start, end, step = node.args
            if step != 1:
                return None
            dim = dim % len(sizes)
            end = min(end, sizes[dim])
            return (tuple(sizes), dim, [(start, end, src)])
        if node.target is _aten.add.Tensor and not node.kwargs:
            left, right = node.args
            if not (isinstance(left, torch.fx.Node) and isinstance(right, torch.fx.Node)):
                return None
            a, b = self._slices(left), self._slices(right)
            if a is None or b is None or a[:2] != b[:2]:
                return None
            pieces = sorted(a[2] + b[2], key=lambda p: p[0])
            for p, q in zip(pieces, pieces[1:]):
                if p[1] > q[0]:
                    return None
            return a[0], a[1], pieces
        return None

    def merge_slices(self):
        # sum of zero-padded slices of a gradient -> one concatenation
        changed = False
        for node in reversed(list(self.graph.nodes)):
            if node.target is not _aten.add.Tensor or not node.users:
                continue
            found = self._slices(node)
            if found is None:
                continue
            sizes, dim, pieces = found
            ref = self.env[node]
            parts, pos = [], 0
            for start, end, src in pieces + [(sizes[dim], sizes[dim], None)]:
                if start > pos:
                    shape = list(sizes)
                    shape[dim] = start - pos
                    parts.append(self._new_const(node, ref.new_zeros(shape)))
                if src is not None:
                    parts.append(src)
                pos = end
            cat = self._new_node(node, _aten.cat.default, (parts, dim))
            node.replace_all_uses_with(cat)
            changed = True
        return changed

    def eliminate_common_subexpressions(self):
        seen, changed = {}, False
        for node in list(self.graph.nodes):
            if node.op != "call_function" or not _is_pure(node.target):
                continue
            try:
                key = (node.target, _hashable(node.args), _hashable(node.kwargs))
                hash(key)
            except TypeError:
                continue
            if key in seen:
                node.replace_all_uses_with(seen[key])
                changed = True
            else:
                seen[key] = node
        return changed

    def cleanup(self):
        self.graph.eliminate_dead_code()
        used = {n.target for n in self.graph.nodes if n.op == "get_attr"}
        for name in self.created:
            if name not in used and hasattr(self.gm, name):
                delattr(self.gm, name)
        self.created = [n for n in self.created if n in used]


def _hashable(x):
    if isinstance(x, (list, tuple)):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, float) and x != x:
        return ("nan",)
    return (type(x), x)


def simplify(gm, inputs, max_passes=8, numbers_as_tensors=False):
    """Simplify the ATen graph ``gm`` in place without changing any value it computes.

    :param torch.fx.GraphModule gm: a functional graph from ``make_fx``.
    :param tuple inputs: example inputs (the graph is evaluated once on them).
    :param bool numbers_as_tensors: pass the numeric operands of binary ops, comparisons
        and selections as 0-dim constant tensors (the fast form for the static runtime)
        rather than as Python numbers (the fast form for TorchScript's interpreter).
    :returns: ``gm``.
    """
    s = _Simplifier(gm, inputs)
    for _ in range(max_passes):
        changed = s.fold_constants()
        changed |= s.rewrite()
        changed |= s.merge_slices()
        changed |= s.canonicalize()
        changed |= s.eliminate_common_subexpressions()
        s.cleanup()
        if not changed:
            break
    if numbers_as_tensors and s.tensorize_numbers():
        s.cleanup()
    gm.recompile()
    return gm
