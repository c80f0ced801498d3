"""Elementwise functions of the named API: arithmetic, comparisons, unary maps, where/clamp/masked_fill, casts."""

from __future__ import annotations

import math
from typing import Any


from ..tensor import NamedTensor, as_tensor, bind
from ..types import (NamedShapeError, canonical_dtype)

from ._common import TensorLike, _cast, _elementwise, _promote, _unify



def add(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a + b`` with positional-broadcast name checks."""
    return _elementwise("add", a, b)


def sub(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a - b``."""
    return _elementwise("sub", a, b)


def mul(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a * b``."""
    return _elementwise("mul", a, b)


def div(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a / b`` (true division: integer operands give float32)."""
    return _elementwise("div", a, b, float_only=True)


def pow(a: TensorLike, b: TensorLike) -> NamedTensor:  # noqa: A001 - PyTorch's name
    """``a ** b`` (floating point)."""
    return _elementwise("pow", a, b, float_only=True)


def maximum(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise maximum."""
    return _elementwise("maximum", a, b)


def minimum(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise minimum."""
    return _elementwise("minimum", a, b)


def _compare(prim: str) -> Any:
    def f(a: TensorLike, b: TensorLike) -> NamedTensor:
        return _elementwise(prim, a, b)
    f.__name__ = prim
    f.__doc__ = f"Elementwise ``{prim}`` comparison; gives a bool tensor."
    return f


eq, ne, lt, le, gt, ge = (_compare(p) for p in ("eq", "ne", "lt", "le", "gt", "ge"))


def logical_and(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise ``and`` of bool tensors."""
    return bind("logical_and", _unify("logical_and", *(_cast(t, "bool") for t in _promote("logical_and", a, b))))


def logical_or(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise ``or`` of bool tensors."""
    return bind("logical_or", _unify("logical_or", *(_cast(t, "bool") for t in _promote("logical_or", a, b))))


def logical_not(a: NamedTensor) -> NamedTensor:
    """Elementwise ``not`` of a bool tensor."""
    return bind("logical_not", [_cast(a, "bool")])


def _unary(prim: str, float_only: bool) -> Any:
    def f(x: NamedTensor) -> NamedTensor:
        return _elementwise(prim, x, float_only=float_only)
    f.__name__ = prim
    f.__doc__ = f"Elementwise ``{prim}``; keeps names." + (" Integer input is cast to float32." if float_only else "")
    return f


neg, abs, relu = (_unary(p, False) for p in ("neg", "abs", "relu"))  # noqa: A001
exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos, erf = (
    _unary(p, True) for p in ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf"))


def gelu(x: NamedTensor, approximate: str = "none") -> NamedTensor:
    """GELU: exact (erf) by default, as in PyTorch; ``approximate='tanh'`` for the tanh form."""
    if approximate == "none":
        return _elementwise("gelu", x, float_only=True)
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    c = math.sqrt(2 / math.pi)
    return 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x)))


def where(cond: NamedTensor, x: TensorLike, y: TensorLike) -> NamedTensor:
    """``x`` where ``cond`` else ``y``, broadcasting all three by position with name checks."""
    like = next((t for t in (x, y) if isinstance(t, NamedTensor)), None)
    x, y = _promote("where", as_tensor(x, like, "where"), as_tensor(y, like, "where"))
    c = as_tensor(cond, None, "where")
    if c.dtype != "bool":
        raise TypeError(f"where: the condition must be a bool tensor, got {c.dtype} {c.type.pretty()}; "
                        "compare first, e.g. x > 0")
    return bind("where", _unify("where", c, x, y))


def clamp(x: NamedTensor, min: TensorLike | None = None, max: TensorLike | None = None) -> NamedTensor:  # noqa: A002
    """Limit ``x`` to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min= and max=")
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


def masked_fill(x: NamedTensor, mask: NamedTensor, value: float) -> NamedTensor:
    """``x`` with ``value`` where ``mask`` is True; ``mask`` broadcasts to ``x`` by position."""
    if mask.dtype != "bool":
        raise TypeError(f"masked_fill: mask must be bool, got {mask.dtype} {mask.type.pretty()}")
    if mask.ndim > x.ndim:
        raise NamedShapeError(f"masked_fill: mask {mask.type.pretty()} has more dims than the tensor {x.type.pretty()}")
    return where(mask, as_tensor(value, x, "masked_fill"), x)


def cast(x: NamedTensor, dtype: Any) -> NamedTensor:
    """``x`` converted to ``dtype`` (``"float16"``, ``np.float32``, ``torch.bfloat16``...)."""
    return _cast(x, canonical_dtype(dtype))
