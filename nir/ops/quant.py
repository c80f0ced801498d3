"""Reduced-precision primitives: `quantize` (float -> int8 by a named scale), `dequantize` (integer ->
float32 by a named scale), and the widening contraction and convolution `contract_wide`/`conv2d_wide`,
whose result has the accumulator's dtype: int8 x int8 -> int32, bfloat16 or float16 -> float32.

A scale is a tensor whose dims are a subset of the quantized value's dims, matched BY NAME: a scale
``{fc1.out: 128}`` is per output channel of ``fc1``, a scale ``{}`` is per tensor. No axis number, no
``axis=`` parameter: the names say what the scale is per.
"""

from __future__ import annotations

import numpy as np

from ..types import TensorType, is_float
from ._core import _fail, _register, to_order
from .contraction import _contract_impl, _contract_rule
from .windows import _conv2d_impl, _conv2d_rule

__all__ = ["WIDE", "INT8_RANGE"]

# input dtype -> the accumulator dtype a widening contraction returns
WIDE: dict[str, str] = {"int8": "int32", "bfloat16": "float32", "float16": "float32"}
INT8_RANGE = (-128, 127)


def _check_scale(op: str, x: TensorType, scale: TensorType) -> None:
    if scale.dtype != "float32":
        raise _fail(op, f"the scale must be float32, got {scale.dtype}", x, scale, fix="Cast it with .to('float32')")
    for n, s in scale.dims:
        if n not in x.names:
            raise _fail(op, f"the scale's dim {n!r} is not a dim of the input", x, scale,
                        fix="A scale is per the dims it names (e.g. {fc1.out: 128}); name them after the input's dims")
        if x.size(n) != s:
            raise _fail(op, f"the scale's dim {n!r} has size {s}, the input's has {x.size(n)}", x, scale)


def _quantize_rule(x: TensorType, scale: TensorType) -> TensorType:
    if not is_float(x.dtype):
        raise _fail("quantize", f"quantizes a floating-point input, got {x.dtype}", x, scale)
    _check_scale("quantize", x, scale)
    return x.with_dtype("int8")


def _quantize_impl(x: np.ndarray, scale: np.ndarray, *, types, out: TensorType) -> np.ndarray:
    # round half to even, in float32: what XLA's round_nearest_even and LLVM's nearbyint compute
    s = to_order(scale, types[1].names, out.names)
    q = np.rint(x.astype(np.float32) / s)
    q = np.clip(q, *INT8_RANGE)
    return np.where(np.isnan(q), 0, q).astype(np.int8)  # NaN has no integer: it quantizes to 0


def _dequantize_rule(q: TensorType, scale: TensorType) -> TensorType:
    if q.dtype not in ("int8", "int32"):
        raise _fail("dequantize", f"dequantizes int8 or int32, got {q.dtype}", q, scale,
                    fix="quantize() a float tensor first")
    _check_scale("dequantize", q, scale)
    return q.with_dtype("float32")


def _dequantize_impl(q: np.ndarray, scale: np.ndarray, *, types, out: TensorType) -> np.ndarray:
    return q.astype(np.float32) * to_order(scale, types[1].names, out.names)


def _wide_dtype(op: str, a: TensorType, b: TensorType) -> str:
    if a.dtype != b.dtype or a.dtype not in WIDE:
        raise _fail(op, f"takes two int8, bfloat16 or float16 operands, got {a.dtype} and {b.dtype}", a, b,
                    fix="quantize() both operands, or cast both with .to('bfloat16')")
    return WIDE[a.dtype]


def _contract_wide_rule(a: TensorType, b: TensorType, *, over: tuple[str, ...]) -> TensorType:
    wide = _wide_dtype("contract_wide", a, b)
    return _contract_rule(a, b, over=over).with_dtype(wide)


def _exact(a: np.ndarray) -> np.ndarray:
    """Integers as float64: sums of int8 products stay exact below 2**53, and einsum can use BLAS."""
    return a.astype(np.float64) if a.dtype.kind in "iu" else a


def _contract_wide_impl(a: np.ndarray, b: np.ndarray, *, types, out: TensorType, over) -> np.ndarray:
    return _contract_impl(_exact(a), _exact(b), types=types, out=out, over=over)


def _conv2d_wide_rule(x: TensorType, w: TensorType, **params) -> TensorType:
    wide = _wide_dtype("conv2d_wide", x, w)
    return _conv2d_rule(x, w, **params).with_dtype(wide)


def _conv2d_wide_impl(x: np.ndarray, w: np.ndarray, *, types, out: TensorType, **params) -> np.ndarray:
    return _conv2d_impl(_exact(x), _exact(w), types=types, out=out, **params)


_register("quantize", "quantization", 2, _quantize_rule, _quantize_impl,
          "int8 round-half-even(x / scale), clipped to [-128, 127]; scale dims: a subset of x's, by name")
_register("dequantize", "quantization", 2, _dequantize_rule, _dequantize_impl,
          "float32 q * scale; scale dims: a subset of q's, by name")
_register("contract_wide", "contraction", 2, _contract_wide_rule, _contract_wide_impl,
          "contract with the accumulator as result: int8 -> int32, bfloat16/float16 -> float32")
_register("conv2d_wide", "window", 2, _conv2d_wide_rule, _conv2d_wide_impl,
          "conv2d with the accumulator as result: int8 -> int32, bfloat16/float16 -> float32")
