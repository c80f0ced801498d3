"""``where`` with a scalar constant branch, legalized with the constant as a literal.

TVM legalizes ``R.where(c, x, R.const(0.0))`` through ``topi.where``, which takes tensors only: the
constant becomes a 0-d buffer that the fused kernel loads at every element. In a vectorized loop that
load is hoisted; in a scalar loop (a max-pool gradient, whose loops are split by the pool's stride)
``select(c, x[i], zero[0])`` is a select between two loads, which LLVM turns into a load from a
selected address and then into branches: one misprediction in two on random data (LeNet-5's max-pool
gradient took 4.8 ns per element). Binary ops need nothing: their legalization already writes a scalar
constant operand as a literal (``_try_convert_to_scalar_const``) when the constant is the operand
itself, which `named.bind` ensures by not binding non-zero scalar constants to variables.

`ScalarWhere` computes such ``where`` calls by a TE compute with NumPy broadcasting in which each
scalar constant branch is a literal. It reads every operand at the output's own index except along
its broadcast dims: a batch of 1 read at a literal 0 made TVM classify relu (``where(x < 0, 0, x)``) as
a broadcast, which stopped it fusing into the convolution before it.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax, te, tirx
from tvm.relax import Call, Expr, PyExprMutator, expr_functor

from .named import rewrite_functions

__all__ = ["ScalarWhere"]


def _literal(e: Expr) -> tirx.PrimExpr | None:
    """The value of a 0-d constant as a TIR literal of its dtype; None for anything else."""
    if not isinstance(e, tvm.ir.expr.Constant) or e.ty.ndim != 0:
        return None  # (a zero may come bound to a variable: `named.bind`; callers look through bindings)
    return tirx.const(e.value.numpy()[()].item(), str(e.ty.dtype))


def _is_literal(e: object) -> bool:
    """Whether ``e`` is a TIR literal (from `_literal`), not a Relax tensor."""
    return isinstance(e, (tirx.IntImm, tirx.FloatImm))


def _broadcast(tensors: list[te.Tensor]) -> tuple[list, Callable[[te.Tensor, tuple], tirx.PrimExpr]]:
    """The NumPy broadcast shape of ``tensors`` and ``at(t, i)``: element ``i`` of it read from ``t``."""
    rank = max(len(t.shape) for t in tensors)
    shape = [1] * rank
    for t in tensors:
        for k, s in enumerate(t.shape, rank - len(t.shape)):
            shape[k] = s if int(s) != 1 else shape[k]

    def at(t: te.Tensor, i: tuple) -> tirx.PrimExpr:  # (broadcast dims read at 0; the rest as the output's,
        k = rank - len(t.shape)                         # so that an elementwise select looks elementwise)
        return t[tuple(tirx.const(0, str(s.ty)) if int(s) == 1 != int(shape[k + d]) else j
                       for d, (j, s) in enumerate(zip(i[k:], t.shape)))]
    return shape, at


def _where(*args: te.Tensor | tirx.PrimExpr) -> te.Tensor:
    """``select(cond, x, y)`` broadcast like NumPy; ``x`` or ``y`` may be a literal."""
    shape, at = _broadcast([a for a in args if isinstance(a, te.Tensor)])

    def element(*i: tirx.PrimExpr) -> tirx.PrimExpr:
        c, x, y = (at(a, i) if isinstance(a, te.Tensor) else a for a in args)
        return tirx.Select(c, x, y)
    return te.compute(shape, element, name="T_where")


@expr_functor.mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        if getattr(call.op, "name", None) != "relax.where":
            return call
        if not all(isinstance(s, tirx.IntImm) for a in call.args for s in a.ty.shape):
            return call  # (nir's shapes are static; anything else keeps TVM's legalization)
        c, x, y = (self._operand(a) for a in call.args)
        if _is_literal(c) or _is_literal(x) == _is_literal(y):
            return call
        return self.builder_.call_te(_where, c, x, y, primfunc_name_hint="where")

    def _operand(self, e: Expr) -> Expr | tirx.PrimExpr:
        """``e``, or its value as a literal when it is (bound to) a scalar constant."""
        lit = _literal(self._bound(e))
        return e if lit is None else lit

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
        return rewrite_functions(rewriter, mod)
