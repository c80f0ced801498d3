"""Layout and indexing primitives: align, squeeze, rename, flatten/unflatten, select, slice, concat, take, gather."""

from __future__ import annotations


import numpy as np

from ..types import NamedShapeError, TensorType
from ._core import _check_present, _fail, _register, to_order


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
