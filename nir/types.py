"""Dimension names, dtypes and tensor types: the vocabulary every other module speaks.

A `TensorType` is an ordered mapping ``{name: size}`` plus a dtype. The order is the *logical* order
(what ``.names`` shows a user); it is never a constraint on the physical layout a backend picks.
Dimensions a user left unnamed get generated names that start with ``_`` so that the IR has no
positional special cases; user names may not start with ``_``.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "NamedShapeError", "TensorType", "DTYPES", "canonical_dtype", "numpy_dtype", "is_float",
    "format_dims", "check_user_name", "fresh_name", "is_generated", "promote_dtypes",
]


class NamedShapeError(ValueError):
    """A named-shape rule was broken: the message names the op, shows the named shapes and the fix."""


# dtype name -> rank used for promotion (bool < ints < low-precision floats < float32 < float64)
DTYPES: dict[str, int] = {
    "bool": 0, "int8": 1, "uint8": 1, "int16": 2, "int32": 3, "int64": 4,
    "float16": 5, "bfloat16": 5, "float32": 6, "float64": 7,
}
_SHORT = {"f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
          "i32": "int32", "i64": "int64", "i8": "int8", "u8": "uint8", "i16": "int16"}


def canonical_dtype(dtype: object) -> str:
    """Return the canonical dtype name (``"float32"``, ``"bfloat16"``, ...) of any dtype-like value.

    Accepts strings, numpy dtypes and scalar types, and objects whose ``str()`` ends in a dtype
    name (``torch.float32``, ``jnp.bfloat16``).
    """
    if isinstance(dtype, str):
        name = _SHORT.get(dtype, dtype)
    else:
        try:
            name = np.dtype(dtype).name  # type: ignore[arg-type]
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
    name = {"bool_": "bool", "float": "float32", "int": "int64", "half": "float16",
            "double": "float64", "long": "int64"}.get(name, name)
    if name not in DTYPES:
        raise TypeError(f"unsupported dtype {dtype!r}; nir supports {', '.join(DTYPES)}")
    return name


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype for a canonical dtype name (``bfloat16`` needs the ``ml_dtypes`` package, which
    comes with jax; `nir.extras.MissingDependencyError` says so where it is missing)."""
    if dtype == "bfloat16":
        from .extras import require
        return np.dtype(require("ml_dtypes", "the bfloat16 dtype").bfloat16)
    return np.dtype(dtype)


def is_float(dtype: str) -> bool:
    """Whether ``dtype`` is a floating-point dtype."""
    return dtype in ("float16", "bfloat16", "float32", "float64")


def promote_dtypes(*dtypes: str) -> str:
    """PyTorch-style promotion between tensor dtypes (float16 with bfloat16 gives float32, int8 with uint8 int16)."""
    best = max(dtypes, key=lambda d: DTYPES[d])
    if {"float16", "bfloat16"} <= set(dtypes) and DTYPES[best] == 5:
        return "float32"
    if {"int8", "uint8"} <= set(dtypes) and DTYPES[best] == 1:
        return "int16"  # the smallest type that holds both ranges, as in PyTorch
    return best


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_counter = itertools.count()


def check_user_name(name: object, op: str = "names") -> str:
    """Validate a user-given dimension name and return it.

    Names are identifiers (dots allowed, as in ``fc1.out``) that do not start with ``_``;
    the leading underscore is reserved for names nir generates for unnamed dims.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise NamedShapeError(
            f"{op}: invalid dimension name {name!r}. A name is an identifier such as 'N' or 'fc1.out' "
            "(letters, digits, '_' and '.'; it starts with a letter). Use None for an unnamed dim.")
    return name


def fresh_name() -> str:
    """A new generated dimension name (``_7``), unique within this process."""
    return f"_{next(_counter)}"


def is_generated(name: str) -> bool:
    """Whether ``name`` was generated for a dim the user left unnamed."""
    return name.startswith("_")


def format_dims(dims: Iterable[tuple[str, int]]) -> str:
    """Format named sizes the way errors show them: ``{N: 32, C: 3}`` (generated names as ``None``)."""
    return "{" + ", ".join(f"{'None' if is_generated(n) else n}: {s}" for n, s in dims) + "}"


@dataclass(frozen=True)
class TensorType:
    """An ordered ``{name: size}`` plus dtype. Order is logical (user-facing), not physical."""

    dims: tuple[tuple[str, int], ...]
    dtype: str

    def __post_init__(self) -> None:
        names = [n for n, _ in self.dims]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise NamedShapeError(f"a tensor cannot have two dims with the same name {dup}: "
                                  f"{format_dims(self.dims)}. Use rename() to make the names distinct.")
        for n, s in self.dims:
            if not isinstance(s, (int, np.integer)) or s < 0:
                raise NamedShapeError(f"dim {n!r} has invalid size {s!r} in {format_dims(self.dims)}")

    @staticmethod
    def of(dims: Mapping[str, int] | Iterable[tuple[str, int]], dtype: object = "float32") -> "TensorType":
        """Build a type from a mapping or pairs, e.g. ``TensorType.of({"N": 2, "C": 3})``."""
        items = dims.items() if isinstance(dims, Mapping) else dims
        return TensorType(tuple((str(n), int(s)) for n, s in items), canonical_dtype(dtype))

    # cached: a compiled function's call reads them on every call (the instance is immutable)
    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.dims)

    @functools.cached_property
    def user_names(self) -> tuple[str | None, ...]:
        """The names a user sees: generated names (unnamed dims) become None."""
        return tuple(None if is_generated(n) else n for n, _ in self.dims)

    @functools.cached_property
    def shape(self) -> tuple[int, ...]:
        return tuple(s for _, s in self.dims)

    @functools.cached_property
    def signature(self) -> tuple[tuple[str | None, ...], tuple[int, ...], str]:
        """``(user_names, shape, dtype)``: what a compiled function's signature sees of a value."""
        return (self.user_names, self.shape, self.dtype)

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def size(self, name: str) -> int:
        return self.sizes[name]

    def with_dims(self, dims: Iterable[tuple[str, int]]) -> "TensorType":
        return TensorType(tuple(dims), self.dtype)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.dims, dtype)

    def same_dims(self, other: "TensorType") -> bool:
        """Equal as name->size mappings, ignoring logical order."""
        return self.sizes == other.sizes

    def __str__(self) -> str:
        return f"{self.dtype}{{" + ", ".join(f"{n}:{s}" for n, s in self.dims) + "}"

    def pretty(self) -> str:
        """The user-facing form used in error messages: ``{N: 32, C: 3}``."""
        return format_dims(self.dims)
