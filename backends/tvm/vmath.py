"""Vectorizable float32 exp, tanh, sigmoid and erf for CPU builds (and softmax through them).

LLVM has no vector form of ``expf``: a vectorized loop calling ``T.exp`` is split back into one libm
call per lane (16 ``callq expf`` per AVX-512 vector), which made softmax 6-9x slower than torch.
`VectorMath` replaces these Relax ops by TE computes built from multiply-adds, compares and bit
operations only, which LLVM vectorizes; fusion then puts them into their neighbours' kernels as
before. Unlike TVM's ``FastMathTransform`` (``fast_math=True``), the forms here keep the edge cases
of libm: ``exp`` overflows to inf and underflows through the denormals to 0, NaN propagates,
``tanh``/``erf``/``sigmoid`` saturate exactly. Error against float64 (measured over [-110, 110],
denormals, inf and NaN; see tests/backends/tvm/test_vmath.py): at most a few float32 ulps.

float32 layer_norm over the last axis is this module's too (`_layer_norm`): TVM's legalization
multiplies by gamma and adds beta even when ``scale``/``center`` are off (two more loads per element
of ones and zeros; nir applies the user's affine as ops of their own, fused after it). Row reductions
over a length no 4-float vector divides (ViT's 197 keys) are split into the first ``n - n % 16``
elements and the rest (`_reduce`): softmax's max and sum, layer_norm's sums; the row schedule then
vectorizes the first part, where one reduction over all 197 would be a scalar chain.

* ``exp(x)``: ``x = n ln2 + r`` (ln2 in two parts, Cody-Waite), ``|r| <= ln2/2``; ``e^r`` by its
  Taylor polynomial of degree 7 (truncation below 6e-9); ``2^n`` built in the exponent bits as
  ``2^(n/2) * 2^(n - n/2)``, so results near overflow and in the denormal range round once.
* ``tanh(x)``: ``x * P(x^2)`` for ``|x| < 0.55``, else ``sign(x) (1 - 2 / (e^(2|x|) + 1))``.
* ``sigmoid(x) = 1 / (1 + e^-x)``, as ``e^x / (1 + e^x)`` for negative x.
* ``erf(x)``: ``x * P(x^2)`` for ``|x| < 1``; ``sign(x) (1 - e^(-x^2) Q(1/|x|))`` for ``1 <= |x| < 4``;
  ``sign(x)`` beyond (erfc(4) = 1.5e-8 is below half an ulp of 1).

The polynomial coefficients are least-squares fits on Chebyshev nodes in float64 (numpy's
``Chebyshev.fit``), with the fitted function's relative error stated beside each.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import te, tirx
from tvm.relax import Call, Expr, PyExprMutator, expr_functor

from .named import rewrite_functions

__all__ = ["VectorMath", "exp", "tanh", "sigmoid", "erf"]

F32 = "float32"
LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # 9 significant bits: n * LN2_HI is exact for every n exp can use
LN2_LO = -2.12194440054690583e-4
EXP_TAYLOR = [1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0]  # highest power first
# tanh(x) / x as a polynomial in x^2 on [0, 0.55^2]: relative error 1.0e-9
TANH_SMALL = [-0.006238845487036213, 0.021042167773234536, -0.053843369449739956, 0.13332467939090448,
              -0.33333311231955376, 0.999999999081354]
TANH_SPLIT = 0.55
# erf(x) / x as a polynomial in x^2 on [0, 1]: relative error 1.4e-9
ERF_SMALL = [7.882497119299478e-05, -0.000801885499574625, 0.005189311943048224, -0.026854328796275164,
             0.11283597463493628, -0.3761262690358103, 1.128379165881503]
# erfc(a) * e^(a^2) as a polynomial in 1/a on [1/4, 1]: erf's absolute error 4.4e-9
ERF_LARGE = [-0.007106618836780262, 0.01684301442533208, 0.04870541498483019, -0.2714609163587617,
             0.5181747280377121, -0.4810591410177102, 0.04451758190286835, 0.5586768750262598,
             0.0002926261492530169]
ERF_SATURATES = 4.0


def _c(value: float) -> tirx.PrimExpr:
    return tirx.const(value, F32)


def _horner(x: tirx.PrimExpr, coefficients: list[float]) -> tirx.PrimExpr:
    acc = _c(coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + _c(c)
    return acc


def _pow2(n: tirx.PrimExpr) -> tirx.PrimExpr:
    """``2^n`` for an int32 ``n`` in [-126, 127], from the exponent bits."""
    return tirx.reinterpret(F32, tirx.shift_left(n + tirx.const(127, "int32"), tirx.const(23, "int32")))


def exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """e^x in float32: inf above 88.72, denormals down to -103.97, 0 below, NaN for NaN."""
    xc = tirx.max(tirx.min(x, _c(89.0)), _c(-104.0))  # beyond these e^x is inf / 0 anyway
    n = tirx.nearbyint(xc * _c(LOG2E))
    r = xc - n * _c(LN2_HI) - n * _c(LN2_LO)
    ni = tirx.Cast("int32", n)  # in [-150, 128]
    half = tirx.shift_right(ni, tirx.const(1, "int32"))
    y = _horner(r, EXP_TAYLOR) * _pow2(half) * _pow2(ni - half)
    return tirx.Select(tirx.isnan(x), x, y)


def tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """tanh(x) in float32; NaN for NaN, +-1 at +-inf."""
    a = tirx.abs(x)
    big = _c(1.0) - _c(2.0) / (exp(a * _c(2.0)) + _c(1.0))
    small = x * _horner(x * x, TANH_SMALL)
    return tirx.Select(a < _c(TANH_SPLIT), small, tirx.Select(x < _c(0.0), -big, big))


def sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """1 / (1 + e^-x) in float32, as e^x / (1 + e^x) for negative x (no overflow, denormals kept)."""
    e = exp(-tirx.abs(x))
    return tirx.Select(x < _c(0.0), e, _c(1.0)) / (_c(1.0) + e)


def erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """erf(x) in float32; NaN for NaN, +-1 from |x| >= 4."""
    a = tirx.abs(x)
    one = tirx.Select(x < _c(0.0), _c(-1.0), _c(1.0))
    small = x * _horner(x * x, ERF_SMALL)
    ac = tirx.max(a, _c(1.0))  # keeps 1/a finite where this branch is not taken
    large = one * (_c(1.0) - exp(-(ac * ac)) * _horner(_c(1.0) / ac, ERF_LARGE))
    y = tirx.Select(a < _c(1.0), small, tirx.Select(a < _c(ERF_SATURATES), large, one))
    return tirx.Select(tirx.isnan(x), x, y)


def _elementwise(fn: Callable[[tirx.PrimExpr], tirx.PrimExpr]) -> Callable[[te.Tensor], te.Tensor]:
    def compute(x: te.Tensor) -> te.Tensor:
        return te.compute(x.shape, lambda *i: fn(x(*i)), name=f"nir_{fn.__name__}")
    return compute


TAIL_BLOCK = 16  # rows no 4-float vector divides reduce their first multiple of this many elements apart


def _splits(n: int) -> bool:
    """Whether `_reduce` splits a row of ``n`` elements: no 4-float vector divides it, and it is longer
    than one `TAIL_BLOCK`."""
    return n % 4 != 0 and n > TAIL_BLOCK


def _reduce(kept: list, n: int, value: Callable, reducer: Callable, combine: Callable, name: str) -> te.Tensor:
    """``reducer`` of ``value(i, k)`` over k < n, per row i. Where no 4-float vector divides n (ViT's 197
    keys), as the reduction of the first ``n - n % 16`` elements, which the row schedule vectorizes, then
    the few left over, combined: one scalar reduction of 197 would be a chain of dependent operations."""
    if not _splits(n):
        k = te.reduce_axis((0, n), name="k")
        return te.compute(kept, lambda *i: reducer(value(i, k), axis=k), name=name)
    main = n - n % TAIL_BLOCK
    k1, k2 = te.reduce_axis((0, main), name="k"), te.reduce_axis((0, n - main), name="k")  # (domains from 0)
    head = te.compute(kept, lambda *i: reducer(value(i, k1), axis=k1), name=f"{name}_head")
    tail = te.compute(kept, lambda *i: reducer(value(i, k2 + main), axis=k2), name=f"{name}_tail")
    return te.compute(kept, lambda *i: combine(head(*i), tail(*i)), name=name)


def _softmax(x: te.Tensor, axis: int, log: bool) -> te.Tensor:
    """(log_)softmax along ``axis``: max, e^(x - max), sum, then times 1/sum (or minus the log)."""
    shape = list(x.shape)
    axis = axis % len(shape)
    kept = shape[:axis] + shape[axis + 1:]

    def at(i: tuple, k: tirx.PrimExpr) -> tuple:
        return i[:axis] + (k,) + i[axis:]

    n = int(shape[axis])
    top = _reduce(kept, n, lambda i, k: x(*at(i, k)), te.max, tirx.max, "softmax_max")
    shifted = te.compute(shape, lambda *i: exp(x(*i) - top(*(i[:axis] + i[axis + 1:]))), name="softmax_exp")
    total = _reduce(kept, n, lambda i, k: shifted(*at(i, k)), te.sum, lambda a, b: a + b, "softmax_sum")
    if log:
        return te.compute(shape, lambda *i: x(*i) - top(*(i[:axis] + i[axis + 1:]))
                          - tirx.log(total(*(i[:axis] + i[axis + 1:]))), name="log_softmax")
    # one divide per row, then a multiply per element: a vector divide costs several multiplies, and
    # rounding 1/sum first adds at most one float32 ulp (the sum is >= 1, so 1/sum is no denormal)
    return te.compute(shape, lambda *i: shifted(*i) * (_c(1.0) / total(*(i[:axis] + i[axis + 1:]))),
                      name="softmax")


def _layer_norm(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor, eps: float, scale: bool, center: bool) -> te.Tensor:
    """layer_norm over the last axis as TVM computes it (mean, then the mean of squared deviations), but
    with ``gamma``/``beta`` applied only where ``scale``/``center`` say, and its sums split as `_reduce`
    splits them (for rows no 4-float vector divides)."""
    shape = list(x.shape)
    n = int(shape[-1])
    kept = shape[:-1]
    total = _reduce(kept, n, lambda i, k: x(*i, k), te.sum, lambda a, b: a + b, "layer_norm_sum")
    mean = te.compute(kept, lambda *i: total(*i) / _c(float(n)), name="layer_norm_mean")
    squares = _reduce(kept, n, lambda i, k: (x(*i, k) - mean(*i)) * (x(*i, k) - mean(*i)), te.sum,
                      lambda a, b: a + b, "layer_norm_var_sum")

    def out(*i: tirx.PrimExpr) -> tirx.PrimExpr:
        y = (x(*i) - mean(*i[:-1])) * tirx.rsqrt(squares(*i[:-1]) / _c(float(n)) + _c(eps))
        y = y * gamma(i[-1]) if scale else y
        return y + beta(i[-1]) if center else y
    return te.compute(shape, out, name="layer_norm")


def _over_last_axis(call: Call) -> bool:
    """A layer_norm over the last axis alone, of a static length."""
    shape = call.args[0].ty.shape
    axes = [int(a) % len(shape) for a in call.attrs.axes]
    return axes == [len(shape) - 1] and isinstance(shape[-1], tirx.IntImm)


ELEMENTWISE = {"relax.exp": exp, "relax.tanh": tanh, "relax.sigmoid": sigmoid, "relax.erf": erf}


@expr_functor.mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        name = getattr(call.op, "name", None)
        if not call.args or str(getattr(call.args[0].ty, "dtype", "")) != F32:
            return call
        if name in ELEMENTWISE:
            return self.builder_.call_te(_elementwise(ELEMENTWISE[name]), call.args[0])
        if name == "relax.nn.layer_norm" and _over_last_axis(call):
            a = call.attrs
            return self.builder_.call_te(_layer_norm, call.args[0], call.args[1], call.args[2], float(a.epsilon),
                                         bool(a.scale), bool(a.center))
        if name in ("relax.nn.softmax", "relax.nn.log_softmax"):
            return self.builder_.call_te(_softmax, call.args[0], int(call.attrs.axis),
                                         name == "relax.nn.log_softmax")
        return call


@tvm.transform.module_pass(opt_level=0, name="nir.VectorMath")
class VectorMath:
    """Relax pass: float32 exp, tanh, sigmoid, erf, softmax, log_softmax and layer_norm over the last
    axis computed by this module's forms (for CPU targets; GPUs have fast transcendental
    instructions)."""

    def transform_module(self, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        return rewrite_functions(rewriter, mod)
