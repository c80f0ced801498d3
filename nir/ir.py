"""The nir IR: a `Program` is a list of equations over values whose types are ``{name: size}`` plus
dtype. Programs are immutable; passes return new ones. The builder checks each equation against its
primitive's rule as it is added; `verify` re-checks a whole program independently of how it was built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from . import ops
from .types import NamedShapeError, TensorType

__all__ = ["Value", "Eqn", "Program", "Builder", "verify", "VerifyError", "freeze_params"]


@dataclass(frozen=True)
class Value:
    """An SSA value. ``layout`` is an optional physical dimension order chosen by a pass or the tuner;
    it never changes what the program computes, and the fingerprint ignores it."""

    id: int
    type: TensorType
    layout: tuple[str, ...] | None = None

    @property
    def physical_order(self) -> tuple[str, ...]:
        """The dimension order backends should use in memory (the logical order unless a layout is set)."""
        return self.layout if self.layout is not None else self.type.names

    def __str__(self) -> str:
        return f"%{self.id}"


def freeze_params(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Params as a sorted tuple of (key, value) with lists turned into tuples, so equations hash."""
    def freeze(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        if isinstance(v, dict):
            return tuple((k, freeze(x)) for k, x in v.items())
        return v
    return tuple(sorted((k, freeze(v)) for k, v in params.items()))


@dataclass(frozen=True)
class Eqn:
    """``outputs = prim[params](inputs)``. ``where`` is the user's source line that created it."""

    prim: str
    inputs: tuple[Value, ...]
    params: tuple[tuple[str, Any], ...]
    outputs: tuple[Value, ...]
    where: str = field(default="", compare=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def out(self) -> Value:
        return self.outputs[0]


@dataclass(frozen=True)
class Program:
    """A named-tensor program: inputs, equations in order, outputs."""

    inputs: tuple[Value, ...]
    eqns: tuple[Eqn, ...]
    outputs: tuple[Value, ...]

    def __str__(self) -> str:
        """The readable text form: like `text`, but constants over 64 bytes are shown by size and hash."""
        from .text import print_program
        return print_program(self, elide_bytes=64)

    @property
    def text(self) -> str:
        """The complete text form, constants included (parse it back with `nir.parse`)."""
        from .text import print_program
        return print_program(self)

    def fingerprint(self) -> str:
        """A structural hash: equal for programs that differ only in value ids or physical layouts."""
        from .text import print_program
        return hashlib.sha256(print_program(self, canonical=True).encode()).hexdigest()[:16]

    def values(self) -> list[Value]:
        """Every value, inputs first then each equation's outputs."""
        return list(self.inputs) + [v for e in self.eqns for v in e.outputs]

    def with_layouts(self, layouts: Mapping[int, Sequence[str]]) -> "Program":
        """A copy whose values with ids in ``layouts`` carry that physical order."""
        def lay(v: Value) -> Value:
            if v.id not in layouts:
                return v
            order = tuple(layouts[v.id])
            if sorted(order) != sorted(v.type.names):
                raise NamedShapeError(f"layout {order} of %{v.id} is not a permutation of {v.type.pretty()}")
            return replace(v, layout=order)
        eqns = tuple(replace(e, inputs=tuple(map(lay, e.inputs)), outputs=tuple(map(lay, e.outputs)))
                     for e in self.eqns)
        return Program(tuple(map(lay, self.inputs)), eqns, tuple(map(lay, self.outputs)))

    def prims(self) -> set[str]:
        return {e.prim for e in self.eqns}


class Builder:
    """Builds a Program one equation at a time, checking each against its primitive's rule."""

    def __init__(self) -> None:
        self._next = 0
        self.inputs: list[Value] = []
        self.eqns: list[Eqn] = []

    def _value(self, t: TensorType) -> Value:
        v = Value(self._next, t)
        self._next += 1
        return v

    def input(self, t: TensorType) -> Value:
        """Add a program input of type ``t``."""
        v = self._value(t)
        self.inputs.append(v)
        return v

    def add(self, prim: str, inputs: Sequence[Value], where: str = "", **params: Any) -> Value:
        """Append ``prim[params](inputs)`` and return its output value. Raises NamedShapeError."""
        out_type = infer(prim, [v.type for v in inputs], params)
        v = self._value(out_type)
        self.eqns.append(Eqn(prim, tuple(inputs), freeze_params(params), (v,), where))
        return v

    def build(self, outputs: Iterable[Value]) -> Program:
        return Program(tuple(self.inputs), tuple(self.eqns), tuple(outputs))


def infer(prim: str, types: Sequence[TensorType], params: Mapping[str, Any]) -> TensorType:
    """Apply ``prim``'s rule to input types and params."""
    p = ops.get(prim)
    if p.arity is not None and len(types) != p.arity:
        raise NamedShapeError(f"{prim}: takes {p.arity} inputs, got {len(types)}")
    try:
        return p.rule(*types, **dict(params))
    except TypeError as e:
        raise NamedShapeError(f"{prim}: bad parameters {sorted(params)}: {e}") from None


class VerifyError(NamedShapeError):
    """A program is malformed: a value used before definition, or an equation that breaks its rule."""


def verify(program: Program) -> Program:
    """Check every equation of ``program`` against its rule; return the program unchanged.

    Cheap enough to run after every pass. Checks: values defined once and before use, known
    primitives, output types equal to what the rules infer, layouts that are permutations.
    """
    defined: set[int] = set()

    def define(v: Value, where: str) -> None:
        if v.id in defined:
            raise VerifyError(f"{where}: %{v.id} is defined twice")
        if v.layout is not None and sorted(v.layout) != sorted(v.type.names):
            raise VerifyError(f"{where}: layout {v.layout} of %{v.id} is not a permutation of {v.type.pretty()}")
        defined.add(v.id)

    for v in program.inputs:
        define(v, "inputs")
    for i, e in enumerate(program.eqns):
        where = f"equation {i} ({e.prim})"
        for v in e.inputs:
            if v.id not in defined:
                raise VerifyError(f"{where}: uses %{v.id} before it is defined")
        try:
            want = infer(e.prim, [v.type for v in e.inputs], e.kwargs)
        except NamedShapeError as err:
            raise VerifyError(f"{where}: {err}") from None
        if len(e.outputs) != 1 or e.outputs[0].type != want:
            got = ", ".join(str(v.type) for v in e.outputs)
            raise VerifyError(f"{where}: output type {got} but the rule gives {want}")
        for v in e.outputs:
            define(v, where)
    for v in program.outputs:
        if v.id not in defined:
            raise VerifyError(f"outputs: %{v.id} is never defined")
    return program
