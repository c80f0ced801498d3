"""Cumulative primitives: `cumsum` and `cumprod` along one named dim (torch.cumsum / torch.cumprod).

``reverse=True`` accumulates from the end of the dim (``flip(cumsum(flip(x)))``), which is what a
cumulative sum's gradient needs. float16/bfloat16 accumulate in float32 and round each result back,
like the other sums of the reference. Bool inputs are refused: torch sums bools as int64, so callers
cast first (the named API does).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..types import TensorType
from . import _ad as ad
from ._core import _check_present, _fail, _register, defvjp

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


# ------------------------------------------------------------------------------------------------
# reverse-mode rules (see nir/ops/_ad.py)
# ------------------------------------------------------------------------------------------------

def _cumsum_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str, reverse: bool) -> tuple:
    """Each input reaches every later (earlier, when ``reverse``) output: a cumsum the other way."""
    return (ad.to_type(ad.emit("cumsum", ct, dim=dim, reverse=not reverse), x.type),)


def _cumprod_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str, reverse: bool) -> tuple:
    """``sum_{j >= i} ct_j * y_j / x_i``, exact with zeros (as PyTorch): that formula holds before the first
    zero along the accumulation and gives 0 after it; at the first zero the derivative is the same sum
    over the cumulative product with that zero replaced by 1."""
    one, zero = ad.scalar(1.0, x.dtype), ad.scalar(0.0, x.dtype)
    is_zero = ad.emit("eq", x, zero)
    seen = ad.emit("cumsum", ad.cast(is_zero, "int32"), dim=dim, reverse=reverse)
    first_zero = ad.emit("logical_and", is_zero, ad.emit("eq", seen, ad.scalar(1, "int32")))
    back = not reverse
    general = ad.div(ad.emit("cumsum", ad.mul(ct, out), dim=dim, reverse=back), ad.where(is_zero, one, x))
    skipped = ad.emit("cumprod", ad.where(first_zero, one, x), dim=dim, reverse=reverse)
    at_zero = ad.emit("cumsum", ad.mul(ct, skipped), dim=dim, reverse=back)
    return (ad.to_type(ad.where(first_zero, at_zero, general), x.type),)


defvjp("cumsum", _cumsum_vjp)
defvjp("cumprod", _cumprod_vjp)
