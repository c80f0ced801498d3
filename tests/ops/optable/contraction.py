"""Contraction: matmul/mm/bmm/mv/dot/addmm with PyTorch's naming, the @ operator, and contract (einsum by name)."""

from __future__ import annotations

import torch

import nir
from nir.types import NamedShapeError

from .core import FLOATS, E, OpInfo, S, T

DTYPES = FLOATS + ("int64",)


def _matmul_samples(d):
    mm = torch.matmul
    return [
        S(T("M3 K4", d), T("K4 N5", d), names=("M", "N"), torch=mm),
        S(T("M3 K4", d), T("J4 N5", d), names=("M", "N"), torch=mm),  # contracts by position, whatever the names
        S(T("K4", d), T("K4 N5", d), names=("N",), torch=mm),
        S(T("M3 K4", d), T("K4", d), names=("M",), torch=mm),
        S(T("K4", d), T("J4", d), names=(), torch=mm),
        S(T("B2 1 M3 K4", d), T("H5 K4 N2", d), names=("B", "H", "M", "N"), torch=mm),
        S(T("B2 M3 K4", d), T("2 K4 N2", d), names=("B", "M", "N"), torch=mm),
        S(T("3 4", d), T("4 5", d), names=(None, None), torch=mm),
        S(T("M0 K4", d), T("K4 N5", d), names=("M", "N"), torch=mm),
        S(T("M3 K0", d), T("K0 N2", d), names=("M", "N"), torch=mm),
    ]


def _matmul_errors():
    return [
        E(T("M3 K4"), T("K5 N2"), exc=NamedShapeError, match="contracted dims differ in size: K=4 of the first"),
        E(T(""), T("K4"), exc=NamedShapeError, match="both arguments need at least 1 dim"),
        E(T("N3 C4"), T("C4 N5"), exc=NamedShapeError, match="would repeat a dim name"),
        E(T("B2 M3 K4"), T("2 B4 N5"), exc=NamedShapeError, match="misaligned"),  # PyTorch refuses it too
    ]


def _ranked(name, shapes, names, torch_fn, err):
    def samples(d):
        return [S(*(T(s, d) for s in shapes), names=names, torch=torch_fn),
                S(*(T(s.replace("4", "0"), d) for s in shapes), names=names, torch=torch_fn, label=f"empty-{d}")]
    return OpInfo(name, samples, DTYPES, errors=lambda: [E(T("M3 K4 J2"), T("K4 N5"), exc=NamedShapeError,
                                                           match=f"{name}: expects {err}")])


def _addmm_samples(d):
    beta, alpha = (2, 3) if d == "int64" else (0.5, 2.0)
    return [
        S(T("M3 N5", d), T("M3 K4", d), T("K4 N5", d), names=("M", "N"), torch=torch.addmm),
        S(T("N5", d), T("M3 K4", d), T("K4 N5", d), beta=beta, alpha=alpha, names=("M", "N"),
          torch=lambda i, a, b: torch.addmm(i, a, b, beta=beta, alpha=alpha)),
        S(T("M3 N5", d), T("M3 K4", d), T("K4 N5", d), beta=0, names=("M", "N"),
          torch=lambda i, a, b: torch.addmm(i, a, b, beta=0)),
    ]


def _contract_samples(d):
    return [
        S(T("B2 Q3 D4", d), T("B2 K5 D4", d), over="D", names=("B", "Q", "K"),
          torch=lambda q, k: torch.einsum("bqd,bkd->bqk", q, k)),
        S(T("K3 M5 J4", d), T("J4 K3", d), over=("K", "J"), names=("M",),
          torch=lambda a, b: torch.einsum("kmj,jk->m", a, b)),
        S(T("M3", d), T("N4", d), over=(), names=("M", "N"), torch=lambda a, b: torch.einsum("m,n->mn", a, b)),
        S(T("M3 K4 2", d), T("K4 N5", d), over="K", names=("M", None, "N"),
          torch=lambda a, b: torch.einsum("mkx,kn->mxn", a, b)),
        S(T("M3 K0", d), T("K0 N2", d), over="K", names=("M", "N"), torch=lambda a, b: a @ b),
    ]


TABLE = [
    OpInfo("matmul", _matmul_samples, DTYPES, errors=_matmul_errors),
    OpInfo("__matmul__", _matmul_samples, ("float32",), fn=nir.NamedTensor.__matmul__, method=None),
    OpInfo("__rmatmul__", lambda d: [S(T("K4 N5", d), T("M3 K4", d), names=("M", "N"),
                                       torch=lambda b, a: a @ b)],
           fn=nir.NamedTensor.__rmatmul__, method=None),
    _ranked("mm", ("M3 K4", "K4 N5"), ("M", "N"), torch.mm, "two 2-dim tensors"),
    _ranked("bmm", ("B2 M3 K4", "B2 K4 N5"), ("B", "M", "N"), torch.bmm, "two 3-dim tensors"),
    _ranked("mv", ("M3 K4", "K4"), ("M",), torch.mv, "a 2-dim and a 1-dim tensor"),
    _ranked("dot", ("K4", "J4"), (), torch.dot, "two 1-dim tensors"),
    OpInfo("addmm", _addmm_samples, DTYPES, method=None),
    OpInfo("contract", _contract_samples, DTYPES, method=None, errors=lambda: [
        E(T("M3 K4"), T("K4 N5"), over="J", exc=NamedShapeError, match="contract: dim 'J' is not in the first"),
        E(T("M3 K4"), T("K5 N5"), over="K", exc=NamedShapeError, match="dim 'K' has size 4 and 5"),
    ]),
]
