"""Reductions of the named API by name or index: sum/mean/prod/var/std/max/min/arg*/logsumexp, softmax;
cumsum/cumprod."""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from ..tensor import NamedTensor, bind
from ..types import NamedShapeError, is_float

from ._common import ALL_DIMS, Dim, _cast, _dims, _keep
from .elementwise import abs, cast, div, exp, log, maximum, minimum, sqrt, where
from .layout import flatten



def _reduce(prim: str, x: NamedTensor, dim: Dim | Sequence[Dim] | None, keepdim: bool, op: str = "",
            none_is_all: bool = False) -> NamedTensor:
    op = op or prim.replace("reduce_", "")
    dims = _dims(x, dim, op, none_is_all=none_is_all)
    if prim in ("reduce_max", "reduce_min"):
        empty = [n for n in dims if x.type.size(n) == 0]
        if empty:
            raise NamedShapeError(f"{op}: cannot reduce the empty dim {x.names[x.type.names.index(empty[0])]!r} "
                                  f"({x.type.pretty()}): a {op} over no elements is undefined")
    if prim in ("reduce_sum", "reduce_prod") and not is_float(x.dtype):
        x = _cast(x, "int64")  # PyTorch sums integers and bools as int64
    y = bind(prim, [x], dims=dims)
    return _keep(x, y, dims) if keepdim else y


def sum(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:  # noqa: A001
    """Sum over ``dim`` (a name, an index, a list of them, or None for all): ``x.sum('C')``."""
    return _reduce("reduce_sum", x, dim, keepdim, none_is_all=True)


def prod(x: NamedTensor, dim: Dim | Sequence[Dim] = ALL_DIMS, keepdim: bool = False) -> NamedTensor:
    """Product over ``dim``; ``x.prod()`` multiplies everything. ``dim=None`` is refused, as in PyTorch:
    an implicit dim (look dims up by name)."""
    return _reduce("reduce_prod", x, dim, keepdim)


def _float_input(x: NamedTensor, op: str) -> None:
    if not is_float(x.dtype):
        raise TypeError(f"{op}: needs a floating-point tensor, got {x.dtype} {x.type.pretty()}; "
                        f"cast first with .to('float32')")


def mean(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Mean over ``dim`` (floating-point input, as in PyTorch)."""
    _float_input(x, "mean")
    dims = _dims(x, dim, "mean", none_is_all=True)
    count = int(np.prod([x.type.size(n) for n in dims], dtype=np.int64))
    return div(_reduce("reduce_sum", x, dims, keepdim), count)


def _variance(op: str, x: NamedTensor, dim: Dim | Sequence[Dim] | None, correction: int, keepdim: bool,
              unbiased: bool | None) -> NamedTensor:
    _float_input(x, op)
    if unbiased is not None:
        correction = int(unbiased)
    dims = _dims(x, dim, op, none_is_all=True)
    count = int(np.prod([x.type.size(n) for n in dims], dtype=np.int64))
    centered = x - mean(x, dims, keepdim=True)
    return div(_reduce("reduce_sum", centered * centered, dims, keepdim), builtins.max(count - correction, 0))


def var(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, *, correction: int = 1,
        keepdim: bool = False, unbiased: bool | None = None) -> NamedTensor:
    """Variance over ``dim`` with Bessel's ``correction`` (1 by default, as in PyTorch)."""
    return _variance("var", x, dim, correction, keepdim, unbiased)


def std(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, *, correction: int = 1,
        keepdim: bool = False, unbiased: bool | None = None) -> NamedTensor:
    """Standard deviation over ``dim`` (square root of `var`)."""
    return sqrt(_variance("std", x, dim, correction, keepdim, unbiased))


def logsumexp(x: NamedTensor, dim: Dim | Sequence[Dim], keepdim: bool = False) -> NamedTensor:
    """``log(sum(exp(x)))`` over ``dim`` (required, as in PyTorch), computed stably."""
    _float_input(x, "logsumexp")
    dims = _dims(x, dim, "logsumexp")
    m = _reduce("reduce_max", x, dims, keepdim=True)
    m = where(abs(m) == math.inf, 0.0, m)  # an all -inf row stays -inf instead of becoming nan
    s = log(_reduce("reduce_sum", exp(x - m), dims, keepdim=True)) + m
    return bind("squeeze", [s], dims=dims) if not keepdim else s


MinMax = namedtuple("MinMax", ["values", "indices"])


def _minmax(prim: str, arg: str, x: NamedTensor, dim: Any, keepdim: bool) -> Any:
    if isinstance(dim, NamedTensor):
        return (maximum if prim == "reduce_max" else minimum)(x, dim)
    if dim is ALL_DIMS:
        return _reduce(prim, x, dim, False)
    values = _reduce(prim, x, dim, keepdim, op=prim.replace("reduce_", ""))
    return MinMax(values, _arg(arg, x, dim, keepdim))


def max(x: NamedTensor, dim: Any = ALL_DIMS, keepdim: bool = False) -> Any:  # noqa: A001
    """``x.max()`` (all dims) -> tensor; ``x.max(dim)`` -> (values, indices); ``x.max(other)`` -> maximum."""
    return _minmax("reduce_max", "argmax", x, dim, keepdim)


def min(x: NamedTensor, dim: Any = ALL_DIMS, keepdim: bool = False) -> Any:  # noqa: A001
    """``x.min()`` -> tensor; ``x.min(dim)`` -> (values, indices); ``x.min(other)`` -> minimum."""
    return _minmax("reduce_min", "argmin", x, dim, keepdim)


def amax(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Maximum over one or several dims, or every dim for None (values only)."""
    return _reduce("reduce_max", x, dim, keepdim, op="amax", none_is_all=True)


def amin(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Minimum over one or several dims, or every dim for None (values only)."""
    return _reduce("reduce_min", x, dim, keepdim, op="amin", none_is_all=True)


def _arg(prim: str, x: NamedTensor, dim: Dim | None, keepdim: bool) -> NamedTensor:
    if dim is None:
        flat = flatten(x) if x.ndim != 1 else x
        return bind(prim, [flat], dim=flat.type.names[0]) if flat.ndim else bind("full", [], value=0, dims=(),
                                                                                     dtype="int64")
    name = x._ir_name(dim, prim)
    y = bind(prim, [x], dim=name)
    return _keep(x, y, (name,)) if keepdim else y


def argmax(x: NamedTensor, dim: Dim | None = None, keepdim: bool = False) -> NamedTensor:
    """Index of the maximum along ``dim`` (or of the flattened tensor), int64."""
    return _arg("argmax", x, dim, keepdim)


def argmin(x: NamedTensor, dim: Dim | None = None, keepdim: bool = False) -> NamedTensor:
    """Index of the minimum along ``dim`` (or of the flattened tensor), int64."""
    return _arg("argmin", x, dim, keepdim)


def softmax(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Softmax along ``dim`` (one name or index; ``dim=None`` is refused: an implicit dim)."""
    x = cast(x, dtype) if dtype is not None else (x if is_float(x.dtype) else _cast(x, "float32"))
    return bind("softmax", [x], dim=x._ir_name(dim, "softmax"))


def log_softmax(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Log-softmax along ``dim`` (one name or index; ``dim=None`` is refused)."""
    x = cast(x, dtype) if dtype is not None else (x if is_float(x.dtype) else _cast(x, "float32"))
    return bind("log_softmax", [x], dim=x._ir_name(dim, "log_softmax"))


def _cumulative(prim: str, x: NamedTensor, dim: Dim, dtype: Any) -> NamedTensor:
    if dtype is not None:
        x = cast(x, dtype)
    elif not is_float(x.dtype):
        x = _cast(x, "int64")  # PyTorch accumulates integers and bools as int64
    return bind(prim, [x], dim=x._ir_name(dim, prim), reverse=False)


def cumsum(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Running sum along ``dim`` (a name or an index); integers and bools accumulate as int64:
    ``mask.cumsum('T')``."""
    return _cumulative("cumsum", x, dim, dtype)


def cumprod(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Running product along ``dim``; integers and bools accumulate as int64."""
    return _cumulative("cumprod", x, dim, dtype)
