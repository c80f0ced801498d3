"""Creation functions: tensor, full/zeros/ones, randn/rand with a seed, arange, *_like."""

from __future__ import annotations

import builtins
import math
from typing import Any, Sequence

import numpy as np

from ..tensor import NamedTensor, _user_names, bind, from_array
from ..types import (NamedShapeError, canonical_dtype)



def _sizes(sizes: tuple[Any, ...]) -> tuple[int, ...]:
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return tuple(int(s) for s in sizes)


def _names_for(sizes: tuple[int, ...], names: Sequence[str | None] | None, op: str) -> tuple[str, ...]:
    names = tuple(names) if names is not None else (None,) * len(sizes)
    if len(names) != len(sizes):
        raise NamedShapeError(f"{op}: {len(names)} names {names} for {len(sizes)} sizes {sizes}")
    return _user_names(names, op)


def _full(op: str, sizes: tuple[Any, ...], fill_value: float, names: Sequence[str | None] | None,
          dtype: Any) -> NamedTensor:
    s = _sizes(sizes)
    dt = canonical_dtype(dtype) if dtype is not None else (
        "bool" if isinstance(fill_value, bool) else "int64" if isinstance(fill_value, int) else "float32")
    return bind("full", [], value=fill_value, dims=tuple(zip(_names_for(s, names, op), s)), dtype=dt)


def full(*sizes: Any, fill_value: float, names: Sequence[str | None] | None = None, dtype: Any = None) -> NamedTensor:
    """A tensor of ``sizes`` filled with ``fill_value``: ``nir.full(2, 3, fill_value=1.5, names=('N', 'C'))``."""
    return _full("full", sizes, fill_value, names, dtype)


def zeros(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32") -> NamedTensor:
    """A tensor of zeros: ``nir.zeros(2, 3, names=('N', 'C'))``."""
    return _full("zeros", sizes, 0, names, dtype)


def ones(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32") -> NamedTensor:
    """A tensor of ones."""
    return _full("ones", sizes, 1, names, dtype)


_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind `randn` and `rand`."""
    global _rng
    _rng = np.random.default_rng(seed)


def randn(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32",
          generator: np.random.Generator | None = None) -> NamedTensor:
    """Standard normal samples. Inside a traced function the samples are drawn once, at trace time."""
    s = _sizes(sizes)
    data = (generator or _rng).standard_normal(s)
    return from_array(data.astype(np.float32) if canonical_dtype(dtype) != "float64" else data,
                      names=names, dtype=dtype)


def rand(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32",
         generator: np.random.Generator | None = None) -> NamedTensor:
    """Uniform samples in [0, 1)."""
    s = _sizes(sizes)
    return from_array((generator or _rng).random(s), names=names, dtype=dtype)


def arange(start: float, end: float | None = None, step: float = 1, *, name: str | None = None,
           dtype: Any = None) -> NamedTensor:
    """``start, start+step, ...`` below ``end`` along one dim named ``name`` (unnamed by default)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must not be 0")
    size = builtins.max(0, math.ceil((end - start) / step))
    dt = canonical_dtype(dtype) if dtype is not None else (
        "int64" if all(isinstance(v, int) for v in (start, end, step)) else "float32")
    (n,) = _names_for((size,), (name,), "arange")
    return bind("iota", [], dim=n, size=size, start=float(start), step=float(step), dtype=dt)


def zeros_like(x: NamedTensor) -> NamedTensor:
    """Zeros with ``x``'s names, shape and dtype."""
    return bind("full", [], value=0, dims=x.type.dims, dtype=x.dtype)


def ones_like(x: NamedTensor) -> NamedTensor:
    """Ones with ``x``'s names, shape and dtype."""
    return bind("full", [], value=1, dims=x.type.dims, dtype=x.dtype)


tensor = from_array
