"""Elementwise primitives: unary and binary maps, comparisons, `where`, `cast`; operands broadcast by name."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..types import TensorType, is_float, numpy_dtype
from ._core import Impl, Rule, _fail, _register, to_order


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
