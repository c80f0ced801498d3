"""Running sums and products along a named dim, and gather (torch.gather by name)."""

from __future__ import annotations

import torch

from nir.types import NamedShapeError

from .core import ALL, FLOATS, INTS, E, OpInfo, S, T

X = "N3 C4 H5"


def _cumulative(name: str):
    fn = getattr(torch, name)

    def samples(d):
        x = T(X, d)
        out = [
            S(x, "C", names=("N", "C", "H"), torch=lambda t: fn(t, 1)),
            S(x, -1, names=("N", "C", "H"), torch=lambda t: fn(t, -1)),
            S(T("N0 C4", d), "N", names=("N", "C"), torch=lambda t: fn(t, 0)),
            S(T("3 C4", d), 0, names=(None, "C"), torch=lambda t: fn(t, 0)),
        ]
        if d in INTS + ("bool",):
            out.append(S(x, "H", dtype="float64", names=("N", "C", "H"), label=f"as-float64-{d}",
                         torch=lambda t: fn(t, 2, dtype=torch.float64)))
        return out

    def errors():
        return [E(T("N3 C4"), "H", exc=NamedShapeError, match=f"{name}: name 'H' not found in {{N: 3, C: 4}}"),
                E(T("N3 C4"), 2, exc=IndexError, match=f"{name}: dim 2 is out of range")]
    return OpInfo(name, samples, ALL, errors=errors)


def _wrapped(i, n):
    """nir's gather counts negative indices from the end (torch.gather refuses them)."""
    return torch.where(i < 0, i + n, i)


def _gather_samples(d):
    return [
        S(T("B2 V5", d), "V", T("B2 V3", "int64", "index", high=5), names=("B", "V"),
          torch=lambda x, i: torch.gather(x, 1, _wrapped(i, 5))),
        S(T("B2 V5", d), "V", T("B2 K3", "int32", "index", high=5), names=("B", "K"),
          torch=lambda x, i: torch.gather(x, 1, _wrapped(i, 5).long())),
        S(T("V5 B3", d), 0, T("K4 2", "int64", "index", high=5), names=("K", "B"),  # x narrowed to the index
          torch=lambda x, i: torch.gather(x, 0, _wrapped(i, 5))),
        S(T("B2 V5", d), -1, T("B2 V0", "int64", "index", high=5), names=("B", "V"),
          torch=lambda x, i: torch.gather(x, 1, i)),
    ]


def _gather_errors():
    return [
        E(T("B2 V5"), "V", T("B2 K3"), exc=TypeError, match="gather: index must be int32 or int64, got float32"),
        E(T("B2 V5"), "V", T("K3", "int64", "index", high=5), exc=NamedShapeError,
          match="must have the same number of dims (1 != 2)"),
        E(T("B2 V5"), "V", T("C2 K3", "int64", "index", high=5), exc=NamedShapeError,
          match="dim 'C' of the index and dim 'B' of the input are at the same position but do not match"),
    ]


TABLE = [
    _cumulative("cumsum"),
    _cumulative("cumprod"),
    OpInfo("gather", _gather_samples, FLOATS + INTS, method=None, errors=_gather_errors),
]
