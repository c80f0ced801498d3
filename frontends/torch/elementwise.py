"""Converters of elementwise ATen ops: unary and binary maps, comparisons, `where`, `masked_fill`."""

from __future__ import annotations

from typing import Any, Callable

import nir.functions as nf
from nir.tensor import NamedTensor

from ._common import _reconcile, _Unsupported, converts

_UNARY = {"relu": nf.relu, "tanh": nf.tanh, "sigmoid": nf.sigmoid, "exp": nf.exp, "log": nf.log, "sqrt": nf.sqrt,
          "rsqrt": nf.rsqrt, "neg": nf.neg, "abs": nf.abs, "erf": nf.erf, "sin": nf.sin, "cos": nf.cos,
          "logical_not": nf.logical_not}


def _unary_converter(fn: Callable[[NamedTensor], NamedTensor]) -> Callable[..., NamedTensor]:
    def convert(x: NamedTensor) -> NamedTensor:
        return fn(x)
    convert.__doc__ = f"`nir.{fn.__name__}`; keeps names."
    return convert


for _name, _fn in _UNARY.items():
    converts("elementwise", f"aten.{_name}.default")(_unary_converter(_fn))


@converts("elementwise", "aten.gelu.default")
def _gelu(x: NamedTensor, *, approximate: str = "none") -> NamedTensor:
    """`nir.gelu` (exact, or ``approximate='tanh'``)."""
    return nf.gelu(x, approximate)


@converts("elementwise", "aten.silu.default")
def _silu(x: NamedTensor) -> NamedTensor:
    """``x * sigmoid(x)``."""
    return x * nf.sigmoid(x)


@converts("elementwise", "aten.reciprocal.default")
def _reciprocal(x: NamedTensor) -> NamedTensor:
    """``1 / x``."""
    return nf.div(1.0, x)


@converts("elementwise", "aten.clamp.default")
def _clamp(x: NamedTensor, min: float | None = None, max: float | None = None) -> NamedTensor:  # noqa: A002
    """`nir.clamp`."""
    return nf.clamp(x, min, max) if min is not None or max is not None else x


@converts("elementwise", "aten.hardtanh.default")
def _hardtanh(x: NamedTensor, min_val: float = -1.0, max_val: float = 1.0) -> NamedTensor:
    """`nir.clamp` to [min_val, max_val]."""
    return nf.clamp(x, min_val, max_val)


@converts("elementwise", "aten.clamp_min.default")
def _clamp_min(x: NamedTensor, min: float) -> NamedTensor:  # noqa: A002
    """`nir.maximum` with a scalar."""
    return nf.maximum(x, min)


@converts("elementwise", "aten.clamp_max.default")
def _clamp_max(x: NamedTensor, max: float) -> NamedTensor:  # noqa: A002
    """`nir.minimum` with a scalar."""
    return nf.minimum(x, max)


@converts("elementwise", "aten.leaky_relu.default")
def _leaky_relu(x: NamedTensor, negative_slope: float = 0.01) -> NamedTensor:
    """``where(x > 0, x, x * negative_slope)``."""
    return nf.where(x > 0, x, x * negative_slope)


def _binary_converter(fn: Callable[[Any, Any], NamedTensor], has_alpha: bool) -> Callable[..., NamedTensor]:
    def convert(a: Any, b: Any, *, alpha: float = 1) -> NamedTensor:
        if alpha != 1:
            b = b * alpha
        return fn(*_reconcile(a, b))
    convert.__doc__ = f"`nir.{fn.__name__}`" + (" (``alpha=`` scales the second operand)." if has_alpha else ".")
    return convert


_BINARY = {
    "add": (nf.add, ("Tensor", "Scalar")), "sub": (nf.sub, ("Tensor", "Scalar")),
    "mul": (nf.mul, ("Tensor", "Scalar")), "div": (nf.div, ("Tensor", "Scalar")),
    "pow": (nf.pow, ("Tensor_Scalar", "Tensor_Tensor", "Scalar")),
    "maximum": (nf.maximum, ("default",)), "minimum": (nf.minimum, ("default",)),
    "eq": (nf.eq, ("Tensor", "Scalar")), "ne": (nf.ne, ("Tensor", "Scalar")), "lt": (nf.lt, ("Tensor", "Scalar")),
    "le": (nf.le, ("Tensor", "Scalar")), "gt": (nf.gt, ("Tensor", "Scalar")), "ge": (nf.ge, ("Tensor", "Scalar")),
    "logical_and": (nf.logical_and, ("default",)), "logical_or": (nf.logical_or, ("default",)),
}
for _name, (_fn, _overloads) in _BINARY.items():
    converts("elementwise", *(f"aten.{_name}.{o}" for o in _overloads))(
        _binary_converter(_fn, _name in ("add", "sub")))


@converts("elementwise", "aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(x: NamedTensor, other: Any, alpha: float = 1) -> NamedTensor:
    """``other - alpha * x``."""
    return nf.sub(*_reconcile(other, x * alpha if alpha != 1 else x))


@converts("elementwise", "aten.div.Tensor_mode")
def _div_mode(a: Any, b: Any, *, rounding_mode: str | None = None) -> NamedTensor:
    """`nir.div` when ``rounding_mode`` is None; nir has no floor or trunc primitive."""
    if rounding_mode is not None:
        raise _Unsupported(f"rounding_mode={rounding_mode!r}: nir has no floor/trunc primitive; use true division")
    return nf.div(*_reconcile(a, b))


@converts("elementwise", "aten.where.self")
def _where(cond: NamedTensor, x: Any, y: Any) -> NamedTensor:
    """`nir.where`, broadcasting the three operands by position."""
    return nf.where(*_reconcile(cond, x, y))


@converts("elementwise", "aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(x: NamedTensor, mask: NamedTensor, value: Any) -> NamedTensor:
    """``where(mask, value, x)``."""
    x, mask = _reconcile(x, mask)
    return nf.where(mask, value, x)




def _bitwise_converter(fn: Callable[[Any, Any], NamedTensor], name: str) -> Callable[..., NamedTensor]:
    def convert(a: Any, b: Any) -> NamedTensor:
        a, b = _reconcile(a, b)
        kinds = {t.dtype for t in (a, b) if isinstance(t, NamedTensor)} | {type(t).__name__ for t in (a, b)
                                                                            if not isinstance(t, NamedTensor)}
        if not kinds <= {"bool"}:
            raise _Unsupported(f"bitwise {name} of {sorted(kinds)} values: nir has logical ops on bools only")
        return fn(a, b)
    convert.__doc__ = f"`nir.{fn.__name__}` (bool operands; masks are built this way)."
    return convert


for _name, _fn in (("and", nf.logical_and), ("or", nf.logical_or)):
    converts("elementwise", f"aten.bitwise_{_name}.Tensor", f"aten.__{_name}__.Tensor")(_bitwise_converter(_fn, _name))


@converts("elementwise", "aten.bitwise_not.default")
def _bitwise_not(x: NamedTensor) -> NamedTensor:
    """`nir.logical_not` (a bool operand)."""
    if x.dtype != "bool":
        raise _Unsupported(f"bitwise not of {x.dtype} values: nir has logical ops on bools only")
    return nf.logical_not(x)
