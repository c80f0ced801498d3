"""Building blocks for the VJP rules that sit beside each primitive.

A rule has the signature ``vjp(ct, *inputs, out, needs, **params) -> tuple`` : ``ct`` is the cotangent of
the output (a NamedTensor with the output's dims, in any order), ``inputs`` the primal inputs and
``out`` the primal output (NamedTensors), ``needs[i]`` whether input ``i`` wants a cotangent; it
returns one cotangent per input (None where not needed or not defined, e.g. integer inputs). Every
helper here applies primitives by their IR names (no positional rules), eagerly or into the active
trace, so a rule's result is an ordinary nir computation: it compiles on every backend and can be
differentiated again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..types import TensorType

if TYPE_CHECKING:  # pragma: no cover
    from ..tensor import NamedTensor


def emit(prim: str, *xs: "NamedTensor", **params: Any) -> "NamedTensor":
    """Apply primitive ``prim`` to ``xs`` (imported lazily: nir.tensor imports the op registry)."""
    from ..tensor import bind
    return bind(prim, list(xs), **params)


def scalar(value: float, dtype: str) -> "NamedTensor":
    """A 0-d tensor."""
    return emit("full", value=value, dims=(), dtype=dtype)


def full(t: TensorType, value: float) -> "NamedTensor":
    """A tensor of type ``t`` filled with ``value``."""
    return emit("full", value=value, dims=t.dims, dtype=t.dtype)


def zeros(t: TensorType) -> "NamedTensor":
    return full(t, 0.0)


def add(a: "NamedTensor", b: "NamedTensor") -> "NamedTensor":
    return emit("add", a, b)


def sub(a: "NamedTensor", b: "NamedTensor") -> "NamedTensor":
    return emit("sub", a, b)


def mul(a: "NamedTensor", b: "NamedTensor") -> "NamedTensor":
    return emit("mul", a, b)


def div(a: "NamedTensor", b: "NamedTensor") -> "NamedTensor":
    return emit("div", a, b)


def neg(a: "NamedTensor") -> "NamedTensor":
    return emit("neg", a)


def scale(a: "NamedTensor", c: float) -> "NamedTensor":
    """``a * c`` for a Python number ``c``."""
    return mul(a, scalar(c, a.dtype))


def where(cond: "NamedTensor", a: "NamedTensor", b: "NamedTensor") -> "NamedTensor":
    return emit("where", cond, a, b)


def mask(cond: "NamedTensor", a: "NamedTensor") -> "NamedTensor":
    """``a`` where ``cond``, else 0."""
    return where(cond, a, scalar(0.0, a.dtype))


def cast(a: "NamedTensor", dtype: str) -> "NamedTensor":
    return a if a.dtype == dtype else emit("cast", a, dtype=dtype)


def reduce_sum(a: "NamedTensor", dims: Sequence[str]) -> "NamedTensor":
    return emit("reduce_sum", a, dims=tuple(dims)) if dims else a


def to_type(x: "NamedTensor", t: TensorType) -> "NamedTensor":
    """``x`` in the dim order of ``t``, inserting (and expanding) the dims of ``t`` it lacks."""
    return x if x.type.dims == t.dims else emit("align", x, dims=t.dims)


def expand_to(x: "NamedTensor", t: TensorType) -> "NamedTensor":
    """``x`` (whose dims are a subset of ``t``'s) broadcast to all of ``t``'s dims, in ``t``'s order."""
    return to_type(x, t)


def unbroadcast(ct: "NamedTensor", t: TensorType) -> "NamedTensor":
    """The cotangent of an operand of type ``t`` that was broadcast (by name, or from size 1) into
    ``ct``'s dims: sum over the dims it gained, in ``t``'s dim order."""
    gained = [n for n, s in ct.type.dims if n not in t.names or (t.size(n) == 1 and s != 1)]
    return to_type(reduce_sum(ct, gained), t)


def rename(x: "NamedTensor", mapping: dict[str, str]) -> "NamedTensor":
    mapping = {k: v for k, v in mapping.items() if k != v}
    return emit("rename", x, mapping=tuple(mapping.items())) if mapping else x


def pad(x: "NamedTensor", pads: dict[str, tuple[int, int, int]], value: float = 0.0) -> "NamedTensor":
    """`pad` by name: ``{dim: (low, high, interior)}``; dims with nothing to do are left out."""
    config = tuple((n, *p) for n, p in pads.items() if p != (0, 0, 0))
    return emit("pad", x, pads=config, value=float(value)) if config else x


def none_unless(needs: Sequence[bool], *cts: Any) -> tuple[Any, ...]:
    """``cts`` with the entries whose ``needs`` is false replaced by None (for cheap rules that compute
    every cotangent anyway)."""
    return tuple(c if n else None for c, n in zip(cts, needs))
