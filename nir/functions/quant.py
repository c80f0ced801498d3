"""Quantization in the named API: int8 codes and their scales, matched BY NAME.

    s = x.abs().amax("N") / 127             # a scale per channel C: its dims say what it is per
    q = nir.quantize_tensor(x, s)           # int8{N, C}
    y = nir.dequantize(q, s)                # float32{N, C}, close to x
    acc = nir.contract_wide(q, w_q, over="C")   # int8 x int8 -> int32

`nir.quantize` (the pass that rewrites a whole program) is built on these primitives.
"""

from __future__ import annotations

from typing import Sequence

from ..tensor import NamedTensor, bind
from ..types import NamedShapeError, check_user_name
from ._common import _pretty


def quantize_tensor(x: NamedTensor, scale: NamedTensor) -> NamedTensor:
    """int8 codes ``round(x / scale)`` (half to even), clipped to [-128, 127], NaN to 0. ``scale``'s
    dims are a subset of ``x``'s, matched by name (``{}``: one scale for the tensor; ``{C}``: per C)."""
    return bind("quantize", [x, scale])


def dequantize(q: NamedTensor, scale: NamedTensor) -> NamedTensor:
    """float32 ``q * scale`` for int8 or int32 ``q``; ``scale``'s dims are a subset of ``q``'s, by name."""
    return bind("dequantize", [q, scale])


def contract_wide(a: NamedTensor, b: NamedTensor, over: str | Sequence[str]) -> NamedTensor:
    """`contract` whose result is the accumulator: int8 x int8 -> int32, bfloat16/float16 -> float32."""
    over = (over,) if isinstance(over, str) else tuple(over)
    for n in over:
        check_user_name(n, "contract_wide")
        if n not in a.names or n not in b.names:
            raise NamedShapeError(f"contract_wide: dim {n!r} is not in both operands (named shapes {_pretty(a, b)}); "
                                  "it sums over dims both operands name")
    return bind("contract_wide", [a, b], over=over)
