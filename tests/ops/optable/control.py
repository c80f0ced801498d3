"""Control flow: scan (a loop over a named dim with a carry) and cond (a branch on a 0-d bool)."""

from __future__ import annotations

import torch

from nir.types import NamedShapeError

from .core import E, OpInfo, S, T


def _step(h, x):
    """The loop body nir runs: the new carry, and a per-step output."""
    return (h + x).tanh(), h * 2.0


def _torch_scan(h, xs, axis: int, reverse: bool = False):
    """The same loop in torch: ``xs`` scanned along ``axis``; the outputs stacked along a new first dim."""
    ys = [None] * xs.shape[axis]
    for t in (reversed(range(xs.shape[axis])) if reverse else range(xs.shape[axis])):
        h, ys[t] = torch.tanh(h + xs.select(axis, t)), h * 2.0
    return h, torch.stack(ys)


def _scan_samples(d):
    h = T("N2 H3", d)
    return [
        S(_step, h, T("T4 N2 H3", d), over="T", names=[("N", "H"), ("T", "N", "H")],
          torch=lambda h, xs: _torch_scan(h, xs, 0)),
        S(_step, h, T("N2 S5 H3", d), over="S", reverse=True, names=[("N", "H"), ("S", "N", "H")],
          torch=lambda h, xs: _torch_scan(h, xs, 1, reverse=True)),
        S(_step, h, T("T1 N2 H3", d), over="T", names=[("N", "H"), ("T", "N", "H")],
          torch=lambda h, xs: _torch_scan(h, xs, 0)),
    ]


def _scan_errors():
    return [
        E(lambda h, x: (h.sum("H"), h), T("N2 H3"), T("T4 N2 H3"), over="T", exc=NamedShapeError,
          match="scan: the carry must keep its named type float32{N: 2, H: 3}, but it is float32{N: 2}"),
        E(_step, T("N2 H3"), T("T4 N2 H3"), over="U", exc=NamedShapeError, match="scan: dim 'U' is not in the xs"),
    ]


def _true(x, y):
    return x * 2.0 + y, x.sum("C")


def _false(x, y):
    return -x, (x * y).amax("C")


def _cond_samples(d):
    x, y = T("N3 C4", d), T("C4", d)
    return [
        S(T("", "bool", values=v), _true, _false, x, y, names=[("N", "C"), ("N",)], label=f"{v}-{d}",
          torch=lambda p, x, y: (x * 2.0 + y, x.sum(1)) if p else (-x, (x * y).amax(1)))
        for v in (True, False)
    ]


def _cond_errors():
    return [E(T("N2", "bool"), _true, _false, T("N3 C4"), T("C4"), exc=NamedShapeError,
              match="cond: the predicate must be a 0-d bool NamedTensor, got bool{N: 2}")]


TABLE = [
    OpInfo("scan", _scan_samples, ("float32", "float64"), errors=_scan_errors),
    OpInfo("cond", _cond_samples, ("float32", "float64"), errors=_cond_errors),
]
