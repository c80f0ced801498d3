"""Precision policies for `nir.compile(fn, precision=...)`: which dtype contractions and convolutions
compute in, as a pass over the program.

``"bf16"``: every float32 `contract` and `conv2d` takes bfloat16 operands and accumulates in float32
(`contract_wide`/`conv2d_wide`, whose result is the float32 accumulator); weights (operands computed from
constants alone) are rounded to bfloat16 once, here, at compile time; activations are cast where they
are used; every other op stays in float32. This is the mixed precision of torch.autocast(bfloat16) for
matmuls and convolutions, without autocast's bfloat16 outputs.
"""

from __future__ import annotations

from ..ir import Program, verify
from ..types import numpy_dtype
from .ptq import quantizable
from .rewrite import WIDENED, Rewriter, StaticValues

__all__ = ["PRECISIONS", "apply_precision"]

# policy name -> the dtype contractions and convolutions take (None: leave the program alone)
PRECISIONS: dict[str, str | None] = {"fp32": None, "float32": None, "bf16": "bfloat16", "bfloat16": "bfloat16"}


def apply_precision(program: Program, precision: str) -> Program:
    """``program`` under the precision policy ``precision`` (a key of `PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; precisions: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    targets = quantizable(program) if dtype is not None else []
    if not targets:
        return program
    static = StaticValues(program)
    chosen = {id(e) for e in targets}
    rw = Rewriter(program)
    for e in program.eqns:
        if id(e) not in chosen:
            rw.keep(e)
            continue
        operands = [rw.constant(static.value(v).astype(numpy_dtype(dtype)), v.type.with_dtype(dtype), where=e.where)
                    if static.is_static(v) else rw.cast(v, dtype, where=e.where) for v in e.inputs]
        rw.add(WIDENED[e.prim], operands, where=e.where, out=e.out, **e.kwargs)
    return verify(rw.build())
