"""``where`` with a scalar constant branch, legalized with the constant as a literal.

TVM legalizes ``R.where(c, x, R.const(0.0))`` through ``topi.where``, which takes tensors only: the
constant becomes a 0-d buffer that the fused kernel loads at every element. In a vectorized loop that
load is hoisted; in a scalar loop (a max-pool gradient, whose loops are split by the pool's stride)
``select(c, x[i], zero[0])`` is a select between two loads, which LLVM turns into a load from a
selected address and then into branches: one misprediction in two on random data (LeNet-5's max-pool
gradient took 4.8 ns per element). Binary ops need nothing: their legalization already writes a scalar
constant operand as a literal (``_try_convert_to_scalar_const``) when the constant is the operand
itself, which `named.bind` ensures by never binding scalar constants to variables.

`ScalarWhere` computes such ``where`` calls by a TE compute with NumPy broadcasting in which each
scalar constant branch is a literal.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx
from tvm.relax import Call, Expr, PyExprMutator, expr_functor

__all__ = ["ScalarWhere"]


def _literal(e: Expr) -> tirx.PrimExpr | None:
    """The value of a 0-d constant as a TIR literal of its dtype; None for anything else."""
    if not isinstance(e, tvm.ir.expr.Constant) or e.ty.ndim != 0:
        return None  # (a zero may come bound to a variable: `named.bind`; callers look through bindings)
    return tirx.const(e.value.numpy()[()].item(), str(e.ty.dtype))


def _where(cond: te.Tensor, x: te.Tensor | tirx.PrimExpr, y: te.Tensor | tirx.PrimExpr) -> te.Tensor:
    """``select(cond, x, y)`` broadcast like NumPy; ``x`` or ``y`` may be a literal."""
    tensors = [t for t in (cond, x, y) if isinstance(t, te.Tensor)]
    rank = max(len(t.shape) for t in tensors)
    shape = [1] * rank
    for t in tensors:
        for k, s in enumerate(t.shape, rank - len(t.shape)):
            shape[k] = s if int(s) != 1 else shape[k]

    def at(t: te.Tensor | tirx.PrimExpr, i: tuple) -> tirx.PrimExpr:
        if not isinstance(t, te.Tensor):
            return t
        own = i[rank - len(t.shape):]
        return t[tuple(tirx.const(0, str(s.ty)) if int(s) == 1 else j for j, s in zip(own, t.shape))]

    return te.compute(shape, lambda *i: tirx.Select(at(cond, i), at(x, i), at(y, i)), name="T_where")


@expr_functor.mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        if getattr(call.op, "name", None) != "relax.where":
            return call
        c, x, y = call.args
        if not all(isinstance(s, tirx.IntImm) for a in call.args for s in a.ty.shape):
            return call  # (nir's shapes are static; anything else keeps TVM's legalization)
        lx, ly = _literal(self._bound(x)), _literal(self._bound(y))
        if (lx is None and ly is None) or _literal(self._bound(c)) is not None or (lx is not None and ly is not None):
            return call
        return self.builder_.call_te(_where, c, x if lx is None else lx, y if ly is None else ly)

    def _bound(self, e: Expr) -> Expr:
        """What a variable is bound to in the function, else ``e``."""
        value = self.lookup_binding(e) if isinstance(e, relax.Var) else None
        return e if value is None else value


@tvm.transform.module_pass(opt_level=0, name="nir.ScalarWhere")
class ScalarWhere:
    """Relax pass: ``where`` calls with one scalar constant branch computed with the constant as a
    literal (see the module docstring)."""

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()
