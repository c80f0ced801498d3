"""The reference interpreter: the living definition of what a Program means.

Arrays follow their types' logical order. float16 and bfloat16 are computed in float32 and rounded
to their dtype after every equation, which is the contract backends are tested against (inside the
sub-programs of scan and cond too: those run equation by equation like any program).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import ops
from .ir import Program
from .types import NamedShapeError, TensorType, numpy_dtype

__all__ = ["interpret", "eval_eqn", "evaluate"]

_LOW = ("float16", "bfloat16")


def eval_eqn(prim: str, args: Sequence[np.ndarray], types, out, params: dict) -> np.ndarray:
    """Evaluate one single-output primitive on numpy arrays with the reference implementation."""
    (y,) = evaluate(prim, args, types, (out,), params)
    return y


def evaluate(prim: str, args: Sequence[np.ndarray], types: Sequence[TensorType], outs: Sequence[TensorType],
             params: dict) -> list[np.ndarray]:
    """Evaluate any primitive on numpy arrays: one array per type in ``outs``."""
    p = ops.get(prim)
    if prim != "cast" and not any(isinstance(v, Program) for v in params.values()):
        # (sub-programs take their inputs as they are and round after each of their own equations)
        args = [a.astype(np.float32) if t.dtype in _LOW else a for a, t in zip(args, types)]
    with np.errstate(all="ignore"):  # NaN/Inf propagate as IEEE says, like every backend
        if p.multiple_results:
            ys = p.impl(*args, types=list(types), out=list(outs), **params)
        else:
            ys = [p.impl(*args, types=list(types), out=outs[0], **params)]
    return [_conform(prim, np.asarray(y), t) for y, t in zip(ys, outs, strict=True)]


def _conform(prim: str, y: np.ndarray, out: TensorType) -> np.ndarray:
    want = numpy_dtype(out.dtype)
    if y.dtype != want:
        y = y.astype(want)
    if y.shape != out.shape:  # a rule/impl disagreement is a bug in nir, never the user's fault
        raise AssertionError(f"{prim}: reference gave shape {y.shape}, rule says {out.shape}")
    return y if y.flags.c_contiguous else np.copy(y, order="C")


def interpret(program: Program, *inputs: np.ndarray) -> list[np.ndarray]:
    """Run ``program`` on numpy arrays (each in its input's logical order); return the outputs."""
    if len(inputs) != len(program.inputs):
        raise NamedShapeError(f"the program takes {len(program.inputs)} inputs, got {len(inputs)}")
    env: dict[int, np.ndarray] = {}
    for v, a in zip(program.inputs, inputs):
        a = np.asarray(a)
        if a.shape != v.type.shape:
            raise NamedShapeError(f"input %{v.id} should have shape {v.type.pretty()}, got {a.shape}")
        env[v.id] = a.astype(numpy_dtype(v.type.dtype), copy=False)
    for e in program.eqns:
        ys = evaluate(e.prim, [env[v.id] for v in e.inputs], [v.type for v in e.inputs],
                      [v.type for v in e.outputs], e.kwargs)
        env.update((v.id, y) for v, y in zip(e.outputs, ys))
    return [env[v.id] for v in program.outputs]
