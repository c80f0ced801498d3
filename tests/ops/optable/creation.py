"""Creation functions: tensor, full/zeros/ones, zeros_like/ones_like, arange. (rand, randn and manual_seed
draw random numbers: they are in `EXEMPT`; test_op_table checks them by their properties.)"""

from __future__ import annotations

import numpy as np
import torch

from nir.types import NamedShapeError

from .core import ALL, E, OpInfo, S, T

DATA = [[1.5, -2.0, 0.25], [3.0, 4.5, -6.0]]
BIG = 2 ** 40  # int64 values a float32 (or float64 past 2^53) computation would round
INTS = [[1, -2], [BIG + 3, 4]]
NC = ("N", "C")


def _tensor_samples(d):
    return [
        S(DATA, kw={"names": NC}, names=NC, torch=lambda: torch.tensor(DATA)),
        S(INTS, kw={"names": (None, "C")}, names=(None, "C"), torch=lambda: torch.tensor(INTS)),
        S([True, False, True], kw={"names": ("N",)}, names=("N",), torch=lambda: torch.tensor([True, False, True])),
        S(np.array(DATA), kw={"names": NC}, names=NC, torch=lambda: torch.tensor(DATA, dtype=torch.float64),
          label="numpy-float64"),
        S(DATA, kw={"names": NC}, names=NC, dtype="bfloat16", torch=lambda: torch.tensor(DATA, dtype=torch.bfloat16)),
        S(2.5, torch=lambda: torch.tensor(2.5), names=()),
    ]


def _full_samples(d):
    td = getattr(torch, d)
    v = {"bool": True, "int32": -7, "int64": BIG + 1}.get(d, -2.5)
    return [
        S(2, 3, fill_value=v, kw={"names": NC}, names=NC, dtype=d, torch=lambda: torch.full((2, 3), v, dtype=td)),
        S((2, 0), fill_value=v, dtype=d, names=(None, None), torch=lambda: torch.full((2, 0), v, dtype=td)),
    ]


def _full_default_dtype(d):
    return [S(3, fill_value=1.5, names=(None,), torch=lambda: torch.full((3,), 1.5)),
            S(3, fill_value=7, names=(None,), torch=lambda: torch.full((3,), 7)),
            S(3, fill_value=False, names=(None,), torch=lambda: torch.full((3,), False))]


def _zeros_ones(name):
    def samples(d):
        fn = getattr(torch, name)
        return [S(2, 3, kw={"names": NC}, names=NC, dtype=d, torch=lambda: fn(2, 3, dtype=getattr(torch, d))),
                S((4,), torch=lambda: fn(4), names=(None,), label=f"default-{d}")]
    return OpInfo(name, samples, ("float32", "int64", "bool"), method=None, errors=lambda: [
        E(2, 3, names=("N",), exc=NamedShapeError, match=f"{name}: 1 names ('N',) for 2 sizes (2, 3)")])


def _like(name):
    def samples(d):
        fn = getattr(torch, name)
        return [S(T("N3 C4", d), names=("N", "C"), torch=fn), S(T("N0 4", d), names=("N", None), torch=fn)]
    return OpInfo(name, samples, ALL, method=None)


def _arange_samples(d):
    if d != "int64":
        return []
    return [
        S(5, names=(None,), torch=lambda: torch.arange(5)),
        S(1, 4, 0.5, name="N", names=("N",), torch=lambda: torch.arange(1, 4, 0.5)),
        S(5, -3, -2, names=(None,), torch=lambda: torch.arange(5, -3, -2)),
        S(BIG, BIG + 12, 3, name="N", names=("N",), torch=lambda: torch.arange(BIG, BIG + 12, 3)),
        S(-BIG, -BIG - 9, -4, names=(None,), torch=lambda: torch.arange(-BIG, -BIG - 9, -4)),
        S(0, names=(None,), torch=lambda: torch.arange(0)),
        S(0.5, 3, dtype="float16", names=(None,), torch=lambda: torch.arange(0.5, 3, dtype=torch.float16)),
        S(-3, 4, dtype="int32", names=(None,), torch=lambda: torch.arange(-3, 4, dtype=torch.int32)),
        S(2, 9, 2, dtype="float64", names=(None,), torch=lambda: torch.arange(2, 9, 2, dtype=torch.float64)),
        # float64 values that float32 arithmetic would round (start + k * step, computed in float64)
        S(0.1, 1.05, 0.1, dtype="float64", names=(None,),
          torch=lambda: torch.arange(0.1, 1.05, 0.1, dtype=torch.float64)),
    ]


TABLE = [
    OpInfo("tensor", _tensor_samples, ("float32",), method=None, errors=lambda: [
        E([[1, 2], [3, 4]], names=("N",), exc=NamedShapeError,
          match="tensor: 1 names ('N',) given for data with 2 dims"),
        E([1, 2], names=("N",), dtype="complex64", exc=TypeError, match="unsupported dtype 'complex64'"),
        E([1, 2], names=("_N",), exc=NamedShapeError, match="invalid dimension name '_N'")]),
    OpInfo("full", lambda d: _full_samples(d) + (_full_default_dtype(d) if d == "float32" else []), ALL,
           method=None, errors=lambda: [
               E(2, 2, fill_value=1.0, names=("N", "N"), exc=NamedShapeError, match="repeat ['N']")]),
    _zeros_ones("zeros"), _zeros_ones("ones"), _like("zeros_like"), _like("ones_like"),
    OpInfo("arange", _arange_samples, ("int64",), method=None, errors=lambda: [
        E(0, 5, 0, exc=ValueError, match="arange: step must not be 0")]),
]

# public functions that have no oracle here, and why
EXEMPT = {
    "rand": "random samples: no oracle gives the same numbers (test_op_table checks shape, names, range, seeding)",
    "randn": "random samples: no oracle gives the same numbers (test_op_table checks shape, names, seeding)",
    "manual_seed": "seeds rand/randn; returns nothing",
}
