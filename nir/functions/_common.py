"""Building blocks shared by the named API's families: unification of names by position, promotion, dim lookup."""

from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from ..ops.elementwise import NOT_FOR_BOOL
from ..tensor import NamedTensor, as_tensor, bind, implicit_dim
from ..types import (NamedShapeError, TensorType, fresh_name,
                    is_float, is_generated, promote_dtypes)

Dim = int | str
TensorLike = NamedTensor | float | int | bool


def _pretty(*ts: NamedTensor) -> str:
    return " and ".join(t.type.pretty() for t in ts)


# ------------------------------------------------------------------------------------------------
# internal building blocks
# ------------------------------------------------------------------------------------------------

def _rename_ir(t: NamedTensor, mapping: dict[str, str]) -> NamedTensor:
    mapping = {k: v for k, v in mapping.items() if k != v}
    return bind("rename", [t], mapping=tuple(mapping.items())) if mapping else t


def _align_ir(t: NamedTensor, dims: Sequence[tuple[str, int]]) -> NamedTensor:
    dims = tuple(dims)
    return t if dims == t.type.dims else bind("align", [t], dims=dims)


def _cast(t: NamedTensor, dtype: str) -> NamedTensor:
    return t if t.dtype == dtype else bind("cast", [t], dtype=dtype)


def _fresh_unnamed(t: NamedTensor) -> NamedTensor:
    """``t`` with every unnamed dim given a new internal name, so it cannot match another tensor's."""
    return _rename_ir(t, {n: fresh_name() for n in t.type.names if is_generated(n)})


def _misaligned(op: str, name: str, named: TensorType, unnamed: TensorType) -> NamedShapeError:
    """PyTorch's "Are your tensors misaligned?": matching ``name`` of ``named`` with an unnamed dim of
    ``unnamed`` by position would put ``name`` in two places, since ``unnamed`` has it elsewhere."""
    return NamedShapeError(
        f"{op}: cannot match dim {name!r} of {named.pretty()} with the unnamed dim at the same position from "
        f"the right of {unnamed.pretty()}, because the latter already has a dim {name!r} elsewhere. Are your "
        f"tensors misaligned? Use align_as()/align_to() to line the dims up by name, or rename() one of them")


def _unify_types(op: str, types: Sequence[TensorType], shown: Sequence[TensorType] | None = None
                 ) -> list[dict[str, str]]:
    """PyTorch's broadcasting name rule on types: right-align; None matches anything; different names at
    the same position, or one name at different positions from the right, are errors. Returns, per type,
    the renames that make dims at the same position share one internal name. ``shown`` are the types
    errors display (the whole operands when ``types`` are parts of them)."""
    shown = list(shown or types)
    n = builtins.max((t.ndim for t in types), default=0)
    user: list[str | None] = [None] * n
    ir: list[str | None] = [None] * n
    size: list[int] = [1] * n
    owner: list[int] = [0] * n
    for k, t in enumerate(types):
        off = n - t.ndim
        for i, (name, s) in enumerate(t.dims):
            p, u = off + i, (None if is_generated(name) else name)
            if user[p] is not None and u is not None and user[p] != u:
                raise NamedShapeError(
                    f"{op}: dim {user[p]!r} and dim {u!r} are at the same position from the right but do not "
                    f"match (named shapes {shown[owner[p]].pretty()} and {shown[k].pretty()}). Positional "
                    f"broadcasting refuses to align different names: use align_as()/align_to() to broadcast "
                    f"by name, or rename() if they are the same dim")
            if ir[p] is None or (u is not None and user[p] is None):
                ir[p], owner[p] = name, k
            if u is not None:
                user[p] = u
            size[p] = s if size[p] == 1 else size[p]
    for i, a in enumerate(types):  # a name must sit at one position from the right in every operand
        for j, b in enumerate(types):
            for name in a.names:
                if not is_generated(name) and name in b.names and \
                        a.ndim - a.names.index(name) != b.ndim - b.names.index(name):
                    raise NamedShapeError(
                        f"{op}: misaligned dims: dim {name!r} appears in a different position from the right "
                        f"across {shown[i].pretty()} and {shown[j].pretty()}. Use align_as()/align_to() to line "
                        f"the dims up by name")
    for k, t in enumerate(types):  # a name may not meet an unnamed dim of an operand that has it elsewhere
        for i, name in enumerate(t.names):
            u = user[n - t.ndim + i]
            if is_generated(name) and u is not None and u in shown[k].user_names:
                raise _misaligned(op, u, shown[owner[n - t.ndim + i]], shown[k])
    for k, t in enumerate(types):
        for i, s in enumerate(t.shape):
            p = n - t.ndim + i
            if s != 1 and size[p] != s:
                raise NamedShapeError(
                    f"{op}: sizes do not broadcast: dim {user[p] or 'None'!r} has size {size[p]} in one operand "
                    f"and {s} in another (named shapes {shown[owner[p]].pretty()} and {shown[k].pretty()})")
    return [{name: ir[n - t.ndim + i] for i, name in enumerate(t.names)} for t in types]  # type: ignore[misc]


def _unify(op: str, *ts: NamedTensor) -> list[NamedTensor]:
    """`_unify_types` applied: the tensors renamed so that aligned dims share internal names."""
    maps = _unify_types(op, [t.type for t in ts])
    return [_rename_ir(t, m) for t, m in zip(ts, maps)]


def _promote(op: str, *xs: TensorLike) -> list[NamedTensor]:
    """Make tensors of Python numbers (weakly typed) and cast all to the promoted dtype."""
    like = next((x for x in xs if isinstance(x, NamedTensor)), None)
    ts = [as_tensor(x, like, op) for x in xs]
    dtype = promote_dtypes(*(t.dtype for t in ts))
    return [_cast(t, dtype) for t in ts]


def _elementwise(prim: str, *xs: TensorLike, float_only: bool = False) -> NamedTensor:
    ts = _promote(prim, *xs)
    if ts[0].dtype == "bool" and prim in NOT_FOR_BOOL:  # as PyTorch: a TypeError, not a name error
        raise TypeError(f"{prim}: not defined for bool tensors ({_pretty(*ts)}); use {NOT_FOR_BOOL[prim]}, "
                        "or cast with .to('int64') first")
    if float_only and not is_float(ts[0].dtype):
        ts = [_cast(t, "float32") for t in ts]
    return bind(prim, _unify(prim, *ts) if len(ts) > 1 else ts)


class _AllDims:
    """The default ``dim`` of reductions whose PyTorch signature has no ``dim=None`` (prod, max, min):
    ``x.prod()`` reduces every dim while ``x.prod(dim=None)`` is refused as an implicit dim."""

    def __repr__(self) -> str:
        return "ALL_DIMS"


ALL_DIMS: Any = _AllDims()
_ALL_DIMS_BY_DEFAULT = ("prod", "max", "min")  # the functions whose dim defaults to ALL_DIMS


def _dims(t: NamedTensor, dim: Dim | Sequence[Dim] | None, op: str, *, none_is_all: bool = False
          ) -> tuple[str, ...]:
    """Internal names of ``dim`` (a name, an index, a sequence of them, or `ALL_DIMS`). ``dim=None`` means
    every dim where PyTorch's signature says so (``none_is_all``: sum, mean, var, amax...), and is refused
    as an implicit dim elsewhere."""
    if dim is ALL_DIMS or (dim is None and none_is_all):
        return t.type.names
    if dim is None:
        raise implicit_dim(op, t, every=op in _ALL_DIMS_BY_DEFAULT)
    if isinstance(dim, (str, int, np.integer)):
        dim = (dim,)
    names = tuple(t._ir_name(d, op) for d in dim)
    if len(set(names)) != len(names):
        raise NamedShapeError(f"{op}: dim list {list(dim)} names a dim twice ({t.type.pretty()})")
    return names


def _align_by_name(p: NamedTensor, like: NamedTensor) -> NamedTensor:
    """``p`` laid out like ``like``, matching dims by name (size-1 dims where ``p`` lacks one). Unlike
    `align_as` this works when ``like`` has unnamed dims (they never match ``p``'s named dims): a per-channel
    bias or a layer_norm weight must broadcast against a batch whose batch dim the user left unnamed."""
    return _align_ir(p, [(n, p.type.size(n) if n in p.type.names else 1) for n in like.type.names])


def _keep(t: NamedTensor, reduced: NamedTensor, dims: Sequence[str]) -> NamedTensor:
    """Put size-1 dims back where ``dims`` were (keepdim=True)."""
    return _align_ir(reduced, [(n, 1 if n in dims else s) for n, s in t.type.dims])
