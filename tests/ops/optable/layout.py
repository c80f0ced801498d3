"""Names and layout: rename/refine_names/align_to/align_as, permute/transpose/t, flatten/unflatten,
select/narrow/squeeze/unsqueeze, reshape/view/expand, unbind/cat/stack, take."""

from __future__ import annotations

import torch

import nir
from nir.types import NamedShapeError

from .core import ALL, E, OpInfo, S, T

X = "N3 C4 H5"
F = torch.nn.functional


def same(x):
    return x


def _rename_samples(d):
    x = T(X, d)
    return [
        S(x, "A", "B", "C", names=("A", "B", "C"), torch=same),
        S(x, None, names=(None, None, None), torch=same),
        S(x, "A", ..., names=("A", "C", "H"), torch=same),
        S(x, ..., None, names=("N", "C", None), torch=same),
        S(x, H="W", N="B", names=("B", "C", "W"), torch=same),
        S(T("3 C4", d), "N", None, names=("N", None), torch=same),
    ]


def _rename_errors():
    return [
        E(T(X), W="V", exc=NamedShapeError, match="tried to rename dim 'W' of {N: 3, C: 4, H: 5}"),
        E(T(X), "A", "B", exc=NamedShapeError, match="2 names ['A', 'B'] for a tensor {N: 3, C: 4, H: 5} with 3 dims"),
        E(T(X), "A", "A", "B", exc=NamedShapeError, match="repeat ['A']"),
        E(T(X), "N", ..., C="D", exc=ValueError, match="either positional names or keyword renames"),
        E(T(X), "_N", ..., exc=NamedShapeError, match="invalid dimension name '_N'"),
    ]


def _refine_samples(d):
    return [
        S(T("3 C4 5", d), "N", ..., "W", names=("N", "C", "W"), torch=same),
        S(T("N3 4", d), "N", "C", names=("N", "C"), torch=same),
    ]


def _align_to_samples(d):
    x = T(X, d)
    return [
        S(x, "H", "N", "C", names=("H", "N", "C"), torch=lambda t: t.permute(2, 0, 1)),
        S(x, "N", "W", "H", "C", names=("N", "W", "H", "C"), torch=lambda t: t.permute(0, 2, 1).unsqueeze(1)),
        S(x, "H", ..., names=("H", "N", "C"), torch=lambda t: t.permute(2, 0, 1)),
        S(x, ..., "N", names=("C", "H", "N"), torch=lambda t: t.permute(1, 2, 0)),
        S(T("N3 4 H5", d), "H", ..., names=("H", "N", None), torch=lambda t: t.permute(2, 0, 1)),
        S(T("N0 C2", d), "C", "N", names=("C", "N"), torch=lambda t: t.t()),
    ]


def _align_to_errors():
    return [
        E(T("N3 4"), "N", "C", exc=NamedShapeError,
          match="all input dims must be named; found an unnamed dim at index 1"),
        E(T(X), "N", "C", exc=NamedShapeError, match="dims ['H'] of {N: 3, C: 4, H: 5} are not in the target"),
    ]


def _align_as_samples(d):
    return [
        S(T("C4", d), T(X, d), names=("N", "C", "H"), torch=lambda a, b: a.reshape(1, 4, 1)),
        S(T("H5 N3", d), T(X, d), names=("N", "C", "H"), torch=lambda a, b: a.t().reshape(3, 1, 5)),
    ]


def _permute_samples(d):
    x = T(X, d)
    return [
        S(x, "H", "N", "C", names=("H", "N", "C"), torch=lambda t: t.permute(2, 0, 1)),
        S(x, (-1, 0, "C"), names=("H", "N", "C"), torch=lambda t: t.permute(2, 0, 1)),
        S(x, [1, 2, 0], names=("C", "H", "N"), torch=lambda t: t.permute(1, 2, 0)),
    ]


def _transpose_samples(d):
    x = T(X, d)
    return [
        S(x, "N", "H", names=("H", "C", "N"), torch=lambda t: t.transpose(0, 2)),
        S(x, -1, 1, names=("N", "H", "C"), torch=lambda t: t.transpose(-1, 1)),
        S(x, "C", "C", names=("N", "C", "H"), torch=lambda t: t.transpose(1, 1)),
    ]


def _t_samples(d):
    return [S(T("N3 C4", d), names=("C", "N"), torch=torch.t), S(T("N3", d), names=("N",), torch=torch.t),
            S(T("", d), names=(), torch=torch.t)]


def _flatten_samples(d):
    x = T("N2 C3 H4 W5", d)
    return [
        S(x, ["C", "H"], "F", names=("N", "F", "W"), torch=lambda t: t.flatten(1, 2)),
        S(x, dims=["H", "W"], out_dim="S", names=("N", "C", "S"), torch=lambda t: t.flatten(2, 3)),
        S(x, ["C"], "D", names=("N", "D", "H", "W"), torch=same),
        S(x, names=(None,), torch=torch.flatten),
        S(x, 1, -2, names=("N", None, "W"), torch=lambda t: t.flatten(1, -2)),
        S(x, "C", "W", "F", names=("N", "F"), torch=lambda t: t.flatten(1, 3)),
        S(T("", d), names=(None,), torch=torch.flatten),
        S(T("N0 C3", d), ["N", "C"], "F", names=("F",), torch=torch.flatten),
    ]


def _flatten_errors():
    return [
        E(T("N2 C3 H4"), ["N", "H"], "F", exc=NamedShapeError, match="must be consecutive and in order"),
        E(T("N2 C3 H4"), ["H", "C"], "F", exc=NamedShapeError, match="must be consecutive and in order"),
        E(T("N2 C3 H4"), 2, 0, exc=NamedShapeError, match="start_dim 2 comes after end_dim 0"),
    ]


def _unflatten_samples(d):
    return [
        S(T("N2 D12", d), "D", (("H", 3), ("W", 4)), names=("N", "H", "W"), torch=lambda t: t.unflatten(1, (3, 4))),
        S(T("N2 D12", d), -1, (("H", -1), ("W", 2)), names=("N", "H", "W"), torch=lambda t: t.unflatten(1, (6, 2))),
        S(T("2 12", d), 1, (3, -1), names=(None, None, None), torch=lambda t: t.unflatten(1, (3, 4))),
        S(T("A2 B0", d), "B", (("B1", 3), ("B2", 0)), names=("A", "B1", "B2"),
          torch=lambda t: t.unflatten(1, (3, 0))),
    ]


def _unflatten_errors():
    return [
        E(T("N2 D12"), "D", (("H", -1), ("W", -1)), exc=ValueError, match="only one size may be -1"),
        E(T("N2 D12"), "D", (3, 4), exc=NamedShapeError, match="no names were given"),  # as PyTorch
    ]


def _select_samples(d):
    x = T(X, d)
    return [
        S(x, "C", 1, names=("N", "H"), torch=lambda t: t.select(1, 1)),
        S(x, "H", -2, names=("N", "C"), torch=lambda t: t.select(2, -2)),
        S(x, -1, -5, names=("N", "C"), torch=lambda t: t.select(-1, -5)),
        S(x, 0, 2, names=("C", "H"), torch=lambda t: t.select(0, 2)),
        S(T("N1", d), "N", -1, names=(), torch=lambda t: t.select(0, -1)),
    ]


def _select_errors():
    return [
        E(T(X), "C", 4, exc=IndexError, match="select: index 4 is out of range for dim 'C' of size 4"),
        E(T(X), "C", -5, exc=IndexError, match="select: index -5 is out of range for dim 'C' of size 4"),
        E(T(X), "W", 0, exc=NamedShapeError, match="select: name 'W' not found"),
    ]


def _narrow_samples(d):
    x = T(X, d)
    return [
        S(x, "H", 1, 3, names=("N", "C", "H"), torch=lambda t: t.narrow(2, 1, 3)),
        S(x, "C", -3, 2, names=("N", "C", "H"), torch=lambda t: t.narrow(1, -3, 2)),
        S(x, 0, 2, 0, names=("N", "C", "H"), torch=lambda t: t.narrow(0, 2, 0)),
    ]


def _squeeze_samples(d):
    x = T("N3 A1 C4 1", d)
    return [
        S(x, names=("N", "C"), torch=torch.squeeze),
        S(x, "A", names=("N", "C", None), torch=lambda t: t.squeeze(1)),
        S(x, -1, names=("N", "A", "C"), torch=lambda t: t.squeeze(-1)),
        S(x, "C", names=("N", "A", "C", None), torch=lambda t: t.squeeze(2)),  # not size 1: unchanged
        S(x, ("A", 3), names=("N", "C"), torch=lambda t: t.squeeze((1, 3))),
    ]


def _unsqueeze_samples(d):
    x = T("N3 C4", d)
    return [S(x, 0, names=(None, "N", "C"), torch=lambda t: t.unsqueeze(0)),
            S(x, -1, names=("N", "C", None), torch=lambda t: t.unsqueeze(-1)),
            S(x, 1, names=("N", None, "C"), torch=lambda t: t.unsqueeze(1)),
            S(T("", d), 0, names=(None,), torch=lambda t: t.unsqueeze(0))]


def _reshape(name):
    def samples(d):
        x = T("3 4", d)
        return [S(x, 2, 6, names=(None, None), torch=lambda t: t.reshape(2, 6)),
                S(x, (-1, 2, 3), names=(None, None, None), torch=lambda t: t.reshape(-1, 2, 3)),
                S(x, 12, names=(None,), torch=lambda t: t.reshape(12)),
                S(T("1 1", d), (), names=(), torch=lambda t: t.reshape(())),
                S(T("0 4", d), 2, 0, names=(None, None), torch=lambda t: t.reshape(2, 0))]

    def errors():
        return [E(T("N3 4"), 12, exc=NamedShapeError, match="not supported on named tensors ({N: 3, None: 4})"),
                E(T("3 4"), 5, 2, exc=NamedShapeError, match="cannot view 12 elements")]
    return OpInfo(name, samples, ALL, errors=errors)


def _expand_samples(d):
    return [
        S(T("N3 C1", d), 3, 5, names=("N", "C"), torch=lambda t: t.expand(3, 5)),
        S(T("N3 C1", d), 2, -1, 4, names=(None, "N", "C"), torch=lambda t: t.expand(2, -1, 4)),
        S(T("N3 C1", d), (3, 0), names=("N", "C"), torch=lambda t: t.expand(3, 0)),
    ]


def _unbind_samples(d):
    x = T(X, d)
    return [S(x, "C", names=("N", "H"), torch=lambda t: t.unbind(1)),
            S(x, -1, names=("N", "C"), torch=lambda t: t.unbind(-1)),
            S(T("N3 C2", d), names=("C",), torch=torch.unbind)]


def _cat_samples(d):
    return [
        S([T("N3 C4", d), T("N2 C4", d), T("N1 C4", d)], "N", names=("N", "C"), torch=lambda *ts: torch.cat(ts, 0)),
        S([T("N3 C4", d), T("3 C2", d)], -1, names=("N", "C"), torch=lambda *ts: torch.cat(ts, -1)),
        S([T("3 C4", d), T("N3 C4", d)], 0, names=("N", "C"), torch=lambda *ts: torch.cat(ts, 0)),
        S([T("N3 C4", d)], "C", names=("N", "C"), torch=lambda *ts: torch.cat(ts, 1)),
        S([T("N0 C4", d), T("N2 C4", d)], "N", names=("N", "C"), torch=lambda *ts: torch.cat(ts, 0)),
    ]


def _cat_errors():
    return [
        E([T("N3 C4"), T("C3 N4")], 0, exc=NamedShapeError, match="cat: dim 'N' and dim 'C' are at the same position"),
        E([T("N3 C4"), T("N3")], 0, exc=NamedShapeError, match="different numbers of dims"),
        E([], 0, exc=ValueError, match="cat: needs at least one tensor"),
    ]


def _stack_samples(d):
    return [
        S([T("N3 C4", d), T("N3 C4", d)], names=(None, "N", "C"), torch=lambda *ts: torch.stack(ts)),
        S([T("N3 C4", d), T("N3 C4", d), T("N3 C4", d)], -1, names=("N", "C", None),
          torch=lambda *ts: torch.stack(ts, -1)),
        S([T("N3 C4", d), T("3 C4", d)], 1, name="K", names=("N", "K", "C"), torch=lambda *ts: torch.stack(ts, 1)),
    ]


def _take_samples(d):
    return [
        S(T("V5 D4", d), T("B2 S3", "int64", "index", high=5), "V", names=("B", "S", "D"),
          torch=lambda x, i: x[i]),
        S(T("D4 V5", d), T("B3", "int32", "index", high=5), -1, names=("D", "B"), torch=lambda x, i: x[:, i]),
        S(T("V5 D4", d), T("", "int64", values=3), "V", names=("D",), torch=lambda x, i: x[i]),
    ]


TABLE = [
    OpInfo("rename", _rename_samples, ALL, errors=_rename_errors),
    OpInfo("refine_names", _refine_samples, ALL, errors=lambda: [
        E(T("N3 C4"), "N", "D", exc=NamedShapeError, match="cannot coerce names ['N', 'C'] to ['N', 'D']")]),
    OpInfo("align_to", _align_to_samples, ALL, errors=_align_to_errors),
    OpInfo("align_as", _align_as_samples, ALL, errors=lambda: [
        E(T("C4"), T("N3 4"), exc=NamedShapeError, match="has unnamed dims; name them with refine_names()")]),
    OpInfo("permute", _permute_samples, ALL, errors=lambda: [
        E(T(X), "N", "C", exc=NamedShapeError, match="must list all 3 dims")]),
    OpInfo("transpose", _transpose_samples, ALL, errors=lambda: [
        E(T(X), "N", 3, exc=IndexError, match="transpose: dim 3 is out of range")]),
    OpInfo("t", _t_samples, ALL, errors=lambda: [E(T(X), exc=NamedShapeError, match="t: expects at most 2 dims")]),
    OpInfo("flatten", _flatten_samples, ALL, errors=_flatten_errors),
    OpInfo("unflatten", _unflatten_samples, ALL, errors=_unflatten_errors),
    OpInfo("select", _select_samples, ALL, errors=_select_errors),
    OpInfo("narrow", _narrow_samples, ALL, errors=lambda: [
        E(T(X), "C", 2, 3, exc=IndexError, match="narrow: start 2 + length 3 exceeds dim 'C' of size 4")]),
    OpInfo("squeeze", _squeeze_samples, ALL),
    OpInfo("unsqueeze", _unsqueeze_samples, ALL, errors=lambda: [
        E(T("N3 C4"), 3, exc=IndexError, match="unsqueeze: dim 3 out of range")]),
    _reshape("reshape"),
    _reshape("view"),
    OpInfo("expand", _expand_samples, ALL, errors=lambda: [
        E(T("N3 C2"), 3, 5, exc=NamedShapeError, match="dim 'C' of size 2 cannot expand to 5"),
        E(T("N3 C2"), 2, exc=NamedShapeError, match="1 sizes (2,) for {N: 3, C: 2} with 2 dims")]),
    OpInfo("unbind", _unbind_samples, ALL),
    OpInfo("cat", _cat_samples, ALL, method=None, errors=_cat_errors),
    OpInfo("stack", _stack_samples, ALL, method=None, errors=lambda: [
        E([T("N3")], 3, exc=IndexError, match="stack: dim 3 out of range"),
        E([], exc=ValueError, match="stack: needs at least one tensor")]),
    OpInfo("take", _take_samples, ALL, method=None, errors=lambda: [
        E(T("V5 D4"), T("B2"), "V", exc=TypeError, match="take: indices must be int32 or int64, got float32")]),
]


# -- pad and scatter_add arrive with autodiff (issue 14): their entries join once nir has them ----------

def _pad_samples(d):
    def interior(t):  # lax.pad's interior padding: one value between neighbours along W (dim 2)
        out = torch.full((*t.shape[:2], 2 * t.shape[2] - 1), 0.5, dtype=t.dtype)
        out[..., ::2] = t
        return out
    x = T("N2 H3 W4", d)
    return [
        S(x, {"H": (1, 2), "W": 1}, names=("N", "H", "W"), torch=lambda t: F.pad(t, (1, 1, 1, 2))),
        S(x, {-1: (-1, 2)}, value=0.5, names=("N", "H", "W"), torch=lambda t: F.pad(t, (-1, 2), value=0.5)),
        S(x, {"W": (0, 0, 1)}, value=0.5, names=("N", "H", "W"), torch=interior),
        S(x, {}, names=("N", "H", "W"), torch=same),
    ]


def _scatter_add_samples(d):
    def index_add(x, i, u, n=5):
        i = torch.where(i < 0, i + n, i)
        return x.index_add(0, i.reshape(-1), u.reshape(-1, x.shape[1]))
    return [
        S(T("V5 D4", d), T("B2 S3", "int64", "index", high=5), T("B2 S3 D4", d), "V", names=("V", "D"),
          torch=index_add),
        S(T("V5 D4", d), T("K6", "int32", values=(0, 4, 0, 4, 4, 1)), T("K6 D4", d), 0, names=("V", "D"),
          torch=index_add, label=f"repeated-{d}"),
    ]


if hasattr(nir, "pad"):
    TABLE += [
        OpInfo("pad", _pad_samples, ALL, method=None, errors=lambda: [
            E(T("N2 H3"), {"H": (1, 2, 3, 4)}, exc=ValueError, match="pad: the padding of 'H' must be an int")]),
        OpInfo("scatter_add", _scatter_add_samples, ("float32", "float64", "int64"), method=None, errors=lambda: [
            E(T("V5 D4"), T("B2"), T("B2 D4"), "V", exc=TypeError, match="scatter_add: indices must be int32"),
            E(T("V5 D4"), T("B2", "int64", "index", high=5), T("B2 E4"), "V", exc=NamedShapeError,
              match="must have the dims of take(x, indices, 'V')")]),
    ]
