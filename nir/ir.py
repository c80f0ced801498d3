"""The nir IR: a `Program` is a list of equations over values whose types are ``{name: size}`` plus
dtype. Programs are immutable; passes return new ones. The builder checks each equation against its
primitive's rule as it is added; `verify` re-checks a whole program independently of how it was built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from . import ops
from .types import NamedShapeError, TensorType

__all__ = ["Value", "Eqn", "Program", "Builder", "verify", "VerifyError", "freeze_params", "infer", "infer_all"]


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
    """``outputs = prim[params](inputs)``. ``where`` is the user's source line that created it.

    Most primitives have one output (`out`); those with ``multiple_results`` (scan, cond) have any
    number. A parameter may be a sub-program (`subprograms`): a closed `Program` that uses only its
    own inputs.
    """

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
        """The output of a single-output equation."""
        if len(self.outputs) != 1:
            raise AttributeError(f"{self.prim} has {len(self.outputs)} outputs; use .outputs")
        return self.outputs[0]

    @property
    def subprograms(self) -> tuple[tuple[str, "Program"], ...]:
        """``(param name, program)`` for each parameter that is a sub-program (scan's body, cond's branches)."""
        return tuple((k, v) for k, v in self.params if isinstance(v, Program))


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
        """Every primitive used, sub-programs included."""
        return {p for e in self.eqns for p in (e.prim, *(q for _, sub in e.subprograms for q in sub.prims()))}

    def walk(self) -> Iterator["Program"]:
        """This program, then every sub-program at every depth."""
        yield self
        for e in self.eqns:
            for _, sub in e.subprograms:
                yield from sub.walk()

    def map_subprograms(self, fn: Callable[["Program"], "Program"]) -> "Program":
        """A copy whose sub-programs (at every depth, innermost first) are replaced by ``fn(sub)``: how a
        pass that rewrites programs reaches the bodies of scans and the branches of conds."""
        def rewrite(e: Eqn) -> Eqn:
            if not e.subprograms:
                return e
            subs = {k: fn(v.map_subprograms(fn)) for k, v in e.subprograms}
            return replace(e, params=tuple((k, subs.get(k, v)) for k, v in e.params))
        return Program(self.inputs, tuple(rewrite(e) for e in self.eqns), self.outputs)


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
        if ops.get(prim).multiple_results:
            raise NamedShapeError(f"{prim} has several outputs: add it with Builder.add_multi")
        (v,) = self.add_multi(prim, inputs, where, **params)
        return v

    def add_multi(self, prim: str, inputs: Sequence[Value], where: str = "", **params: Any) -> tuple[Value, ...]:
        """Append ``prim[params](inputs)`` and return all its output values (any primitive)."""
        outs = tuple(self._value(t) for t in infer_all(prim, [v.type for v in inputs], params))
        self.eqns.append(Eqn(prim, tuple(inputs), freeze_params(params), outs, where))
        return outs

    def build(self, outputs: Iterable[Value]) -> Program:
        return Program(tuple(self.inputs), tuple(self.eqns), tuple(outputs))


def infer(prim: str, types: Sequence[TensorType], params: Mapping[str, Any]) -> TensorType:
    """Apply the rule of single-output primitive ``prim`` to input types and params."""
    (t,) = infer_all(prim, types, params)
    return t


def infer_all(prim: str, types: Sequence[TensorType], params: Mapping[str, Any]) -> tuple[TensorType, ...]:
    """Apply ``prim``'s rule to input types and params: the type of every output."""
    p = ops.get(prim)
    if p.arity is not None and len(types) != p.arity:
        raise NamedShapeError(f"{prim}: takes {p.arity} inputs, got {len(types)}")
    try:
        out = p.rule(*types, **dict(params))
    except TypeError as e:
        raise NamedShapeError(f"{prim}: bad parameters {sorted(params)}: {e}") from None
    return tuple(out) if p.multiple_results else (out,)


class VerifyError(NamedShapeError):
    """A program is malformed: a value used before definition, or an equation that breaks its rule."""


def verify(program: Program) -> Program:
    """Check every equation of ``program`` against its rule; return the program unchanged.

    Cheap enough to run after every pass. Checks: values defined once and before use, known
    primitives, output types equal to what the rules infer, layouts that are permutations, and every
    sub-program the same way (each is closed: it may use only its own inputs; a value captured from
    the enclosing program must be passed in as an input).
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
        for name, sub in e.subprograms:
            try:
                verify(sub)
            except VerifyError as err:
                raise VerifyError(f"{where}, in its {name}: {err}") from None
        try:
            want = infer_all(e.prim, [v.type for v in e.inputs], e.kwargs)
        except NamedShapeError as err:
            raise VerifyError(f"{where}: {err}") from None
        if tuple(v.type for v in e.outputs) != want:
            got = ", ".join(str(v.type) for v in e.outputs)
            raise VerifyError(f"{where}: output type {got} but the rule gives {', '.join(map(str, want))}")
        for v in e.outputs:
            define(v, where)
    for v in program.outputs:
        if v.id not in defined:
            raise VerifyError(f"outputs: %{v.id} is never defined")
    return program
