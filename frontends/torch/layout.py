"""Converters of layout and indexing ops: view/reshape (as flatten/unflatten, so names survive), permute,
squeeze, expand, select, slice, cat, split, index."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import nir.functions as nf
from nir.tensor import NamedTensor, bind

from ._common import _reconcile, _Unsupported, converts

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


@converts("layout", "aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _view(x: NamedTensor, shape: Sequence[int]) -> NamedTensor:
    """`nir.flatten` / `nir.unflatten` on the runs of dims the reshape merges or splits; other dims keep names."""
    return _reshape(x, shape)


@converts("layout", "aten.flatten.using_ints")
def _flatten(x: NamedTensor, start_dim: int = 0, end_dim: int = -1) -> NamedTensor:
    """`nir.flatten` of a positional range into one unnamed dim (a range of one dim is left as it is)."""
    if x.ndim == 0:
        return nf.flatten(x)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x if start == end else nf.flatten(x, start, end)


@converts("layout", "aten.unflatten.int")
def _unflatten(x: NamedTensor, dim: int, sizes: Sequence[int]) -> NamedTensor:
    """`nir.unflatten` into unnamed parts."""
    return nf.unflatten(x, dim, [(None, s) for s in sizes])  # None names: bare sizes are refused on named tensors


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
    """`nir.cat`; the joined dim keeps a name only if the parts agree on it."""
    ndim = max(t.ndim for t in tensors)
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


@converts("layout", "aten.index.Tensor")
def _index(x: NamedTensor, indices: Sequence[NamedTensor | None]) -> NamedTensor:
    """`nir.take` for one integer index tensor (``x[idx]``, ``x[:, idx]``)."""
    used = [(i, t) for i, t in enumerate(indices) if t is not None]
    if len(used) != 1 or used[0][1].dtype not in ("int32", "int64"):
        raise _Unsupported("only indexing with one integer index tensor converts (x[idx] or x[:, idx])")
    i, idx = used[0]
    return nf.take(x, idx, i)


