"""Contraction by name: `contract` (einsum over named dims)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..types import TensorType
from . import _ad as ad
from ._core import _fail, _register, defvjp


def _contract_rule(a: TensorType, b: TensorType, *, over: tuple[str, ...]) -> TensorType:
    if a.dtype != b.dtype:
        raise _fail("contract", f"operands have different dtypes {a.dtype} and {b.dtype}", a, b,
                    fix="Cast one operand with .to(dtype)")
    for n in over:
        if n not in a.names or n not in b.names:
            raise _fail("contract", f"contracted dim {n!r} must be in both operands", a, b,
                        fix="rename() the dim of one operand so that both use the same name")
    for n in set(a.names) & set(b.names):
        if a.size(n) != b.size(n):
            raise _fail("contract", f"dim {n!r} has size {a.size(n)} and {b.size(n)}", a, b,
                        fix="A dim shared by name must have the same size in both operands")
    batch = [(n, s) for n, s in a.dims if n in b.names and n not in over]
    a_free = [(n, s) for n, s in a.dims if n not in b.names]
    b_free = [(n, s) for n, s in b.dims if n not in a.names]
    return TensorType(tuple(batch + a_free + b_free), a.dtype)


def _contract_impl(a: np.ndarray, b: np.ndarray, *, types, out: TensorType, over: tuple[str, ...]) -> np.ndarray:
    letters: dict[str, str] = {}
    def sub(names: Sequence[str]) -> str:
        return "".join(letters.setdefault(n, chr(ord("a") + len(letters))) for n in names)
    spec = f"{sub(types[0].names)},{sub(types[1].names)}->{sub(out.names)}"
    return np.einsum(spec, a, b, optimize=True)  # BLAS for large contractions


_register("contract", "contraction", 2, _contract_rule, _contract_impl,
          "sum over the `over` dims of a*b; dims in both and not contracted are batch dims, kept once")


def _contract_vjp(ct: Any, a: Any, b: Any, *, out: Any, needs: Sequence[bool], over: tuple[str, ...]) -> tuple:
    """Each operand's cotangent contracts the output's cotangent with the other operand over that
    operand's free dims: batch dims stay batch dims, and the contracted dims come back."""
    a_free = tuple(n for n in a.type.names if n not in b.type.names)
    b_free = tuple(n for n in b.type.names if n not in a.type.names)
    return (ad.to_type(ad.emit("contract", ct, b, over=b_free), a.type) if needs[0] else None,
            ad.to_type(ad.emit("contract", ct, a, over=a_free), b.type) if needs[1] else None)


defvjp("contract", _contract_vjp)
