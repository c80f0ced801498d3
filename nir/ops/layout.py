"""Layout and indexing primitives: align, squeeze, rename, flatten/unflatten, select, slice, concat, take,
gather, pad, scatter_add."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..types import NamedShapeError, TensorType, fresh_name
from . import _ad as ad
from ._core import _check_present, _fail, _register, defvjp, to_order


def _align_rule(x: TensorType, *, dims: tuple) -> TensorType:
    out = TensorType(tuple(dims), x.dtype)
    for n, s in x.dims:
        if n not in out.names:
            raise _fail("align", f"dim {n!r} of the input is missing from the target dims", x, out,
                        fix="A dim can only be dropped by a reduction, select() or squeeze()")
        if s != out.size(n) and s != 1:
            raise _fail("align", f"dim {n!r} has size {s}, cannot expand it to {out.size(n)}", x, out,
                        fix="Only dims of size 1 can be expanded")
    return out


def _align_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple) -> np.ndarray:
    return np.broadcast_to(to_order(x, types[0].names, out.names), out.shape)


def _squeeze_rule(x: TensorType, *, dims: tuple[str, ...]) -> TensorType:
    _check_present("squeeze", x, dims)
    big = [n for n in dims if x.size(n) != 1]
    if big:
        raise _fail("squeeze", f"dims {big} do not have size 1", x)
    return x.with_dims((n, s) for n, s in x.dims if n not in dims)


def _rename_rule(x: TensorType, *, mapping: tuple[tuple[str, str], ...]) -> TensorType:
    m = dict(mapping)
    _check_present("rename", x, tuple(m))
    return x.with_dims((m.get(n, n), s) for n, s in x.dims)


def _flatten_rule(x: TensorType, *, dims: tuple[str, ...], into: str) -> TensorType:
    _check_present("flatten", x, dims)
    if not dims:
        raise _fail("flatten", "needs at least one dim to flatten", x)
    if into in x.names and into not in dims:
        raise _fail("flatten", f"output name {into!r} is already a dim of the input", x)
    size = int(np.prod([x.size(n) for n in dims], dtype=np.int64))
    first = min(x.names.index(n) for n in dims)
    rest = [(n, s) for n, s in x.dims if n not in dims]
    rest.insert(sum(1 for n in x.names[:first] if n not in dims), (into, size))
    return x.with_dims(rest)


def _flatten_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...], into: str) -> np.ndarray:
    t = types[0]
    rest = [n for n in t.names if n not in dims]
    y = to_order(x, t.names, rest + list(dims)).reshape([t.size(n) for n in rest] + [out.size(into)])
    return to_order(y, rest + [into], out.names)


def _unflatten_rule(x: TensorType, *, dim: str, parts: tuple) -> TensorType:
    _check_present("unflatten", x, (dim,))
    size = int(np.prod([s for _, s in parts], dtype=np.int64))
    if size != x.size(dim):
        raise _fail("unflatten", f"sizes {[s for _, s in parts]} multiply to {size}, not {dim}={x.size(dim)}", x)
    clash = [n for n, _ in parts if n in x.names and n != dim]
    if clash:
        raise _fail("unflatten", f"new names {clash} are already dims of the input", x)
    i = x.names.index(dim)
    return x.with_dims(x.dims[:i] + tuple(parts) + x.dims[i + 1:])


def _unflatten_impl(x: np.ndarray, *, types, out: TensorType, dim: str, parts: tuple) -> np.ndarray:
    return x.reshape(out.shape)


def _select_rule(x: TensorType, *, dim: str, index: int) -> TensorType:
    _check_present("select", x, (dim,))
    if not 0 <= index < x.size(dim):
        raise _fail("select", f"index {index} is out of range for {dim}={x.size(dim)}", x)
    return x.with_dims((n, s) for n, s in x.dims if n != dim)


def _slice_rule(x: TensorType, *, dim: str, start: int, stop: int, step: int) -> TensorType:
    _check_present("slice", x, (dim,))
    if step < 1 or not 0 <= start <= stop <= x.size(dim):
        raise _fail("slice", f"bounds start={start} stop={stop} step={step} do not fit {dim}={x.size(dim)}", x)
    return x.with_dims((n, len(range(start, stop, step)) if n == dim else s) for n, s in x.dims)


def _concat_rule(*xs: TensorType, dim: str) -> TensorType:
    if not xs:
        raise NamedShapeError("concat: needs at least one tensor")
    first = xs[0]
    for t in xs:
        _check_present("concat", t, (dim,))
        if t.dtype != first.dtype:
            raise _fail("concat", f"tensors have different dtypes {first.dtype} and {t.dtype}", first, t)
        a = {n: s for n, s in first.dims if n != dim}
        b = {n: s for n, s in t.dims if n != dim}
        if a != b:
            raise _fail("concat", f"tensors must agree on every dim but {dim!r}", first, t,
                        fix="align_as() / rename() the tensors so their other dims match")
    total = sum(t.size(dim) for t in xs)
    return first.with_dims((n, total if n == dim else s) for n, s in first.dims)


def _concat_impl(*xs: np.ndarray, types, out: TensorType, dim: str) -> np.ndarray:
    parts = [to_order(x, t.names, out.names) for x, t in zip(xs, types)]
    return np.concatenate(parts, axis=out.names.index(dim))


def _take_rule(x: TensorType, idx: TensorType, *, dim: str) -> TensorType:
    _check_present("take", x, (dim,))
    if idx.dtype not in ("int32", "int64"):
        raise _fail("take", f"indices must be int32 or int64, got {idx.dtype}", x, idx)
    clash = [n for n in idx.names if n in x.names and n != dim]
    if clash:
        raise _fail("take", f"index dims {clash} are already dims of the input", x, idx, fix="rename() the indices")
    i = x.names.index(dim)
    return x.with_dims(x.dims[:i] + idx.dims + x.dims[i + 1:])


def _take_impl(x: np.ndarray, idx: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    n = types[0].size(dim)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"take: an index is out of range for {dim}={n}")
    return np.take(x, idx, axis=ax)


def _gather_rule(x: TensorType, idx: TensorType, *, dim: str) -> TensorType:
    _check_present("gather", x, (dim,))
    if idx.dtype not in ("int32", "int64"):
        raise _fail("gather", f"indices must be int32 or int64, got {idx.dtype}", x, idx)
    missing = [n for n in x.names if n != dim and n not in idx.names]
    if missing:
        raise _fail("gather", f"dims {missing} of the input are not dims of the indices", x, idx,
                    fix=f"Every dim of the input but {dim!r} is matched by name in the indices: align_to() or "
                        "expand the indices, or reduce/select those dims of the input first")
    differ = [n for n in x.names if n != dim and x.size(n) != idx.size(n)]
    if differ:
        raise _fail("gather", f"dims {differ} have different sizes in the input and the indices", x, idx,
                    fix="narrow() the input to the indices' sizes")
    return idx.with_dtype(x.dtype)


def _gather_impl(x: np.ndarray, idx: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    tx, ti = types
    order = ti.names if dim in ti.names else (*ti.names, dim)  # `dim` last when the indices lack it
    ib = idx if dim in ti.names else idx[..., None]
    ax = order.index(dim)
    n = tx.size(dim)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"gather: an index is out of range for {dim}={n}")
    xb = to_order(x, tx.names, order)
    xb = np.broadcast_to(xb, tuple(n if i == ax else s for i, s in enumerate(ib.shape)))
    y = np.take_along_axis(xb, np.where(ib < 0, ib + n, ib), axis=ax)
    return y if dim in ti.names else y[..., 0]


_register("align", "layout", 1, _align_rule, _align_impl,
          "reorder to `dims`, inserting new dims and expanding size-1 dims (permute/unsqueeze/expand by name)")
_register("squeeze", "layout", 1, _squeeze_rule,
          lambda x, *, types, out, dims: x.reshape(out.shape), "drop size-1 dims")
_register("rename", "layout", 1, _rename_rule, lambda x, *, types, out, mapping: x, "rename dims; data unchanged")
_register("flatten", "layout", 1, _flatten_rule, _flatten_impl,
          "merge `dims` (row-major in the given order) into one dim `into`")
_register("unflatten", "layout", 1, _unflatten_rule, _unflatten_impl, "split `dim` into named `parts` (row-major)")
_register("select", "index", 1, _select_rule,
          lambda x, *, types, out, dim, index: np.take(x, index, axis=types[0].names.index(dim)),
          "take one index along `dim`, dropping it")
_register("slice", "index", 1, _slice_rule,
          lambda x, *, types, out, dim, start, stop, step: x[(slice(None),) * types[0].names.index(dim)
                                                             + (slice(start, stop, step),)],
          "a strided range along `dim`")
_register("concat", "index", None, _concat_rule, _concat_impl, "join along `dim`")
_register("take", "index", 2, _take_rule, _take_impl, "gather along `dim` with an integer index tensor")
_register("gather", "index", 2, _gather_rule, _gather_impl,
          "torch.gather by name: the indices' dims name the result; the input's other dims are matched by name")


def _pad_rule(x: TensorType, *, pads: tuple[tuple[str, int, int, int], ...], value: float) -> TensorType:
    names = tuple(p[0] for p in pads)
    _check_present("pad", x, names)
    sizes = dict(x.dims)
    for dim, low, high, interior in pads:
        n = x.size(dim)
        if interior < 0:
            raise _fail("pad", f"interior padding {interior} of {dim!r} is negative", x,
                        fix="Interior padding inserts that many values between neighbours; it must be >= 0")
        size = low + high + n + max(n - 1, 0) * interior
        if size < 0:
            raise _fail("pad", f"padding ({low}, {high}) crops more than the {n + max(n - 1, 0) * interior} "
                               f"elements of {dim!r}", x,
                        fix="Negative low/high padding removes elements; remove fewer")
        sizes[dim] = size
    return x.with_dims((n, sizes[n]) for n in x.names)


def _pad_impl(x: np.ndarray, *, types, out: TensorType, pads, value: float) -> np.ndarray:
    names = types[0].names
    y = x
    for dim, low, high, interior in pads:
        ax = names.index(dim)
        n = y.shape[ax]
        if interior and n > 1:
            shape = list(y.shape)
            shape[ax] = n + (n - 1) * interior
            spread = np.full(shape, value, dtype=y.dtype)
            spread[(slice(None),) * ax + (slice(None, None, interior + 1),)] = y
            y = spread
        width = [(0, 0)] * y.ndim
        width[ax] = (max(low, 0), max(high, 0))
        y = np.pad(y, width, constant_values=np.asarray(value).astype(y.dtype))
        y = y[(slice(None),) * ax + (slice(max(-low, 0), y.shape[ax] - max(-high, 0)),)]
    return y


def _scatter_add_rule(x: TensorType, idx: TensorType, updates: TensorType, *, dim: str) -> TensorType:
    _check_present("scatter_add", x, (dim,))
    if idx.dtype not in ("int32", "int64"):
        raise _fail("scatter_add", f"indices must be int32 or int64, got {idx.dtype}", x, idx)
    if updates.dtype != x.dtype:
        raise _fail("scatter_add", f"updates have dtype {updates.dtype}, the operand {x.dtype}", x, updates,
                    fix="Cast the updates with .to(dtype)")
    clash = [n for n in idx.names if n in x.names and n != dim]
    if clash:
        raise _fail("scatter_add", f"index dims {clash} are already dims of the operand", x, idx,
                    fix="rename() the indices")
    want = {n: s for n, s in x.dims if n != dim} | dict(idx.dims)
    if dict(updates.dims) != want:
        raise _fail("scatter_add", f"updates must have the operand's dims with {dim!r} replaced by the "
                                   f"indices' dims, {TensorType(tuple(want.items()), x.dtype).pretty()}",
                    x, idx, updates, fix="The updates have the shape take(operand, indices, dim) would give")
    return x


def _scatter_add_impl(x: np.ndarray, idx: np.ndarray, updates: np.ndarray, *, types, out: TensorType,
                      dim: str) -> np.ndarray:
    xt, it, ut = types
    ax = xt.names.index(dim)
    n = xt.size(dim)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"scatter_add: an index is out of range for {dim}={n}")
    order = list(xt.names[:ax]) + list(it.names) + list(xt.names[ax + 1:])
    y = x.copy()
    np.add.at(y, (slice(None),) * ax + (idx,), to_order(updates, ut.names, order))
    return y


_register("pad", "layout", 1, _pad_rule, _pad_impl,
          "pad each (dim, low, high, interior) of `pads` with `value` (negative low/high crop), as lax.pad")
_register("scatter_add", "index", 3, _scatter_add_rule, _scatter_add_impl,
          "operand plus `updates` added at `indices` along `dim` (the transpose of take)")


# ------------------------------------------------------------------------------------------------
# reverse-mode rules (see nir/ops/_ad.py)
# ------------------------------------------------------------------------------------------------

def _align_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple) -> tuple:
    return (ad.unbroadcast(ct, x.type),)


def _squeeze_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple) -> tuple:
    return (ad.to_type(ct, x.type),)


def _rename_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], mapping: tuple) -> tuple:
    return (ad.to_type(ad.rename(ct, {new: old for old, new in mapping}), x.type),)


def _flatten_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple, into: str) -> tuple:
    parts = tuple((n, x.type.size(n)) for n in dims)
    return (ad.to_type(ad.emit("unflatten", ct, dim=into, parts=parts), x.type),)


def _unflatten_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str, parts: tuple) -> tuple:
    return (ad.to_type(ad.emit("flatten", ct, dims=tuple(n for n, _ in parts), into=dim), x.type),)


def _select_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str, index: int) -> tuple:
    n = x.type.size(dim)
    one = ad.emit("align", ct, dims=tuple((d, 1 if d == dim else s) for d, s in x.type.dims))
    return (ad.pad(one, {dim: (index, n - index - 1, 0)}),)


def _slice_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str, start: int, stop: int,
               step: int) -> tuple:
    n, m = x.type.size(dim), out.type.size(dim)
    if m == 0:
        return (ad.zeros(x.type),)
    return (ad.to_type(ad.pad(ct, {dim: (start, n - start - (m - 1) * step - 1, step - 1)}), x.type),)


def _concat_vjp(ct: Any, *xs: Any, out: Any, needs: Sequence[bool], dim: str) -> tuple:
    cts, start = [], 0
    for x, need in zip(xs, needs):
        size = x.type.size(dim)
        if need:
            part = ad.emit("slice", ct, dim=dim, start=start, stop=start + size, step=1)
            cts.append(ad.to_type(part, x.type))
        else:
            cts.append(None)
        start += size
    return tuple(cts)


def _take_vjp(ct: Any, x: Any, idx: Any, *, out: Any, needs: Sequence[bool], dim: str) -> tuple:
    return (ad.emit("scatter_add", ad.zeros(x.type), idx, ct, dim=dim) if needs[0] else None, None)


def _pad_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], pads: tuple, value: float) -> tuple:
    """Undo the low/high padding (negative pads crop, and vice versa), then keep every
    (interior + 1)-th element: what lax.pad's transpose does."""
    y = ad.pad(ct, {dim: (-low, -high, 0) for dim, low, high, _ in pads})
    for dim, _, _, interior in pads:
        if interior:
            y = ad.emit("slice", y, dim=dim, start=0, stop=y.type.size(dim), step=interior + 1)
    return (ad.to_type(y, x.type),)


def _scatter_add_vjp(ct: Any, x: Any, idx: Any, updates: Any, *, out: Any, needs: Sequence[bool],
                     dim: str) -> tuple:
    return (ad.to_type(ct, x.type) if needs[0] else None, None,
            ad.to_type(ad.emit("take", ct, idx, dim=dim), updates.type) if needs[2] else None)


for _name, _vjp in {"align": _align_vjp, "squeeze": _squeeze_vjp, "rename": _rename_vjp, "flatten": _flatten_vjp,
                    "unflatten": _unflatten_vjp, "select": _select_vjp, "slice": _slice_vjp,
                    "concat": _concat_vjp, "take": _take_vjp, "pad": _pad_vjp,
                    "scatter_add": _scatter_add_vjp}.items():
    defvjp(_name, _vjp)


def _gather_vjp(ct: Any, x: Any, idx: Any, *, out: Any, needs: Sequence[bool], dim: str) -> tuple:
    """Each output element's cotangent goes to the input element it picked: a one-hot of the indices
    along ``dim`` (of the indices' size times ``dim``'s), summed over the indices' own dims."""
    n = x.type.size(dim)
    k = fresh_name()
    picks = ad.rename(idx, {dim: k}) if dim in idx.type.names else idx
    picks = ad.where(ad.emit("lt", picks, ad.scalar(0, picks.dtype)), ad.add(picks, ad.scalar(n, picks.dtype)), picks)
    hot = ad.emit("eq", ad.emit("iota", dim=dim, size=n, start=0.0, step=1.0, dtype=picks.dtype), picks)
    spread = ad.mask(hot, ad.rename(ct, {dim: k}) if dim in ct.type.names else ct)
    own = tuple(m for m in spread.type.names if m not in x.type.names)
    return (ad.to_type(ad.reduce_sum(spread, own), x.type), None)


defvjp("gather", _gather_vjp)
