"""Move the reshape after a matmul past the elementwise ops that follow it.

A 1x1 convolution is lowered as a matmul over the pixels (`lower._pointwise_conv2d`) whose
``(N, O, H*W)`` result is reshaped to ``(N, O, H, W)``. Relax's FuseOps fuses a matmul with the
elementwise ops after it, but not with a reshape, so the batch-norm, residual add and relu of a ResNet
block after a 1x1 conv became a kernel of their own (over rows of 28 or 14 that no vector divides: 10%
of ResNet-50's time). `SinkReshape` rewrites ``op(reshape(m), c)`` as ``reshape(op(m, c'))`` (``c``
reshaped alike, or left alone when it is a scalar) for elementwise ops, so the epilogue runs on the
matmul's shape inside its kernel and the reshape, a view, comes last.
"""

from __future__ import annotations

import math
from typing import Sequence

import tvm
from tvm import relax
from tvm.relax import Call, Expr, PyExprMutator, expr_functor
from tvm.relax import op as R

from .named import rewrite_functions

__all__ = ["SinkReshape"]

# ops computed element by element (with broadcasting) whose attributes do not depend on the shape
ELEMENTWISE = frozenset(f"relax.{n}" for n in (
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "less", "less_equal", "greater",
    "greater_equal", "equal", "not_equal", "where", "astype", "clip", "negative", "sqrt", "rsqrt", "exp",
    "tanh", "sigmoid", "erf", "nn.relu", "nn.gelu", "nn.silu"))


def _shape(e: Expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression (None when it is not a tensor of known shape)."""
    ty = getattr(e, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        return None


def _groups(source: Sequence[int], target: Sequence[int]) -> list[list[int]] | None:
    """For each dim of ``source``, the run of consecutive ``target`` dims it was reshaped into (their
    product is the source dim; target dims of 1 join the run before them), or None when the reshape
    is not such a split of dims."""
    groups: list[list[int]] = []
    t = 0
    for s in source:
        run, prod = [], 1
        while t < len(target) and prod * target[t] <= s and (prod < s or target[t] == 1):
            run.append(t)
            prod *= target[t]
            t += 1
        if prod != s:
            return None
        groups.append(run)
    return groups if t == len(target) else None


def _merged(arg_shape: Sequence[int], target: Sequence[int], groups: list[list[int]]) -> list[int] | None:
    """The shape an operand broadcast against ``target`` takes on the source shape: per group, the
    group's product when it spans every dim of the group, 1 when it is 1 along them, else None."""
    if len(arg_shape) > len(target):
        return None
    a = [1] * (len(target) - len(arg_shape)) + list(arg_shape)
    if any(x != 1 and x != t for x, t in zip(a, target)):
        return None
    out = []
    for run in groups:
        if all(a[i] == target[i] for i in run):
            out.append(math.prod(target[i] for i in run))
        elif all(a[i] == 1 for i in run):
            out.append(1)
        else:
            return None
    return out


@expr_functor.mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.results: set[relax.Var] = set()  # matmul results, and elementwise results computed on their shape

    def _bound(self, e: Expr) -> Call | None:
        if not isinstance(e, relax.Var):
            return None
        try:
            b = self.lookup_binding(e)
        except Exception:  # noqa: BLE001 - not bound in this function's dataflow
            return None
        return b if isinstance(b, Call) else None

    def _source(self, e: Expr) -> relax.Var | None:
        """``m`` when ``e`` is bound to ``reshape(m)`` of a matmul's (or a sunk op's) result."""
        b = self._bound(e)
        if b is None or getattr(b.op, "name", None) != "relax.reshape":
            return None
        m = b.args[0]
        if m in self.results:
            return m
        inner = self._bound(m)
        if inner is not None and getattr(inner.op, "name", None) == "relax.matmul":
            return m
        return None

    def _reshaped(self, a: Expr, shape: tuple[int, ...]) -> Expr:
        """``a`` reshaped to ``shape``; a reshape of a reshape reshapes the first one's input (a
        chain of two is no view: it would be a copy kernel)."""
        if _shape(a) == shape:
            return a
        b = self._bound(a)
        if b is not None and getattr(b.op, "name", None) == "relax.reshape":
            return self._reshaped(b.args[0], shape)
        return self.builder_.emit(R.reshape(a, list(shape)))

    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        name = getattr(call.op, "name", None)
        if name == "relax.matmul":
            return call
        if name not in ELEMENTWISE:
            return call
        out = _shape(call)
        sources = [self._source(a) for a in call.args]
        found = [m for m in sources if m is not None]
        if out is None or not found:
            return call
        shape = _shape(found[0])
        if shape is None or any(_shape(m) != shape for m in found):
            return call
        if any(_shape(a) != out for a, m in zip(call.args, sources) if m is not None):
            return call  # a reshaped operand that is broadcast: not elementwise on it
        groups = _groups(shape, out)
        if groups is None:
            return call
        args = []
        for a, m in zip(call.args, sources):
            if m is not None:
                args.append(m)
                continue
            a_shape = _shape(a)
            if a_shape is None:
                return call
            if len(a_shape) == 0:
                args.append(a)
                continue
            merged = _merged(a_shape, out, groups)
            if merged is None:
                return call
            args.append(self._reshaped(a, tuple(merged)))
        inner = self.builder_.emit(Call(call.op, args, call.attrs, call.ty_args))
        if _shape(inner) != shape:
            return call
        self.results.add(inner)
        return R.reshape(inner, list(out))


@tvm.transform.module_pass(opt_level=0, name="nir.SinkReshape")
class SinkReshape:
    """Relax pass: elementwise ops after ``reshape(matmul(...))`` computed before the reshape (see the module)."""

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        return relax.transform.DeadCodeElimination()(rewrite_functions(rewriter, mod))
