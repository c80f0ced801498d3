"""Converters of reductions (sum, mean, var, max, any, ...) and softmax, over the dims at ATen's positions."""

from __future__ import annotations

from typing import Any

import nir.functions as nf
from nir.tensor import NamedTensor

from ._common import _maybe_cast, _positions, converts

@converts("reduction", "aten.sum.default", "aten.sum.dim_IntList")
def _sum(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.sum` over the dims at the given positions (all when none are given)."""
    return nf.sum(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.mean.default", "aten.mean.dim")
def _mean(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.mean` over the dims at the given positions."""
    return nf.mean(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.prod.default", "aten.prod.dim_int")
def _prod(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.prod` over the dims at the given positions."""
    return nf.prod(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.amax.default", "aten.max.default")
def _amax(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """`nir.amax` over the dims at the given positions."""
    return nf.amax(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.amin.default", "aten.min.default")
def _amin(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """`nir.amin` over the dims at the given positions."""
    return nf.amin(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.max.dim")
def _max_dim(x: NamedTensor, dim: int, keepdim: bool = False) -> tuple[NamedTensor, NamedTensor]:
    """`nir.max` along one dim: (values, indices)."""
    return tuple(nf.max(x, dim, keepdim))  # type: ignore[return-value]


@converts("reduction", "aten.min.dim")
def _min_dim(x: NamedTensor, dim: int, keepdim: bool = False) -> tuple[NamedTensor, NamedTensor]:
    """`nir.min` along one dim: (values, indices)."""
    return tuple(nf.min(x, dim, keepdim))  # type: ignore[return-value]


@converts("reduction", "aten.argmax.default")
def _argmax(x: NamedTensor, dim: int | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.argmax`."""
    return nf.argmax(x, dim, keepdim)


@converts("reduction", "aten.argmin.default")
def _argmin(x: NamedTensor, dim: int | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.argmin`."""
    return nf.argmin(x, dim, keepdim)


@converts("reduction", "aten.var.correction")
def _var(x: NamedTensor, dim: Any = None, *, correction: float | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.var` (correction 1 unless given)."""
    return nf.var(x, _positions(x, dim), correction=1 if correction is None else int(correction), keepdim=keepdim)


@converts("reduction", "aten.std.correction")
def _std(x: NamedTensor, dim: Any = None, *, correction: float | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.std` (correction 1 unless given)."""
    return nf.std(x, _positions(x, dim), correction=1 if correction is None else int(correction), keepdim=keepdim)


@converts("reduction", "aten.var.dim")
def _var_dim(x: NamedTensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> NamedTensor:
    """`nir.var` (Bessel's correction when ``unbiased``)."""
    return nf.var(x, _positions(x, dim), correction=int(unbiased), keepdim=keepdim)


@converts("reduction", "aten.std.dim")
def _std_dim(x: NamedTensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> NamedTensor:
    """`nir.std` (Bessel's correction when ``unbiased``)."""
    return nf.std(x, _positions(x, dim), correction=int(unbiased), keepdim=keepdim)


@converts("reduction", "aten.logsumexp.default")
def _logsumexp(x: NamedTensor, dim: Any, keepdim: bool = False) -> NamedTensor:
    """`nir.logsumexp`."""
    return nf.logsumexp(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.any.default", "aten.any.dim", "aten.any.dims")
def _any(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """``sum(x != 0) > 0`` over the dims at the given positions."""
    return nf.sum(nf.ne(x, 0), _positions(x, dim), keepdim) > 0


@converts("reduction", "aten.all.default", "aten.all.dim", "aten.all.dims")
def _all(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """``sum(x == 0) == 0`` over the dims at the given positions."""
    return nf.sum(nf.eq(x, 0), _positions(x, dim), keepdim) == 0


@converts("reduction", "aten.softmax.int", "aten._softmax.default")
def _softmax(x: NamedTensor, dim: int, dtype: Any = None) -> NamedTensor:
    """`nir.softmax` along the dim at that position."""
    return nf.softmax(x, dim, None if isinstance(dtype, bool) else dtype)  # _softmax's 3rd arg is half_to_float


@converts("reduction", "aten.log_softmax.int", "aten._log_softmax.default")
def _log_softmax(x: NamedTensor, dim: int, dtype: Any = None) -> NamedTensor:
    """`nir.log_softmax` along the dim at that position."""
    return nf.log_softmax(x, dim, None if isinstance(dtype, bool) else dtype)




@converts("reduction", "aten.cumsum.default")
def _cumsum(x: NamedTensor, dim: int, *, dtype: Any = None) -> NamedTensor:
    """`nir.cumsum` along the dim at that position (integers and bools accumulate as int64)."""
    return nf.cumsum(x, dim, dtype)


@converts("reduction", "aten.cumprod.default")
def _cumprod(x: NamedTensor, dim: int, *, dtype: Any = None) -> NamedTensor:
    """`nir.cumprod` along the dim at that position."""
    return nf.cumprod(x, dim, dtype)
