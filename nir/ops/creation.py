"""Creation primitives: `full`, `iota`, `constant` (no inputs)."""

from __future__ import annotations


import numpy as np

from ..types import TensorType, numpy_dtype
from ._core import _fail, _register


def _full_rule(*, value: float, dims: tuple, dtype: str) -> TensorType:
    return TensorType(tuple(dims), dtype)


def _full_impl(*, types, out: TensorType, value: float, dims: tuple, dtype: str) -> np.ndarray:
    return np.full(out.shape, value, dtype=numpy_dtype(dtype))


def _iota_rule(*, dim: str, size: int, start: float, step: float, dtype: str) -> TensorType:
    return TensorType(((dim, size),), dtype)


def _iota_impl(*, types, out: TensorType, dim: str, size: int, start: float, step: float, dtype: str) -> np.ndarray:
    return (start + step * np.arange(size, dtype=np.float64)).astype(numpy_dtype(dtype))


def _constant_rule(*, data: bytes, dims: tuple, dtype: str) -> TensorType:
    t = TensorType(tuple(dims), dtype)
    if len(data) != t.numel * numpy_dtype(dtype).itemsize:
        raise _fail("constant", f"holds {len(data)} bytes, but {t} needs {t.numel * numpy_dtype(dtype).itemsize}", t)
    return t


def _constant_impl(*, types, out: TensorType, data: bytes, dims: tuple, dtype: str) -> np.ndarray:
    return np.frombuffer(data, dtype=numpy_dtype(dtype)).reshape(out.shape)


_register("full", "creation", 0, _full_rule, _full_impl, "a tensor of `dims` filled with `value`")
_register("iota", "creation", 0, _iota_rule, _iota_impl, "start + step * arange(size) along `dim`")
_register("constant", "creation", 0, _constant_rule, _constant_impl, "a literal array (C order, logical order)")
