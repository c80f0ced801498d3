"""Names and layout: rename/refine_names/align_to/align_as, permute, flatten/unflatten, select, cat..."""

from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from ..tensor import NamedTensor, _user_names, bind, implicit_dim
from ..types import (NamedShapeError, check_user_name, format_dims, fresh_name,
                    is_generated)

from ._common import Dim, _align_ir, _cast, _dims, _fresh_unnamed, _pretty, _promote, _rename_ir, _misaligned



def _expand_ellipsis(given: Sequence[str | None], x: NamedTensor, op: str) -> list[str | None]:
    """Replace '...' (or ``...``) in a positional name list by the tensor's dims it stands for."""
    given = ["..." if g is Ellipsis else g for g in given]
    if given.count("...") > 1:
        raise ValueError(f"{op}: '...' may appear once, got {list(given)}")
    if "..." not in given:
        return list(given)
    i = list(given).index("...")
    after = len(given) - i - 1
    if len(given) - 1 > x.ndim:
        raise NamedShapeError(f"{op}: {len(given) - 1} names {list(given)} for a tensor {x.type.pretty()} with "
                              f"{x.ndim} dims")
    return list(given[:i]) + list(x.names[i:x.ndim - after]) + list(given[i + 1:])


def rename(x: NamedTensor, *names: str | None, **rename_map: str | None) -> NamedTensor:
    """``rename('N', 'C')`` sets every name (``'...'`` keeps the dims it covers); ``rename(None)``
    drops all names; ``rename(N='batch')`` renames by name. The data is unchanged."""
    if names and rename_map:
        raise ValueError("rename: give either positional names or keyword renames, not both")
    if rename_map:
        for old in rename_map:
            if old not in x.names:
                raise NamedShapeError(f"rename: tried to rename dim {old!r} of {x.type.pretty()}, which has "
                                      f"no such dim")
        new = [rename_map.get(n, n) if n is not None else None for n in x.names]
    else:
        if names == (None,):
            names = (None,) * x.ndim
        new = _expand_ellipsis(names, x, "rename")
        if len(new) != x.ndim:
            raise NamedShapeError(f"rename: {len(new)} names {list(names)} for a tensor {x.type.pretty()} with "
                                  f"{x.ndim} dims; give one name (or None) per dim, or use '...'")
    _user_names(new, "rename")  # validates names and refuses duplicates
    target = [(ir if is_generated(ir) else fresh_name()) if nn is None else nn for ir, nn in zip(x.type.names, new)]
    return _rename_ir(x, dict(zip(x.type.names, target)))


def refine_names(x: NamedTensor, *names: str | None) -> NamedTensor:
    """Give unnamed dims names (``'...'`` stands for dims left as they are); named dims must keep
    their names: ``x.refine_names('N', ..., 'W')``."""
    new = _expand_ellipsis(names, x, "refine_names")
    if len(new) != x.ndim:
        raise NamedShapeError(f"refine_names: {len(new)} names {list(names)} for a tensor {x.type.pretty()} "
                              f"with {x.ndim} dims; use '...' for the dims you do not name")
    for i, (old, nn) in enumerate(zip(x.names, new)):
        if old is not None and nn != old:
            raise NamedShapeError(f"refine_names: cannot coerce names {list(x.names)} to {new}: {old!r} is "
                                  f"different from {nn!r} at index {i}; use rename() to change a name")
    return rename(x, *new)


def align_to(x: NamedTensor, *names: str) -> NamedTensor:
    """Permute to ``names``, inserting size-1 dims for names ``x`` lacks (broadcasting by name);
    ``'...'`` stands for the dims not mentioned, in their current order."""
    names = tuple("..." if n is Ellipsis else n for n in names)
    if "..." in names:
        rest = [ir for ir, u in zip(x.type.names, x.names) if u is None or u not in names]
    else:
        for i, u in enumerate(x.names):
            if u is None:
                raise NamedShapeError(f"align_to: all input dims must be named; found an unnamed dim at index {i} "
                                      f"of {x.type.pretty()}. Name it with refine_names(), or use '...'")
        missing = [u for u in x.names if u not in names]
        if missing:
            raise NamedShapeError(f"align_to: dims {missing} of {x.type.pretty()} are not in the target "
                                  f"names {list(names)}; include them or use '...'")
        rest = []
    dims: list[tuple[str, int]] = []
    sizes = x.type.sizes
    for n in names:
        if n == "...":
            dims += [(r, sizes[r]) for r in rest]
        else:
            dims.append((check_user_name(n, "align_to"), sizes.get(n, 1)))
    return _align_ir(x, dims)


def align_as(x: NamedTensor, other: NamedTensor) -> NamedTensor:
    """`align_to` the names of ``other``: the way to broadcast by name, e.g. a per-channel ``{C}``
    tensor against an ``{N, C, H, W}`` batch: ``scale.align_as(images)``."""
    if None in other.names:
        raise NamedShapeError(f"align_as: the other tensor {other.type.pretty()} has unnamed dims; name them "
                              "with refine_names() first")
    return align_to(x, *other.names)  # type: ignore[arg-type]


def permute(x: NamedTensor, *dims: Dim) -> NamedTensor:
    """Reorder dims (names or indices); names travel with their dims."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    order = _dims(x, dims, "permute")
    if len(order) != x.ndim:
        raise NamedShapeError(f"permute: {list(dims)} must list all {x.ndim} dims of {x.type.pretty()}")
    return _align_ir(x, [(n, x.type.size(n)) for n in order])


def transpose(x: NamedTensor, dim0: Dim, dim1: Dim) -> NamedTensor:
    """Swap two dims (names or indices)."""
    i, j = x._index(dim0, "transpose"), x._index(dim1, "transpose")
    order = list(range(x.ndim))
    order[i], order[j] = j, i
    return permute(x, *order)


def t(x: NamedTensor) -> NamedTensor:
    """Transpose a tensor of at most 2 dims."""
    if x.ndim > 2:
        raise NamedShapeError(f"t: expects at most 2 dims, got {x.type.pretty()}; use transpose() or align_to()")
    return x if x.ndim < 2 else transpose(x, 0, 1)


def flatten(x: NamedTensor, start_dim: Dim | Sequence[Dim] = 0, end_dim: Dim = -1, out_dim: str | None = None,
            *, dims: Sequence[Dim] | None = None) -> NamedTensor:
    """``flatten(dims, out_dim)`` merges consecutive named dims into ``out_dim``;
    ``flatten(start_dim=0, end_dim=-1, out_dim=None)`` merges a positional range."""
    if dims is not None or isinstance(start_dim, (list, tuple)):
        dims = list(dims if dims is not None else start_dim)  # type: ignore[arg-type]
        if isinstance(end_dim, str):  # flatten(dims, out_dim)
            out_dim = end_dim
        idx = [x._index(d, "flatten") for d in dims]
        if not idx or idx != list(range(idx[0], idx[0] + len(idx))):
            raise NamedShapeError(f"flatten: dims {dims} must be consecutive and in order in {x.type.pretty()}; "
                                  "use align_to() first to bring them together")
    elif x.ndim == 0:
        return _align_ir(x, [(fresh_name() if out_dim is None else check_user_name(out_dim, "flatten"), 1)])
    else:
        i, j = x._index(start_dim, "flatten"), x._index(end_dim, "flatten")  # type: ignore[arg-type]
        if i > j:
            raise NamedShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} in {x.type.pretty()}")
        idx = list(range(i, j + 1))
    names = tuple(x.type.names[i] for i in idx)
    into = fresh_name() if out_dim is None else check_user_name(out_dim, "flatten")
    if len(names) == 1:
        return _rename_ir(x, {names[0]: into})
    return bind("flatten", [x], dims=names, into=into)


def unflatten(x: NamedTensor, dim: Dim, sizes: Sequence[Any]) -> NamedTensor:
    """Split ``dim`` into several: ``sizes`` is ``((name, size), ...)``, or plain ints for an unnamed
    tensor (PyTorch refuses new dims without names on a named tensor). One size may be -1: inferred,
    unless the other sizes multiply to 0 (then -1 could be anything, and is refused).

    >>> x.unflatten("HW", (("H", 4), ("W", 5)))     # {N, HW: 20} -> {N, H: 4, W: 5}
    """
    name = x._ir_name(dim, "unflatten")
    if not sizes:
        raise ValueError(f"unflatten: sizes must be non-empty, got {sizes!r} for {x.type.pretty()}")
    if builtins.any(n is not None for n in x.names) and \
            not builtins.all(isinstance(s, (tuple, list)) for s in sizes):
        raise NamedShapeError(f"unflatten: the input {x.type.pretty()} is a named tensor but no names were given "
                              f"for the unflattened sizes {list(sizes)}; give (name, size) pairs, e.g. "
                              f"unflatten({dim!r}, (('A', 2), ('B', -1))), or rename(None) first")
    named = [s if isinstance(s, (tuple, list)) else (None, s) for s in sizes]
    total = x.type.size(name)
    if [s for _, s in named].count(-1) > 1:
        raise ValueError("unflatten: only one size may be -1")
    known = int(np.prod([s for _, s in named if s != -1], dtype=np.int64))
    if -1 in [s for _, s in named] and known == 0:
        raise NamedShapeError(f"unflatten: cannot infer the -1 in {[s for _, s in named]} for dim {dim!r} of "
                              f"{x.type.pretty()}: the other sizes multiply to 0, so -1 could be any size; give "
                              f"every size")
    parts = [(n, total // known if s == -1 else int(s)) for n, s in named]
    irn = _user_names([n for n, _ in parts], "unflatten")
    return bind("unflatten", [x], dim=name, parts=tuple(zip(irn, (s for _, s in parts))))


def select(x: NamedTensor, dim: Dim, index: int) -> NamedTensor:
    """The slice at ``index`` along ``dim``, which is removed (negative indices count from the end)."""
    name = x._ir_name(dim, "select")
    n = x.type.size(name)
    if not -n <= index < n:
        raise IndexError(f"select: index {index} is out of range for dim {dim!r} of size {n} in {x.type.pretty()}")
    return bind("select", [x], dim=name, index=int(index) % n)


def narrow(x: NamedTensor, dim: Dim, start: int, length: int) -> NamedTensor:
    """``length`` elements along ``dim`` starting at ``start``; the dim keeps its name."""
    name = x._ir_name(dim, "narrow")
    n = x.type.size(name)
    start = start + n if start < 0 else start
    if not (0 <= start and length >= 0 and start + length <= n):
        raise IndexError(f"narrow: start {start} + length {length} exceeds dim {dim!r} of size {n}")
    return bind("slice", [x], dim=name, start=start, stop=start + length, step=1)


def squeeze(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None) -> NamedTensor:
    """Drop size-1 dims (all of them, or ``dim``; a dim whose size is not 1 is left alone, as PyTorch)."""
    dims = [n for n in (_dims(x, dim, "squeeze") if dim is not None else x.type.names) if x.type.size(n) == 1]
    return bind("squeeze", [x], dims=tuple(dims)) if dims else x


def _new_position(x: NamedTensor, dim: int, op: str) -> int:
    """Where a new dim goes: index ``dim`` (negative counts from the end) among ``x``'s dims and the new one."""
    if dim is None:
        raise implicit_dim(op, x)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: the new dim's position is an int, got {dim!r}")
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"{op}: dim {dim} out of range for {x.type.pretty()}")
    return int(dim) % (x.ndim + 1)


def unsqueeze(x: NamedTensor, dim: int) -> NamedTensor:
    """Insert an unnamed size-1 dim at index ``dim``."""
    dim = _new_position(x, dim, "unsqueeze")
    dims = list(x.type.dims)
    dims.insert(dim, (fresh_name(), 1))
    return _align_ir(x, dims)


def reshape(x: NamedTensor, *shape: Any) -> NamedTensor:
    """Reshape an UNNAMED tensor (PyTorch refuses named ones: use flatten/unflatten, which keep names)."""
    if builtins.any(n is not None for n in x.names):
        raise NamedShapeError(f"reshape/view: not supported on named tensors ({x.type.pretty()}); use "
                              "flatten()/unflatten() to merge or split named dims, or rename(None) first")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    shape = tuple(x.numel() // known if s == -1 and known else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.numel():
        raise NamedShapeError(f"reshape: cannot view {x.numel()} elements {x.type.pretty()} as shape {shape}")
    flat = flatten(x) if x.ndim != 1 else x
    if not shape:
        return bind("squeeze", [flat], dims=flat.type.names)
    return unflatten(flat, 0, list(shape))


view = reshape


def expand(x: NamedTensor, *sizes: int) -> NamedTensor:
    """Broadcast size-1 dims to ``sizes`` (right-aligned; -1 keeps a size; new leading dims are unnamed)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim:
        raise NamedShapeError(f"expand: {len(sizes)} sizes {sizes} for {x.type.pretty()} with {x.ndim} dims")
    lead = len(sizes) - x.ndim
    dims = [(fresh_name(), s) for s in sizes[:lead]]
    for (n, s), want in zip(x.type.dims, sizes[lead:]):
        if want != -1 and s != 1 and s != want:
            raise NamedShapeError(f"expand: dim {n!r} of size {s} cannot expand to {want} ({x.type.pretty()})")
        dims.append((n, s if want == -1 else want))
    return _align_ir(x, dims)


def unbind(x: NamedTensor, dim: Dim = 0) -> tuple[NamedTensor, ...]:
    """All slices along ``dim``, as a tuple."""
    name = x._ir_name(dim, "unbind")
    return tuple(bind("select", [x], dim=name, index=i) for i in range(x.type.size(name)))


def cat(tensors: Sequence[NamedTensor], dim: Dim = 0) -> NamedTensor:
    """Concatenate along ``dim``; the other dims' names must match by position (None matches any, but
    not a name that the unnamed dim's tensor has elsewhere: PyTorch's "misaligned" error)."""
    ts = _unify_same_rank("cat", tensors)
    return bind("concat", ts, dim=ts[0]._ir_name(dim, "cat"))


def _unify_same_rank(op: str, tensors: Sequence[NamedTensor]) -> list[NamedTensor]:
    """cat's name rule: ``tensors`` (promoted) renamed so that dims at one position share one name."""
    ts = _promote(op, *tensors) if tensors else []
    if not ts:
        raise ValueError(f"{op}: needs at least one tensor")
    first = ts[0]
    out_user: list[str | None] = list(first.names)
    out_ir = list(first.type.names)
    owner = [first] * first.ndim
    for t in ts[1:]:
        if t.ndim != first.ndim:
            raise NamedShapeError(f"{op}: tensors have different numbers of dims: {_pretty(first, t)}")
        for i, (u, ir) in enumerate(zip(t.names, t.type.names)):
            if out_user[i] is not None and u is not None and u != out_user[i]:
                raise NamedShapeError(f"{op}: dim {out_user[i]!r} and dim {u!r} are at the same position but do not "
                                      f"match ({_pretty(owner[i], t)}); rename() or align_to() first")
            if out_user[i] is None and u is not None:
                out_user[i], out_ir[i], owner[i] = u, ir, t
    for t in ts:
        for i, u in enumerate(t.names):
            if u is None and out_user[i] is not None and out_user[i] in t.names:
                raise _misaligned(op, out_user[i], owner[i].type, t.type)  # type: ignore[arg-type]
    return [_rename_ir(t, dict(zip(t.type.names, out_ir))) for t in ts]


def stack(tensors: Sequence[NamedTensor], dim: int = 0, name: str | None = None) -> NamedTensor:
    """Stack along a new dim at index ``dim`` (unnamed, as in PyTorch, unless ``name`` is given); the
    tensors' names must match as for `cat`."""
    new = fresh_name() if name is None else check_user_name(name, "stack")
    parts = []
    for t in _unify_same_rank("stack", tensors):
        d = list(t.type.dims)
        d.insert(_new_position(t, dim, "stack"), (new, 1))
        parts.append(_align_ir(t, d))
    return bind("concat", parts, dim=new)


def take(x: NamedTensor, indices: NamedTensor, dim: Dim) -> NamedTensor:
    """Gather along ``dim`` with integer ``indices``; ``dim`` is replaced by the indices' dims
    (an embedding lookup: ``take(table{V, D}, tokens{B, S}, 'V') -> {B, S, D}``)."""
    if indices.dtype not in ("int32", "int64"):
        raise TypeError(f"take: indices must be int32 or int64, got {indices.dtype}")
    return bind("take", [x, _fresh_unnamed(indices)], dim=x._ir_name(dim, "take"))


def gather(x: NamedTensor, dim: Dim, index: NamedTensor) -> NamedTensor:
    """torch.gather: ``out[..., i, ...] = x[..., index[..., i, ...], ...]`` along ``dim``. ``index`` has as many
    dims as ``x``; its other dims pair with x's by position (names must agree, unnamed matches anything;
    where the index is shorter, ``x`` is narrowed to it, as torch does). The result has the index's sizes,
    x's names, and at ``dim`` the index's name if it has one:
    ``gather(scores{B, T, V}, 'V', top{B, T, K}) -> {B, T, K}``."""
    if index.dtype not in ("int32", "int64"):
        raise TypeError(f"gather: index must be int32 or int64, got {index.dtype}")
    if index.ndim != x.ndim:
        raise NamedShapeError(f"gather: index {index.type.pretty()} and input {x.type.pretty()} must have the same "
                              f"number of dims ({index.ndim} != {x.ndim}); unsqueeze or expand the index")
    name = x._ir_name(dim, "gather")
    pos = x.type.names.index(name)
    mapping: dict[str, str] = {}
    for p, (xn, idn, xs, ids) in enumerate(zip(x.names, index.names, x.shape, index.shape)):
        if p == pos:
            mapping[index.type.names[p]] = idn if idn is not None else name
            continue
        if xn is not None and idn is not None and xn != idn:
            raise NamedShapeError(f"gather: dim {idn!r} of the index and dim {xn!r} of the input are at the same "
                                  f"position but do not match ({_pretty(index, x)}); rename() one of them")
        if ids > xs:
            raise IndexError(f"gather: index dim {p} has size {ids}, more than the input's {xs} ({_pretty(index, x)})")
        if ids < xs:
            x = narrow(x, p, 0, ids)
        mapping[index.type.names[p]] = x.type.names[p]
    if mapping[index.type.names[pos]] in x.type.names and mapping[index.type.names[pos]] != name:
        raise NamedShapeError(f"gather: the index names dim {pos} {mapping[index.type.names[pos]]!r}, which is another "
                              f"dim of the input ({_pretty(index, x)}); rename() it")
    return bind("gather", [x, _rename_ir(index, mapping)], dim=name)


def pad(x: NamedTensor, pads: dict[Dim, int | Sequence[int]], value: float = 0.0) -> NamedTensor:
    """Pad dims BY NAME with ``value``: ``pads={"H": (1, 2), "W": 1}`` gives each named dim ``(low, high)``
    (an int pads both sides), or ``(low, high, interior)`` to also insert ``interior`` values between
    neighbours, as ``lax.pad``; a negative ``low``/``high`` crops. Names and dim order are kept."""
    config = []
    for dim, p in pads.items():
        name = x._ir_name(dim, "pad")
        p = (int(p), int(p)) if isinstance(p, (int, np.integer)) else tuple(int(v) for v in p)
        if len(p) not in (2, 3):
            raise ValueError(f"pad: the padding of {dim!r} must be an int, (low, high) or (low, high, interior); "
                             f"got {pads[dim]!r}")
        config.append((name, p[0], p[1], p[2] if len(p) == 3 else 0))
    return bind("pad", [x], pads=tuple(config), value=float(value)) if config else x


def scatter_add(x: NamedTensor, indices: NamedTensor, updates: NamedTensor, dim: Dim) -> NamedTensor:
    """``x`` with ``updates`` added at ``indices`` along ``dim`` (repeated indices add up): the transpose of
    `take`. ``updates`` has the dims ``take(x, indices, dim)`` would give — ``dim`` replaced by the indices'
    dims — matched by name, or by position where dims are unnamed."""
    if indices.dtype not in ("int32", "int64"):
        raise TypeError(f"scatter_add: indices must be int32 or int64, got {indices.dtype}")
    name = x._ir_name(dim, "scatter_add")
    indices = _fresh_unnamed(indices)
    updates = _cast(updates, x.dtype)
    ax = x.type.names.index(name)
    want = x.type.dims[:ax] + indices.type.dims + x.type.dims[ax + 1:]
    user = tuple(None if is_generated(n) else n for n, _ in want)
    if updates.names == user and updates.shape == tuple(s for _, s in want):
        updates = _rename_ir(updates, dict(zip(updates.type.names, (n for n, _ in want))))
    elif None in updates.names or None in user or set(updates.names) != set(user):
        raise NamedShapeError(f"scatter_add: updates {updates.type.pretty()} must have the dims of "
                              f"take(x, indices, {dim!r}), {format_dims(want)}: x's dims with {dim!r} replaced by "
                              "the indices' dims; rename() or align_to() the updates")
    return bind("scatter_add", [x, indices, updates], dim=name)
