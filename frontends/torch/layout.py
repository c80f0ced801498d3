"""Converters of layout and indexing ops: view/reshape (as flatten/unflatten, so names survive), permute,
squeeze, expand, select, slice, cat, split, index."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import nir.functions as nf
from nir.functions import _rename_ir
from nir.tensor import NamedTensor, bind

from ._common import _STATE, _reconcile, _rename_at, _Unsupported, converts


def _reshape_groups(src: Sequence[int], dst: Sequence[int]) -> list[tuple[int, list[int], list[int]]]:
    """Split a row-major reshape ``src -> dst`` into its smallest independent runs: (start in src, src dims,
    dst dims) whose sizes multiply to the same number. ``(B, S, 16) -> (B, S, 2, 8)`` gives three runs."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        start, gi, gj, pi, pj = i, [], [], 1, 1
        if i < len(src):
            gi.append(i)
            pi, i = src[i], i + 1
        if j < len(dst):
            gj.append(j)
            pj, j = dst[j], j + 1
        while pi != pj:
            if pi < pj and i < len(src):
                gi.append(i)
                pi, i = pi * src[i], i + 1
            elif j < len(dst):
                gj.append(j)
                pj, j = pj * dst[j], j + 1
            else:  # pragma: no cover - sizes with equal products always close a run
                raise ValueError(f"cannot view {tuple(src)} as {tuple(dst)}")
        groups.append((start, gi, gj))
    return groups


def _reshape(x: NamedTensor, shape: Sequence[int]) -> NamedTensor:
    """A torch view/reshape as nir flatten/unflatten, so that names survive it.

    nir's reshape refuses named tensors (PyTorch's rule: a reshape has no per-dim meaning). But almost every
    reshape in a model merges or splits runs of consecutive dims (flatten C, H, W into features; split D into
    heads and head_dim), and the dims outside those runs are untouched: they keep their names. Each run
    becomes a flatten (its dims merge into one unnamed dim) and/or an unflatten (into unnamed parts); a run
    that only adds or drops size-1 dims around one dim keeps that dim and its name. Even a run that re-cuts
    dims ((4, 2) -> (2, 4)) is exactly a flatten then an unflatten, so no reshape needs to drop the names of
    the whole tensor; only a tensor with no elements (no sizes to match runs by) does.
    """
    shape = [int(s) for s in shape]
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = x.numel() // known if known else 0
    if list(x.shape) == shape:
        return x
    if x.numel() == 0:
        return nf.reshape(nf.rename(x, None), shape)  # no sizes to match dims by: drop names
    for start, gi, gj in reversed(_reshape_groups(x.shape, shape)):  # right to left: earlier positions hold
        big_in = [i for i in gi if x.shape[i] != 1]
        big_out = [j for j in gj if shape[j] != 1]
        if len(big_in) == len(big_out) <= 1 and (big_in or len(gi) != len(gj)):
            for i in reversed(gi):  # one dim (or none) passes through: drop and add size-1 dims around it
                if i not in big_in:
                    x = nf.squeeze(x, i)
            for k, j in enumerate(gj):
                if j not in big_out:
                    x = nf.unsqueeze(x, start + k)
        elif big_in or big_out:
            if len(gi) > 1:
                x = nf.flatten(x, start, start + len(gi) - 1)
            if len(gj) > 1:
                x = nf.unflatten(x, start, [(None, shape[j]) for j in gj])  # unnamed parts, said explicitly
    return x


Factors = list[tuple[str | None, int]]


def _factors_of(x: NamedTensor, i: int) -> Factors:
    """The dim at ``i`` as row-major factors: its name, or what an earlier reshape merged into it."""
    if x.names[i] is not None:
        return [(x.names[i], x.shape[i])]
    return list(_STATE.get().factors.get(x.type.names[i], ((None, x.shape[i]),)))


def _cut(factors: Factors, sizes: Sequence[int]) -> list[Factors] | None:
    """``factors`` (row-major) cut into consecutive runs of the given ``sizes``; a factor may be split into
    unnamed parts. None when the sizes do not line up with the factors."""
    rest = [f for f in factors if f[1] != 1]
    out: list[Factors] = []
    for size in sizes:
        part: Factors = []
        while size > 1:
            if not rest:
                return None
            name, n = rest[0]
            if size % n == 0:
                part.append(rest.pop(0))
                size //= n
            elif n % size == 0:  # the major part of a factor: a new, unnamed dim
                part.append((None, size))
                rest[0] = (None, n // size)
                size = 1
            else:
                return None
        out.append(part)
    return None if rest else out


def _track_names(x: NamedTensor, y: NamedTensor) -> NamedTensor:
    """Names for the unnamed dims of ``y``, a reshape of ``x``: a dim that is exactly one named dim of ``x``
    (split off and merged back) takes its name again; any other dim records the factors it is made of."""
    state = _STATE.get()
    taken = set(y.names)
    mapping: dict[str, str] = {}
    for start, gi, gj in _reshape_groups(x.shape, y.shape) if x.numel() else ():
        cut = _cut([f for i in gi for f in _factors_of(x, i)], [y.shape[j] for j in gj])
        if cut is None:
            continue
        for j, part in zip(gj, cut):
            if y.names[j] is not None or not part:
                continue
            if len(part) == 1 and part[0][0] is not None and part[0][0] not in taken:
                mapping[y.type.names[j]] = part[0][0]
                taken.add(part[0][0])
            elif len(part) > 1:
                state.factors[y.type.names[j]] = tuple(part)
    return _rename_ir(y, mapping)


@converts("layout", "aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _view(x: NamedTensor, shape: Sequence[int]) -> NamedTensor:
    """`nir.flatten` / `nir.unflatten` on the runs of dims the reshape merges or splits; other dims keep names,
    and a dim split back out of a merged one takes its name again."""
    return _track_names(x, _reshape(x, shape))


@converts("layout", "aten.flatten.using_ints")
def _flatten(x: NamedTensor, start_dim: int = 0, end_dim: int = -1) -> NamedTensor:
    """`nir.flatten` of a positional range into one unnamed dim (a range of one dim is left as it is)."""
    if x.ndim == 0:
        return nf.flatten(x)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x if start == end else _track_names(x, nf.flatten(x, start, end))


@converts("layout", "aten.unflatten.int")
def _unflatten(x: NamedTensor, dim: int, sizes: Sequence[int]) -> NamedTensor:
    """`nir.unflatten` into unnamed parts (named again where they were merged from named dims)."""
    return _track_names(x, nf.unflatten(x, dim, [(None, s) for s in sizes]))  # bare sizes: refused on named tensors


@converts("layout", "aten.permute.default")
def _permute(x: NamedTensor, dims: Sequence[int]) -> NamedTensor:
    """`nir.permute`; names travel with their dims."""
    return nf.permute(x, *dims)


@converts("layout", "aten.transpose.int")
def _transpose(x: NamedTensor, dim0: int, dim1: int) -> NamedTensor:
    """`nir.transpose`."""
    return nf.transpose(x, dim0, dim1)


@converts("layout", "aten.t.default")
def _t(x: NamedTensor) -> NamedTensor:
    """`nir.t`."""
    return nf.t(x)


@converts("layout", "aten.unsqueeze.default")
def _unsqueeze(x: NamedTensor, dim: int) -> NamedTensor:
    """`nir.unsqueeze` (the new dim is unnamed)."""
    return nf.unsqueeze(x, dim)


@converts("layout", "aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims")
def _squeeze(x: NamedTensor, dim: Any = None) -> NamedTensor:
    """`nir.squeeze` (dims whose size is not 1 stay, as in torch)."""
    return nf.squeeze(x, list(dim) if isinstance(dim, (list, tuple)) else dim)


@converts("layout", "aten.expand.default")
def _expand(x: NamedTensor, size: Sequence[int], *, implicit: bool = False) -> NamedTensor:
    """`nir.expand` (new leading dims are unnamed)."""
    return nf.expand(x, *size)


@converts("layout", "aten.select.int")
def _select(x: NamedTensor, dim: int, index: int) -> NamedTensor:
    """`nir.select`."""
    return nf.select(x, dim, index)


@converts("layout", "aten.slice.Tensor")
def _slice(x: NamedTensor, dim: int = 0, start: int | None = None, end: int | None = None,
           step: int = 1) -> NamedTensor:
    """`nir.narrow` (or the ``slice`` primitive for a step > 1); the dim keeps its name."""
    n = x.shape[dim]
    lo, hi, step = slice(start, end, step).indices(n)
    hi = max(hi, lo)
    if step == 1:
        return nf.narrow(x, dim, lo, hi - lo) if (lo, hi) != (0, n) else x
    return bind("slice", [x], dim=x.type.names[dim], start=lo, stop=hi, step=step)


@converts("layout", "aten.narrow.default")
def _narrow(x: NamedTensor, dim: int, start: int, length: int) -> NamedTensor:
    """`nir.narrow`."""
    return nf.narrow(x, dim, start, length)


@converts("layout", "aten.cat.default")
def _cat(tensors: Sequence[NamedTensor], dim: int = 0) -> NamedTensor:
    """`nir.cat`; the joined dim keeps a name only if the parts agree on it. 1-d empty tensors are skipped,
    as torch does (a KV cache starts as one)."""
    ndim = max(t.ndim for t in tensors)
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0 and ndim > 1)]
    return nf.cat(_reconcile(*tensors, apart=ndim - dim % ndim), dim)


@converts("layout", "aten.stack.default")
def _stack(tensors: Sequence[NamedTensor], dim: int = 0) -> NamedTensor:
    """`nir.stack` (the new dim is unnamed)."""
    return nf.stack(_reconcile(*tensors), dim)


def _split(x: NamedTensor, sizes: Sequence[int], dim: int) -> tuple[NamedTensor, ...]:
    starts = np.cumsum([0, *sizes[:-1]])
    return tuple(nf.narrow(x, dim, int(s), int(n)) for s, n in zip(starts, sizes))


@converts("layout", "aten.split.Tensor")
def _split_tensor(x: NamedTensor, split_size: int, dim: int = 0) -> tuple[NamedTensor, ...]:
    """`nir.narrow` per piece of ``split_size``."""
    n = x.shape[dim]
    return _split(x, [min(split_size, n - s) for s in range(0, n, split_size)] or [0], dim)


@converts("layout", "aten.split_with_sizes.default")
def _split_with_sizes(x: NamedTensor, split_sizes: Sequence[int], dim: int = 0) -> tuple[NamedTensor, ...]:
    """`nir.narrow` per piece."""
    return _split(x, list(split_sizes), dim)


@converts("layout", "aten.chunk.default")
def _chunk(x: NamedTensor, chunks: int, dim: int = 0) -> tuple[NamedTensor, ...]:
    """`nir.narrow` per chunk (torch's chunk sizes)."""
    return _split_tensor(x, max(-(-x.shape[dim] // chunks), 1), dim)


@converts("layout", "aten.unbind.int")
def _unbind(x: NamedTensor, dim: int = 0) -> tuple[NamedTensor, ...]:
    """`nir.unbind`."""
    return nf.unbind(x, dim)


def _take_by_position(x: NamedTensor, idx: NamedTensor, pos: int) -> NamedTensor:
    """`nir.take` along the dim at ``pos``; index dims whose names x already uses elsewhere are unnamed
    (they are new dims of the result, as in torch)."""
    clash = [k for k, n in enumerate(idx.names) if n is not None and n in x.names and n != x.names[pos]]
    for k in clash:
        idx = _rename_at(idx, k, None)
    return nf.take(x, idx, pos)


@converts("layout", "aten.index.Tensor")
def _index(x: NamedTensor, indices: Sequence[NamedTensor | None]) -> NamedTensor:
    """Advanced indexing with integer index tensors (``x[idx]``, ``x[:, i, j]``): `nir.take`, after the indexed
    dims are flattened into one and the index tensors (broadcast by position) combined into one flat index;
    the index tensors' dims name the result, where torch puts them."""
    used = [(i, t) for i, t in enumerate(indices) if t is not None]
    if any(t.dtype not in ("int32", "int64") for _, t in used):
        raise _Unsupported("indexing with a bool mask has a data-dependent shape; use torch.where(mask, x, 0) "
                           "or index with integer tensors")
    if len(used) == 1:
        return _take_by_position(x, used[0][1], used[0][0])
    positions = [i for i, _ in used]
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    if not adjacent:  # torch puts the index dims first: bring the indexed dims to the front
        x = nf.permute(x, *positions, *[i for i in range(x.ndim) if i not in positions])
        positions = list(range(len(used)))
    flat = None
    for p, t in zip(positions, _reconcile(*[nf.cast(t, "int64") for _, t in used])):
        n = x.shape[p]
        t = nf.where(t < 0, t + n, t)
        flat = t if flat is None else flat * n + t
    xf = nf.flatten(x, positions[0], positions[-1])
    return _take_by_position(xf, flat, positions[0])


@converts("layout", "aten.index_select.default")
def _index_select(x: NamedTensor, dim: int, index: NamedTensor) -> NamedTensor:
    """`nir.take` along the dim at ``dim`` with a 1-d index (its dim replaces that dim)."""
    return _take_by_position(x, index, dim % x.ndim)


@converts("layout", "aten.gather.default")
def _gather(x: NamedTensor, dim: int, index: NamedTensor, *, sparse_grad: bool = False) -> NamedTensor:
    """`nir.gather` along the dim at ``dim``; the index's other dims pair with x's by position."""
    x, index = _reconcile(x, index)
    return nf.gather(x, dim, index)


@converts("layout", "aten.repeat.default")
def _repeat(x: NamedTensor, repeats: Sequence[int]) -> NamedTensor:
    """Tiling as `nir.expand` of a new size-1 dim before each repeated dim, then `nir.flatten` of the two
    (repeated dims become unnamed; new leading dims, as in torch, too)."""
    lead = len(repeats) - x.ndim
    for _ in range(lead):
        x = nf.unsqueeze(x, 0)
    for i, r in enumerate(repeats):
        if r != 1:
            y = nf.unsqueeze(x, i)
            y = nf.expand(y, *[r if k == i else -1 for k in range(y.ndim)])
            x = _track_names(y, nf.flatten(y, i, i + 1)) if x.shape[i] != 1 else nf.squeeze(y, i + 1)
    return x


@converts("layout", "aten.flip.default")
def _flip(x: NamedTensor, dims: Sequence[int]) -> NamedTensor:
    """`nir.take` along each dim with the reversed positions (``n-1, ..., 0``); dims keep their names."""
    for d in dims:
        pos = d % x.ndim
        n = x.shape[pos]
        idx = nf.arange(n - 1, -1, -1, dtype="int64")
        y = nf.take(x, idx, pos)
        x = _rename_at(y, pos, x.names[pos]) if x.names[pos] is not None else y
    return x


@converts("layout", "aten.constant_pad_nd.default")
def _constant_pad(x: NamedTensor, pad: Sequence[int], value: float = 0) -> NamedTensor:
    """`nir.cat` with `nir.full` blocks of ``value`` before and after each padded dim (from the last dim,
    as torch's ``pad`` pairs go); negative padding is `nir.narrow`. Padded dims keep their names."""
    for k in range(len(pad) // 2):
        pos = x.ndim - 1 - k
        before, after = int(pad[2 * k]), int(pad[2 * k + 1])
        if before < 0 or after < 0:
            x = nf.narrow(x, pos, max(-before, 0), x.shape[pos] - max(-before, 0) - max(-after, 0))
            before, after = max(before, 0), max(after, 0)
        if before or after:
            x = nf.cat([*_filled_like(x, pos, before, value), x, *_filled_like(x, pos, after, value)], pos)
    return x


def _filled_like(x: NamedTensor, pos: int, width: int, value: float) -> list[NamedTensor]:
    """[a tensor like x, ``width`` wide at ``pos`` and full of ``value``], or [] for width 0."""
    name = x.type.names[pos]
    dims = tuple((n, width if n == name else s) for n, s in x.type.dims)
    return [bind("full", [], value=value, dims=dims, dtype=x.dtype)] if width else []
