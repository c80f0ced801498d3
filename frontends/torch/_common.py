"""The converter table (`CONVERTERS`, `converts`), the errors, and the helpers every converter family uses:
reconciling layer-derived names with the user's across a positional broadcast, temporary names for dims
a by-name nir function needs, matmul with a repeated column name."""

from __future__ import annotations

import contextvars
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

import nir.functions as nf
from nir.functions import _rename_ir
from nir.tensor import NamedTensor
from nir.types import NamedShapeError, canonical_dtype, fresh_name

Names = Sequence[str | None]


class UnsupportedOpError(NotImplementedError):
    """An ATen op (or a setting of one) that nir cannot convert. The message names the op and the module
    and source line of the user's model it came from."""


class TorchNameError(NamedShapeError):
    """A name conflict found while converting a torch program; the message names the module it arose in."""


# ------------------------------------------------------------------------------------------------
# the converter table
# ------------------------------------------------------------------------------------------------

CONVERTERS: dict[str, Callable[..., Any]] = {}
"""ATen op overload name (``"aten.linear.default"``, or ``"operator.getitem"``) -> converter. A converter
takes the op's arguments as in its ATen schema, with tensors as NamedTensors, and returns a NamedTensor
(a tuple of them for multi-output ops, an int for symbolic sizes, None for assertions)."""

_SECTIONS: dict[str, list[str]] = {}


def converts(section: str, *ops: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the converter of ``ops`` (listed under ``section`` in the docs)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op in ops:
            if op in CONVERTERS:
                raise ValueError(f"two converters for {op}")
            CONVERTERS[op] = fn
            _SECTIONS.setdefault(section, []).append(op)
        return fn
    return register


def op_key(target: Any) -> str:
    """The key of an FX node's target in `CONVERTERS`: ``"aten.add.Tensor"``, ``"operator.getitem"``."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or repr(target)
    return f"{'operator' if module in ('_operator', 'operator') else module}.{name}"


class _Unsupported(Exception):
    """Raised by a converter for a setting it cannot express; re-raised as UnsupportedOpError with the place."""


# ------------------------------------------------------------------------------------------------
# conversion state and name helpers
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _State:
    asserted: frozenset[str] = frozenset()  # names the user gave: they never yield to another name
    # layer-derived name -> when the graph first uses its parameter: where two meet, the older one stays
    # (the residual stream's name, not the name of the layer added to it)
    age: Mapping[str, int] = field(default_factory=dict)
    # unnamed dim (internal name) -> the (name, size) factors a reshape merged into it, row-major, so that a
    # later reshape that splits it back gives the factors their names again (filled while converting)
    factors: dict[str, tuple[tuple[str | None, int], ...]] = field(default_factory=dict)


_STATE: contextvars.ContextVar[_State] = contextvars.ContextVar("nir_torch_state", default=_State())
_temp_names = itertools.count()


def _rename_at(t: NamedTensor, pos: int, new: str | None) -> NamedTensor:
    """``t`` with the dim at position ``pos`` named ``new`` (None: unnamed)."""
    return _rename_ir(t, {t.type.names[pos]: fresh_name() if new is None else new})


def _reconcile(*xs: Any, apart: int | None = None) -> list[Any]:
    """Operands of a positional broadcast (elementwise ops, cat) with layer-derived names reconciled.

    PyTorch pairs dims by position from the right. Where the dims at one position carry different names
    and at most one of them was given by the user, the others take that name (or, when none was, the oldest:
    the one whose layer the graph uses first, so a residual stream keeps its name): the model itself says
    they are one dim, so ``x{N, C} + fc(x){N, fc.out}`` is ``{N, C}``.
    Two different user-given names are left alone, so nir reports the conflict. ``apart`` is a position
    from the right (1 = last) whose differing layer-derived names are dropped instead of unified: the dim
    cat joins along is a new dim, not any of its parts."""
    out = list(xs)
    idx = [i for i, x in enumerate(xs) if isinstance(x, NamedTensor)]
    if len(idx) < 2:
        return out
    state = _STATE.get()
    asserted = state.asserted
    for p in range(1, max(out[i].ndim for i in idx) + 1):
        named = [(i, out[i].names[-p]) for i in idx if out[i].ndim >= p and out[i].names[-p] is not None]
        distinct = list(dict.fromkeys(n for _, n in named))
        strong = [n for n in distinct if n in asserted]
        if len(distinct) < 2 or len(strong) > 1:
            continue
        oldest = min(distinct, key=lambda n: state.age.get(n, len(state.age)))  # stable: else the first operand's
        winner = strong[0] if strong else (None if p == apart else oldest)
        for i, n in named:
            if n != winner and n not in asserted and (winner is None or winner not in out[i].names):
                out[i] = _rename_at(out[i], -p, winner)
    # A layer-derived name at different positions from the right in two operands (x{A, fc.out} + y{fc.out, B})
    # names two different dims: keep it where it is first seen, unname it elsewhere.
    seen: dict[str, int] = {}
    for i in idx:
        for k, n in enumerate(out[i].names):
            if n is not None and n not in asserted and seen.setdefault(n, out[i].ndim - k) != out[i].ndim - k:
                out[i] = _rename_at(out[i], k, None)
    return out


def _visible(x: NamedTensor, positions: Sequence[int]) -> tuple[NamedTensor, list[str], dict[str, str]]:
    """``x`` with the dims at ``positions`` carrying user-visible names, so that nir functions taking dims
    by name (conv2d, pooling, layer_norm) can be called on dims the user left unnamed: those get temporary
    names. Returns the tensor, the names, and the renames that undo the temporary names (`_restore`)."""
    mapping: dict[str, str] = {}
    names: list[str] = []
    for p in positions:
        name = x.names[p]
        if name is None:
            name = f"nir_tmp{next(_temp_names)}"
            mapping[x.type.names[p]] = name
        names.append(name)
    return _rename_ir(x, mapping), names, {v: k for k, v in mapping.items()}


def _restore(y: NamedTensor, undo: Mapping[str, str]) -> NamedTensor:
    """Undo `_visible`'s temporary names on the dims of ``y`` that still carry them."""
    return _rename_ir(y, {k: v for k, v in undo.items() if k in y.type.names})


def _named_as(p: NamedTensor | None, names: Sequence[str]) -> NamedTensor | None:
    """Parameter ``p`` with its dims (all of them, in order) renamed to ``names``."""
    return None if p is None else _rename_ir(p, dict(zip(p.type.names, names)))


def _matmul(a: NamedTensor, b: NamedTensor, *, weight: bool = False) -> NamedTensor:
    """`nir.matmul`, except that b's column dim loses its name when a's row or batch dims already use it:
    in ``a @ a.transpose(1, 2)`` over ``a{N, L, C}`` the result's second L is a new dim. When b is a
    layer's weight (``weight=True``) a name the user gave it (``param_names=``) stays, and nir reports the
    clash: the user named two different dims alike."""
    col = b.names[-1] if a.ndim >= 2 and b.ndim >= 2 else None
    if col is not None and col in a.names[:-1] and not (weight and col in _STATE.get().asserted):
        b = _rename_at(b, -1, None)
    return nf.matmul(a, b)


def _dtype(dtype: Any) -> str | None:
    return None if dtype is None else canonical_dtype(dtype)


def _maybe_cast(x: NamedTensor, dtype: Any) -> NamedTensor:
    return x if dtype is None else nf.cast(x, dtype)


def _positions(x: NamedTensor, dim: int | Sequence[int] | None) -> list[int]:
    """ATen's ``dim`` argument as a list of positions; None or [] means every dim."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return list(range(x.ndim))
    return [int(d) % max(x.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)]




class _NotConverted:
    """Stands for an output of a multi-output ATen op that has no converter (layer_norm's mean, ...)."""

    def __repr__(self) -> str:
        return "<not converted>"


_NOT_CONVERTED = _NotConverted()
