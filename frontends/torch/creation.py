"""Converters of creation ops (full, arange, tril), dtype conversion, copies and dropout (no-ops in eval
mode), symbolic sizes and torch's run-time assertions."""

from __future__ import annotations

import operator
from typing import Any, Sequence

import nir.functions as nf
from nir.tensor import NamedTensor, bind

from ._common import _NOT_CONVERTED, _dtype, _maybe_cast, _reconcile, _Unsupported, converts

@converts("identity", "aten.contiguous.default", "aten.clone.default", "aten.detach.default", "aten.alias.default",
          "aten.lift_fresh_copy.default")
def _identity(x: NamedTensor, *args: Any, **kwargs: Any) -> NamedTensor:
    """The tensor itself: memory formats and copies mean nothing to a value-semantics IR."""
    return x


@converts("identity", "aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default")
def _dropout(x: NamedTensor, p: float, train: bool) -> NamedTensor:
    """The tensor itself in eval mode (``train=False``)."""
    if train and p:
        raise _Unsupported(f"dropout with train=True (p={p}) is random at run time; call model.eval() or pass "
                           "training=self.training to F.dropout")
    return x


@converts("identity", "aten.native_dropout.default")
def _native_dropout(x: NamedTensor, p: float, train: bool | None) -> tuple[Any, ...]:
    """The tensor itself in eval mode (the mask is not available)."""
    return (_dropout(x, p, bool(train)), _NOT_CONVERTED)


@converts("dtype", "aten._to_copy.default", "aten.to.dtype_layout")
def _to_copy(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.cast` when a dtype is given (device and layout mean nothing here)."""
    return _maybe_cast(x, dtype)


@converts("dtype", "aten.to.device")
def _to_device(x: NamedTensor, device: Any = None, dtype: Any = None, *args: Any, **kwargs: Any) -> NamedTensor:
    """`nir.cast` to ``dtype`` (the device means nothing here)."""
    return _maybe_cast(x, dtype)


@converts("dtype", "aten.to.dtype")
def _to_dtype(x: NamedTensor, dtype: Any, *args: Any, **kwargs: Any) -> NamedTensor:
    """`nir.cast`."""
    return nf.cast(x, dtype)


def _full(size: Sequence[int], value: float, dtype: Any) -> NamedTensor:
    if dtype is None:
        dtype = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "float32"
    return nf.full(*size, fill_value=value, dtype=dtype)


@converts("creation", "aten.full.default")
def _full_converter(size: Sequence[int], fill_value: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.full` (unnamed dims)."""
    return _full(size, fill_value, dtype)


@converts("creation", "aten.zeros.default")
def _zeros(size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.zeros` (unnamed dims)."""
    return _full(size, 0.0, dtype)


@converts("creation", "aten.ones.default")
def _ones(size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.ones` (unnamed dims)."""
    return _full(size, 1.0, dtype)


@converts("creation", "aten.new_full.default")
def _new_full(x: NamedTensor, size: Sequence[int], fill_value: float, *, dtype: Any = None,
              **kwargs: Any) -> NamedTensor:
    """`nir.full` (unnamed dims) with x's dtype unless given."""
    return _full(size, fill_value, dtype or x.dtype)


@converts("creation", "aten.new_zeros.default", "aten.new_empty.default")
def _new_zeros(x: NamedTensor, size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.zeros` (unnamed dims) with x's dtype unless given (``new_empty`` gives zeros too)."""
    return _full(size, 0, dtype or x.dtype)


@converts("creation", "aten.new_ones.default")
def _new_ones(x: NamedTensor, size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.ones` (unnamed dims) with x's dtype unless given."""
    return _full(size, 1, dtype or x.dtype)


@converts("creation", "aten.scalar_tensor.default")
def _scalar_tensor(s: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """A 0-d `nir.full`."""
    return _full((), s, dtype or "float32")


@converts("creation", "aten.full_like.default")
def _full_like(x: NamedTensor, fill_value: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """A `nir.full` with x's names and sizes."""
    return bind("full", [], value=fill_value, dims=x.type.dims, dtype=_dtype(dtype) or x.dtype)


@converts("creation", "aten.zeros_like.default")
def _zeros_like(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.zeros_like`."""
    return _full_like(x, 0, dtype=dtype)


@converts("creation", "aten.ones_like.default")
def _ones_like(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.ones_like`."""
    return _full_like(x, 1, dtype=dtype)


@converts("creation", "aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(*args: float, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.arange` (an unnamed dim)."""
    return nf.arange(*args, dtype=dtype)


def _triangle(x: NamedTensor, diagonal: int, lower: bool) -> NamedTensor:
    rows, cols = x.shape[-2:]
    offset = nf.arange(cols) - nf.unsqueeze(nf.arange(rows), -1)  # j - i
    keep = offset <= diagonal if lower else offset >= diagonal
    return nf.where(*_reconcile(keep, x, nf.zeros_like(x)))


@converts("creation", "aten.tril.default")
def _tril(x: NamedTensor, diagonal: int = 0) -> NamedTensor:
    """``where(j - i <= diagonal, x, 0)`` from `nir.arange`."""
    return _triangle(x, diagonal, True)


@converts("creation", "aten.triu.default")
def _triu(x: NamedTensor, diagonal: int = 0) -> NamedTensor:
    """``where(j - i >= diagonal, x, 0)`` from `nir.arange`."""
    return _triangle(x, diagonal, False)


@converts("symbolic", "aten.sym_size.int")
def _sym_size(x: NamedTensor, dim: int) -> int:
    """The size of a dim, as an int (the graph computes shapes from it when the batch is dynamic)."""
    return x.shape[dim]


@converts("symbolic", "aten.sym_numel.default")
def _sym_numel(x: NamedTensor) -> int:
    """The number of elements, as an int."""
    return x.numel()


for _name in ("add", "sub", "mul", "floordiv", "truediv", "neg"):
    converts("symbolic", f"operator.{_name}")(getattr(operator, _name))


@converts("symbolic", "operator.getitem")
def _getitem(values: Sequence[Any], i: int) -> Any:
    """One output of a multi-output op."""
    if values[i] is _NOT_CONVERTED:
        raise _Unsupported(f"output {i} of this op (e.g. layer_norm's mean, max_pool2d's indices) is not converted")
    return values[i]


@converts("symbolic", "aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
          "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg")
def _assertion(*args: Any, **kwargs: Any) -> None:
    """Nothing: torch's run-time assertions on metadata nir checks while converting."""
    return None
