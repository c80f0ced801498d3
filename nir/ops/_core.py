"""The primitive registry: `Primitive`, `PRIMITIVES`, registration and the helpers every family uses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..types import NamedShapeError, TensorType

Rule = Callable[..., TensorType]
Impl = Callable[..., np.ndarray]
# vjp(ct, *inputs, out=..., needs=..., **params) -> one cotangent (or None) per input; see nir/ops/_ad.py.
# A primitive with multiple_results gets a list of cotangents (None: zero) and ``out`` as a list.
VJP = Callable[..., Sequence[Any]]


@dataclass(frozen=True)
class Primitive:
    """One IR operation: ``rule(*in_types, **params) -> out_type``, ``impl(*arrays, **params)``.

    ``kind`` groups primitives for backends and the fuzzer: elementwise, reduction, layout,
    contraction, window, normalization, creation, index, control.

    ``multiple_results``: the rule returns a tuple of types and the implementation a list of arrays,
    one per output (scan's carries and stacked outputs); otherwise exactly one of each.

    ``vjp`` is the reverse-mode rule (set with `defvjp`, right below the registration): it receives the
    output's cotangent and the inputs as NamedTensors and returns their cotangents, built from nir
    primitives, so a gradient program is an ordinary program. None: no rule (a primitive whose output
    is never a float, or that has no inputs).
    """

    name: str
    kind: str
    arity: int | None  # None: variadic
    rule: Rule = field(repr=False)
    impl: Impl = field(repr=False)
    doc: str = ""
    multiple_results: bool = False
    vjp: VJP | None = field(default=None, repr=False)


PRIMITIVES: dict[str, Primitive] = {}


def _register(name: str, kind: str, arity: int | None, rule: Rule, impl: Impl, doc: str = "",
              multiple_results: bool = False) -> None:
    PRIMITIVES[name] = Primitive(name, kind, arity, rule, impl, doc, multiple_results)


def defvjp(name: str, rule: VJP) -> None:
    """Attach the reverse-mode rule ``rule`` to primitive ``name`` (registered before)."""
    PRIMITIVES[name] = replace(PRIMITIVES[name], vjp=rule)


def get(name: str) -> Primitive:
    """The primitive called ``name``; a clear error for an unknown one."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise NamedShapeError(f"unknown primitive {name!r}; known: {', '.join(sorted(PRIMITIVES))}") from None


def _fail(op: str, msg: str, *types: TensorType, fix: str = "") -> NamedShapeError:
    shapes = " and ".join(t.pretty() for t in types)
    text = f"{op}: {msg}"
    if shapes:
        text += f" (named shapes {shapes})"
    if fix:
        text += f". {fix}"
    return NamedShapeError(text)


def to_order(x: np.ndarray, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    """Move the axes of ``x`` (named ``src``) into the order ``dst``; names of ``dst`` missing from
    ``src`` become size-1 axes, ready for numpy broadcasting. Every name of ``src`` must be in ``dst``."""
    perm = [src.index(n) for n in dst if n in src]
    y = np.transpose(x, perm) if perm != list(range(len(src))) else x
    return y.reshape([x.shape[src.index(n)] if n in src else 1 for n in dst])

def _check_present(op: str, x: TensorType, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in x.names]
    if missing:
        raise _fail(op, f"dims {missing} are not in the input", x,
                    fix=f"The input's dims are {list(x.names)}; check the spelling or rename()")
    if len(set(names)) != len(names):
        raise _fail(op, f"dims {list(names)} name a dim twice", x)
