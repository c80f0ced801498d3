"""Program surgery shared by the quantization and precision passes: folding the values a program
computes from constants alone, appending equations with fresh value ids, dropping dead equations.

A rewrite keeps every value id of the source program; a rewritten equation's replacement defines the
original output id again, so nothing downstream needs renumbering.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..interpret import eval_eqn
from ..ir import Eqn, Program, Value, freeze_params, infer
from ..types import TensorType, numpy_dtype

__all__ = ["Rewriter", "StaticValues", "dead_code_elimination", "WIDENED"]

# the float primitives a pass can replace by a widening one, and their replacements
WIDENED = {"contract": "contract_wide", "conv2d": "conv2d_wide"}


class StaticValues:
    """The values of ``program`` computed from constants alone (a weight and its renames/aligns), folded
    on demand with the reference implementations."""

    def __init__(self, program: Program) -> None:
        self._producer = {o.id: e for e in program.eqns for o in e.outputs}
        self._inputs = {v.id for v in program.inputs}
        self._static: dict[int, bool] = {}
        self._values: dict[int, np.ndarray] = {}

    def is_static(self, v: Value) -> bool:
        """Whether ``v`` depends on no program input."""
        if v.id not in self._static:
            e = self._producer.get(v.id)
            self._static[v.id] = (v.id not in self._inputs and e is not None and len(e.outputs) == 1
                                  and not any(isinstance(p, Program) for _, p in e.params)
                                  and all(self.is_static(i) for i in e.inputs))
        return self._static[v.id]

    def value(self, v: Value) -> np.ndarray:
        """The folded value of static ``v``, in its type's logical order."""
        if v.id not in self._values:
            e = self._producer[v.id]
            self._values[v.id] = eval_eqn(e.prim, [self.value(i) for i in e.inputs], [i.type for i in e.inputs],
                                          v.type, e.kwargs)
        return self._values[v.id]


class Rewriter:
    """Collects the equations of a rewritten program; new values get ids above the source's."""

    def __init__(self, program: Program) -> None:
        self.source = program
        self.eqns: list[Eqn] = []
        self._next = 1 + max((v.id for v in program.values()), default=-1)

    def keep(self, eqn: Eqn) -> None:
        """Copy ``eqn`` unchanged."""
        self.eqns.append(eqn)

    def add(self, prim: str, inputs: Iterable[Value], *, where: str = "", out: Value | None = None,
            **params: Any) -> Value:
        """Append ``prim[params](inputs)``; its output is ``out`` (an id of the source, re-defined; its
        type must be what the rule gives) or a fresh value."""
        inputs = tuple(inputs)
        t = infer(prim, [v.type for v in inputs], params)
        if out is None:
            out = Value(self._next, t)
            self._next += 1
        elif out.type != t:  # a bug in a pass, never the user's fault
            raise AssertionError(f"{prim} gives {t}, but it replaces a value of type {out.type}")
        self.eqns.append(Eqn(prim, inputs, freeze_params(params), (out,), where))
        return out

    def constant(self, data: np.ndarray, t: TensorType, where: str = "") -> Value:
        """A constant of type ``t`` holding ``data`` (in ``t``'s logical order)."""
        array = np.ascontiguousarray(np.asarray(data, dtype=numpy_dtype(t.dtype)).reshape(t.shape))
        return self.add("constant", [], where=where, data=array.tobytes(), dims=t.dims, dtype=t.dtype)

    def cast(self, v: Value, dtype: str, where: str = "") -> Value:
        """``v`` converted to ``dtype`` (no equation when it has that dtype)."""
        return v if v.type.dtype == dtype else self.add("cast", [v], where=where, dtype=dtype)

    def build(self) -> Program:
        """The rewritten program, without the equations nothing uses any more."""
        return dead_code_elimination(Program(self.source.inputs, tuple(self.eqns), self.source.outputs))


def dead_code_elimination(program: Program) -> Program:
    """``program`` without the equations whose outputs no output depends on."""
    need = {v.id for v in program.outputs}
    kept = []
    for e in reversed(program.eqns):
        if any(o.id in need for o in e.outputs):
            kept.append(e)
            need.update(v.id for v in e.inputs)
    return Program(program.inputs, tuple(reversed(kept)), program.outputs)
