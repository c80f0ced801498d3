"""Every nir primitive, once: its parameters, its named-shape rule, its dtype rule and its reference
implementation (numpy), side by side — one module per family (elementwise, creation, reductions,
cumulative, contraction, windows, layout, control).

No primitive refers to an axis number. A rule receives the input `TensorType`s and the params and
returns the output `TensorType` (raising `NamedShapeError`); a reference implementation receives
numpy arrays whose axes follow their types' logical order and returns an array in the output type's
logical order. The reference interpreter (`nir.interpret`) is these implementations run in sequence,
and it is the definition every backend is tested against.
"""

from __future__ import annotations

from ..types import format_dims
from ._core import PRIMITIVES, Impl, Primitive, Rule, get, to_order
from . import control, creation, contraction, cumulative, elementwise, layout, reductions, windows  # noqa: F401  (registers)
from . import quant  # noqa: F401  (registers; after contraction and windows, whose rules it reuses)
from .elementwise import BINARY, UNARY
from .reductions import REDUCTIONS


def describe() -> str:
    """The op set on one screen: name, kind, arity, what it does."""
    rows = [f"{p.name:<12} {p.kind:<14} {('*' if p.arity is None else p.arity)!s:<3} {p.doc}"
            for p in sorted(PRIMITIVES.values(), key=lambda p: (p.kind, p.name))]
    return "\n".join(rows)


__all__ = ["Primitive", "PRIMITIVES", "Rule", "Impl", "get", "to_order", "describe", "UNARY", "BINARY",
           "REDUCTIONS", "format_dims"]
