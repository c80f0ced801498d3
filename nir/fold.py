"""Constant folding: an equation whose inputs are all constants is evaluated once, by the reference
implementation, and becomes a constant.

Why: a converted torch model carries its parameters as constants, and the conversion renames and aligns
them (batch norm's per-channel vectors, for instance) with equations on constants only: 480 of them in
torchvision's ResNet-50. TVM's own FoldConstant pass compiles and runs each such operation with LLVM,
which took 42 of the 44 s of ResNet-50's Relax pipeline here, on every build (and the tuner builds a
program several times). numpy does the same in well under a second.

Equations that would make a constant larger than their largest input (a broadcast) are left alone, so
programs do not grow; so are equations with sub-programs or several outputs.
"""

from __future__ import annotations

import numpy as np

from .interpret import eval_eqn
from .ir import Eqn, Program, freeze_params
from .types import numpy_dtype

__all__ = ["fold_constants"]

SOURCES = ("constant", "full", "iota")  # deterministic equations without inputs


def _nbytes(t: object) -> int:
    return t.numel * numpy_dtype(t.dtype).itemsize  # type: ignore[attr-defined]


def fold_constants(program: Program) -> Program:
    """``program`` with its foldable equations replaced by constants and the constants nothing uses any
    more removed (the same program when nothing folds). Layouts of the folded values are kept."""
    arrays: dict[int, np.ndarray] = {}
    producers: dict[int, Eqn] = {}
    eqns: list[Eqn] = []
    folded = False

    def array(value_id: int) -> np.ndarray:
        if value_id not in arrays:
            e = producers[value_id]
            arrays[value_id] = eval_eqn(e.prim, [], [], e.out.type, e.kwargs)
        return arrays[value_id]

    for e in program.eqns:
        if e.prim in SOURCES and not e.inputs:
            producers[e.out.id] = e
            eqns.append(e)
            continue
        if (e.inputs and len(e.outputs) == 1 and not e.subprograms and all(v.id in producers for v in e.inputs)
                and _nbytes(e.out.type) <= max(_nbytes(v.type) for v in e.inputs)):
            y = eval_eqn(e.prim, [array(v.id) for v in e.inputs], [v.type for v in e.inputs], e.out.type, e.kwargs)
            arrays[e.out.id] = y
            const = Eqn("constant", (), freeze_params({"data": y.tobytes(), "dims": e.out.type.dims,
                                                       "dtype": e.out.type.dtype}), e.outputs, e.where)
            producers[e.out.id] = const
            eqns.append(const)
            folded = True
            continue
        eqns.append(e)
    if not folded:
        return program
    used = {v.id for v in program.outputs} | {v.id for e in eqns for v in e.inputs}  # sub-programs are closed
    kept = tuple(e for e in eqns if e.prim not in SOURCES or e.inputs or e.out.id in used)
    return Program(program.inputs, kept, program.outputs)

