"""Cumulative primitives: `cumsum` and `cumprod` along one named dim (torch.cumsum / torch.cumprod).

``reverse=True`` accumulates from the end of the dim (``flip(cumsum(flip(x)))``), which is what a
cumulative sum's gradient needs. float16/bfloat16 accumulate in float32 and round each result back,
like the other sums of the reference. Bool inputs are refused: torch sums bools as int64, so callers
cast first (the named API does).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..types import TensorType
from ._core import _check_present, _fail, _register

LOW_PRECISION = ("float16", "bfloat16")


def _cumulative_rule(op: str) -> Callable[..., TensorType]:
    def rule(x: TensorType, *, dim: str, reverse: bool) -> TensorType:
        _check_present(op, x, (dim,))
        if x.dtype == "bool":
            raise _fail(op, "needs a numeric operand, got bool", x, fix="Cast with .to('int64') first")
        return x
    return rule


def _cumulative_impl(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def impl(x: np.ndarray, *, types, out: TensorType, dim: str, reverse: bool) -> np.ndarray:
        ax = types[0].names.index(dim)
        wide = x.astype(np.float32) if types[0].dtype in LOW_PRECISION else x
        if reverse:
            wide = np.flip(wide, ax)
        y = fn(wide, axis=ax, dtype=wide.dtype)
        return (np.flip(y, ax) if reverse else y).astype(x.dtype, copy=False)
    return impl


CUMULATIVE: dict[str, Callable[..., np.ndarray]] = {"cumsum": np.cumsum, "cumprod": np.cumprod}

for _name, _fn in CUMULATIVE.items():
    _register(_name, "cumulative", 1, _cumulative_rule(_name), _cumulative_impl(_fn),
              f"running {'sum' if _name == 'cumsum' else 'product'} along `dim` (from its end when `reverse`)")
