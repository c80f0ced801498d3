"""Contraction by name: `contract` (einsum over named dims)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..types import TensorType
from ._core import _fail, _register


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
