"""Elementwise primitives: unary and binary maps, comparisons, `where`, `cast`; operands broadcast by name."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..types import TensorType, is_float, numpy_dtype
from . import _ad as ad
from ._core import Impl, Rule, _fail, _register, defvjp, to_order


def _broadcast_dims(op: str, types: Sequence[TensorType]) -> tuple[tuple[str, int], ...]:
    """Union of the operands' dims by name: the largest operand's order, then any other names.
    A dim present in several operands must have equal sizes, or size 1 (broadcast)."""
    first = max(types, key=lambda t: t.ndim)
    order = list(first.names) + [n for t in types for n in t.names if n not in first.names]
    order = list(dict.fromkeys(order))
    sizes: dict[str, int] = {}
    for t in types:
        for n, s in t.dims:
            have = sizes.get(n, 1)
            if s != 1 and have != 1 and s != have:
                raise _fail(op, f"dim {n!r} has size {have} in one operand and {s} in another", *types,
                            fix="Sizes of a dim shared by name must agree (or be 1 to broadcast)")
            sizes[n] = max(have, s) if s != 0 and have != 0 else 0
    return tuple((n, sizes[n]) for n in order)


# arithmetic that PyTorch refuses on bool tensors (numpy would raise its own TypeError, or compute xor)
NOT_FOR_BOOL = {"neg": "logical_not() (~x)", "abs": "the tensor itself", "relu": "the tensor itself",
                "sub": "ne() (a != b) for exclusive or"}


def _elementwise_rule(name: str, out_dtype: str | None = None, float_only: bool = False) -> Rule:
    def rule(*types: TensorType) -> TensorType:
        dtypes = {t.dtype for t in types}
        if len(dtypes) != 1:
            raise _fail(name, f"operands have different dtypes {sorted(dtypes)}", *types,
                        fix="Cast one operand with .to(dtype)")
        dtype = types[0].dtype
        if dtype == "bool" and name in NOT_FOR_BOOL:
            raise _fail(name, "not defined for bool tensors", *types, fix=f"Use {NOT_FOR_BOOL[name]}")
        if float_only and not is_float(dtype):
            raise _fail(name, f"needs a floating-point operand, got {dtype}", *types, fix="Cast with .to('float32')")
        return TensorType(_broadcast_dims(name, types), out_dtype or dtype)
    return rule


def _where_rule(cond: TensorType, x: TensorType, y: TensorType) -> TensorType:
    if cond.dtype != "bool":
        raise _fail("where", f"condition must be bool, got {cond.dtype}", cond)
    if x.dtype != y.dtype:
        raise _fail("where", f"branches have different dtypes {x.dtype} and {y.dtype}", x, y)
    return TensorType(_broadcast_dims("where", (cond, x, y)), x.dtype)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # exact and fast where scipy is installed
        return erf(x)
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


UNARY: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    # name: (numpy function, float only)
    "neg": (np.negative, False),
    "abs": (np.abs, False),
    "relu": (lambda x: np.maximum(x, np.zeros((), x.dtype)), False),
    "exp": (np.exp, True),
    "log": (np.log, True),
    "sqrt": (np.sqrt, True),
    "rsqrt": (lambda x: 1 / np.sqrt(x), True),
    "tanh": (np.tanh, True),
    "sigmoid": (_sigmoid, True),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(np.asarray(2, x.dtype)))), True),  # exact (erf) GELU
    "sin": (np.sin, True),
    "cos": (np.cos, True),
    "erf": (_erf, True),
    "logical_not": (np.logical_not, False),
}

BINARY: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str | None, bool]] = {
    # name: (numpy function, output dtype (None: same as input), float only)
    "add": (np.add, None, False),
    "sub": (np.subtract, None, False),
    "mul": (np.multiply, None, False),
    "div": (np.divide, None, True),
    "pow": (np.power, None, True),
    "maximum": (np.maximum, None, False),
    "minimum": (np.minimum, None, False),
    "eq": (np.equal, "bool", False),
    "ne": (np.not_equal, "bool", False),
    "lt": (np.less, "bool", False),
    "le": (np.less_equal, "bool", False),
    "gt": (np.greater, "bool", False),
    "ge": (np.greater_equal, "bool", False),
    "logical_and": (np.logical_and, None, False),
    "logical_or": (np.logical_or, None, False),
}


def _elementwise_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(*args: np.ndarray, types: Sequence[TensorType], out: TensorType) -> np.ndarray:
        aligned = [to_order(a, t.names, out.names) for a, t in zip(args, types)]
        return np.broadcast_to(fn(*aligned), out.shape)
    return impl


for _name, (_fn, _float_only) in UNARY.items():
    _register(_name, "elementwise", 1, _elementwise_rule(_name, float_only=_float_only), _elementwise_impl(_fn))
for _name, (_fn, _out, _float_only) in BINARY.items():
    _register(_name, "elementwise", 2, _elementwise_rule(_name, _out, _float_only), _elementwise_impl(_fn))
_register("where", "elementwise", 3, _where_rule, _elementwise_impl(np.where))


def _cast_rule(x: TensorType, *, dtype: str) -> TensorType:
    return x.with_dtype(dtype)


_register("cast", "elementwise", 1, _cast_rule,
          lambda x, *, types, out, dtype: x.astype(numpy_dtype(dtype)), "convert to `dtype`")


# ------------------------------------------------------------------------------------------------
# reverse-mode rules (see nir/ops/_ad.py for the signature); comparisons and logical ops give bools,
# so no cotangent reaches them
# ------------------------------------------------------------------------------------------------

def _sign(x: Any) -> Any:
    one, zero = ad.scalar(1.0, x.dtype), ad.scalar(0.0, x.dtype)
    return ad.sub(ad.where(ad.emit("gt", x, zero), one, zero), ad.where(ad.emit("lt", x, zero), one, zero))


def _gelu_slope(x: Any) -> Any:
    """d/dx of x*Phi(x): Phi(x) + x*phi(x)."""
    cdf = ad.scale(ad.add(ad.emit("erf", ad.scale(x, 1 / math.sqrt(2))), ad.scalar(1.0, x.dtype)), 0.5)
    pdf = ad.scale(ad.emit("exp", ad.scale(ad.mul(x, x), -0.5)), 1 / math.sqrt(2 * math.pi))
    return ad.add(cdf, ad.mul(x, pdf))


# name: d(out)/dx as a function of (x, out), times the cotangent
_UNARY_SLOPES: dict[str, Callable[[Any, Any], Any]] = {
    "neg": lambda x, y: ad.scalar(-1.0, x.dtype),
    "abs": lambda x, y: _sign(x),
    "exp": lambda x, y: y,
    "log": lambda x, y: ad.div(ad.scalar(1.0, x.dtype), x),
    "sqrt": lambda x, y: ad.div(ad.scalar(0.5, x.dtype), y),
    "rsqrt": lambda x, y: ad.scale(ad.div(y, x), -0.5),
    "tanh": lambda x, y: ad.sub(ad.scalar(1.0, x.dtype), ad.mul(y, y)),
    "sigmoid": lambda x, y: ad.mul(y, ad.sub(ad.scalar(1.0, x.dtype), y)),
    "gelu": lambda x, y: _gelu_slope(x),
    "sin": lambda x, y: ad.emit("cos", x),
    "cos": lambda x, y: ad.neg(ad.emit("sin", x)),
    "erf": lambda x, y: ad.scale(ad.emit("exp", ad.neg(ad.mul(x, x))), 2 / math.sqrt(math.pi)),
}


def _unary_vjp(slope: Callable[[Any, Any], Any]) -> Any:
    def vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool]) -> tuple:
        return (ad.to_type(ad.mul(ct, slope(x, out)), x.type),)
    return vjp


def _binary_vjp(da: Callable[..., Any], db: Callable[..., Any]) -> Any:
    """``da(ct, a, b, out)`` / ``db(...)``: the cotangents before summing out the broadcast dims."""
    def vjp(ct: Any, a: Any, b: Any, *, out: Any, needs: Sequence[bool]) -> tuple:
        return (ad.unbroadcast(da(ct, a, b, out), a.type) if needs[0] else None,
                ad.unbroadcast(db(ct, a, b, out), b.type) if needs[1] else None)
    return vjp


def _pow_da(ct: Any, a: Any, b: Any, y: Any) -> Any:
    """b * a**(b-1), 0 where b == 0 (as PyTorch: d/da a**0 is 0 even at a == 0)."""
    one, zero = ad.scalar(1.0, a.dtype), ad.scalar(0.0, a.dtype)
    slope = ad.mul(b, ad.emit("pow", a, ad.sub(b, one)))
    return ad.mul(ct, ad.where(ad.emit("eq", b, zero), zero, slope))


def _pow_db(ct: Any, a: Any, b: Any, y: Any) -> Any:
    """a**b * log(a), 0 where a == 0 and b >= 0 (as PyTorch)."""
    zero = ad.scalar(0.0, a.dtype)
    at_zero = ad.emit("logical_and", ad.emit("eq", a, zero), ad.emit("ge", b, zero))
    return ad.mul(ct, ad.where(at_zero, zero, ad.mul(y, ad.emit("log", a))))


def _choose_vjp(win: str) -> Any:
    """maximum/minimum: the cotangent goes to the chosen operand; ties split it evenly (as PyTorch and JAX)."""
    def share(a: Any, b: Any) -> Any:
        half, one, zero = (ad.scalar(v, a.dtype) for v in (0.5, 1.0, 0.0))
        return ad.where(ad.emit(win, a, b), one, ad.where(ad.emit("eq", a, b), half, zero))
    return _binary_vjp(lambda ct, a, b, y: ad.mul(ct, share(a, b)),
                       lambda ct, a, b, y: ad.mul(ct, share(b, a)))


for _name, _slope in _UNARY_SLOPES.items():
    defvjp(_name, _unary_vjp(_slope))
defvjp("relu", lambda ct, x, *, out, needs: (ad.to_type(ad.mask(ad.emit("gt", x, ad.scalar(0.0, x.dtype)), ct),
                                                          x.type),))  # selects: an inf cotangent at x <= 0 gives 0
defvjp("add", _binary_vjp(lambda ct, a, b, y: ct, lambda ct, a, b, y: ct))
defvjp("sub", _binary_vjp(lambda ct, a, b, y: ct, lambda ct, a, b, y: ad.neg(ct)))
defvjp("mul", _binary_vjp(lambda ct, a, b, y: ad.mul(ct, b), lambda ct, a, b, y: ad.mul(ct, a)))
defvjp("div", _binary_vjp(lambda ct, a, b, y: ad.div(ct, b), lambda ct, a, b, y: ad.neg(ad.div(ad.mul(ct, y), b))))
defvjp("pow", _binary_vjp(_pow_da, _pow_db))
defvjp("maximum", _choose_vjp("gt"))
defvjp("minimum", _choose_vjp("lt"))


def _where_vjp(ct: Any, cond: Any, x: Any, y: Any, *, out: Any, needs: Sequence[bool]) -> tuple:
    zero = ad.scalar(0.0, ct.dtype)
    return (None,
            ad.unbroadcast(ad.where(cond, ct, zero), x.type) if needs[1] else None,
            ad.unbroadcast(ad.where(cond, zero, ct), y.type) if needs[2] else None)


def _cast_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dtype: str) -> tuple:
    return (ad.cast(ct, x.dtype) if is_float(x.dtype) else None,)


defvjp("where", _where_vjp)
defvjp("cast", _cast_vjp)
