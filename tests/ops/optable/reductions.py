"""Reductions by name or index: sum/mean/prod/var/std, max/min/amax/amin, argmax/argmin, logsumexp,
softmax/log_softmax."""

from __future__ import annotations

import torch

from nir.types import NamedShapeError

from .core import ALL, FLOATS, INTS, E, OpInfo, S, T

NUMBERS = FLOATS + INTS
X = "N3 C4 H5"


def _dim_samples(torch_fn, d, kind="normal", empty=True, **extra):
    """The ways to name the reduced dims: a name, a negative index, a list mixing both, keepdim, all dims."""
    x = T(X, d, kind)
    out = [
        S(x, "C", names=("N", "H"), torch=lambda t: torch_fn(t, 1, **extra), **extra),
        S(x, -1, names=("N", "C"), torch=lambda t: torch_fn(t, -1, **extra), **extra),
        S(x, ["H", 0], names=("C",), torch=lambda t: torch_fn(t, (2, 0), **extra), **extra),
        S(x, "N", keepdim=True, names=("N", "C", "H"), torch=lambda t: torch_fn(t, 0, keepdim=True, **extra),
          **extra),
        S(T("N3 4", d, kind), 1, names=("N",), torch=lambda t: torch_fn(t, 1, **extra), **extra),
    ]
    if empty:
        out.append(S(T("N0 C4", d, kind), "N", names=("C",), torch=lambda t: torch_fn(t, 0, **extra), **extra))
    return out


def _reduce_errors(name):
    return lambda: [
        E(T("N3 C4"), "H", exc=NamedShapeError, match=f"{name}: name 'H' not found in {{N: 3, C: 4}}"),
        E(T("N3 C4"), 2, exc=IndexError, match=f"{name}: dim 2 is out of range"),
        E(T("N3 C4"), ["C", 1], exc=NamedShapeError, match="names a dim twice"),
    ]


def _sum_samples(d):
    # a long sum of positive terms: accumulated in float16/bfloat16 themselves it would drift by percents
    return _dim_samples(torch.sum, d) + [S(T(X, d), names=(), torch=torch.sum, label=f"all-{d}"),
                                         S(T("N2 K600", d, "positive"), "K", names=("N",), label=f"long-{d}",
                                           torch=lambda t: torch.sum(t, 1))]


def _prod(t, dim=None, keepdim=False):
    """torch.prod over several dims (torch's takes one at a time)."""
    if dim is None:
        return torch.prod(t)
    for i in sorted((dim if isinstance(dim, tuple) else (dim,)), key=lambda i: i % t.ndim, reverse=True):
        t = torch.prod(t, i, keepdim=keepdim)
    return t


def _prod_samples(d):
    return _dim_samples(_prod, d) + [S(T("N2 C3", d), names=(), torch=_prod, label=f"all-{d}")]


def _mean_samples(d):
    return _dim_samples(torch.mean, d) + [S(T(X, d), names=(), torch=torch.mean, label=f"all-{d}")]


def _float_errors(name):
    return lambda: _reduce_errors(name)() + [
        E(T("N3", "int64"), "N", exc=TypeError, match=f"{name}: needs a floating-point tensor")]


def _var_samples(torch_fn):
    def samples(d):
        x = T(X, d)
        return _dim_samples(torch_fn, d, empty=False) + [
            S(x, "H", correction=0, names=("N", "C"), torch=lambda t: torch_fn(t, 2, correction=0)),
            S(x, ("N", "C"), correction=2, names=("H",), torch=lambda t: torch_fn(t, (0, 1), correction=2)),
            S(x, "C", unbiased=False, keepdim=True, names=("N", "C", "H"),
              torch=lambda t: torch_fn(t, 1, correction=0, keepdim=True)),
            S(x, names=(), torch=lambda t: torch_fn(t), label=f"all-{d}"),
        ]
    return samples


def _amax_samples(torch_fn):
    def samples(d):
        return _dim_samples(torch_fn, d, empty=False) + [S(T(X, d), names=(), torch=torch_fn, label=f"all-{d}")]
    return samples


def _empty_errors(name):
    return lambda: _reduce_errors(name)() + [
        E(T("N0 C4"), "N", exc=NamedShapeError, match="cannot reduce the empty dim 'N'")]


def _arg_errors(name):
    return lambda: [
        E(T("N3 C4"), "H", exc=NamedShapeError, match=f"{name}: name 'H' not found in {{N: 3, C: 4}}"),
        E(T("N3 C4"), -3, exc=IndexError, match=f"{name}: dim -3 is out of range"),
        E(T("N3 C4"), ["C", 1], exc=TypeError, match=f"{name}: a dim is a name or an int"),
        E(T("N0 C4"), "N", exc=NamedShapeError, match="cannot reduce the empty dim 'N'"),
    ]


def _max_samples(torch_fn):
    def samples(d):
        x = T(X, d, "distinct")
        return [
            S(x, names=(), torch=torch_fn, label=f"all-{d}"),
            S(x, "C", names=("N", "H"), torch=lambda t: torch_fn(t, 1)),
            S(x, -3, keepdim=True, names=("N", "C", "H"), torch=lambda t: torch_fn(t, 0, keepdim=True)),
            S(x, T("C4 H5", d), names=("N", "C", "H"), torch=lambda t, o: torch_fn(t, o), label=f"other-{d}"),
            S(T("N3 C5", d, values=TIES), "C", names=("N",), torch=lambda t: torch_fn(t, 1), label=f"ties-{d}"),
        ]
    return samples


TIES = ((1, 0, 0, 2, 2), (3, 3, 1, 1, 0), (2, 2, 2, 2, 2))  # PyTorch: the first of equal extremes wins


def _arg_samples(torch_fn):
    def samples(d):
        x = T(X, d, "distinct")
        return [
            S(x, names=(), torch=torch_fn, label=f"flat-{d}"),
            S(x, "H", names=("N", "C"), torch=lambda t: torch_fn(t, 2)),
            S(x, -2, keepdim=True, names=("N", "C", "H"), torch=lambda t: torch_fn(t, -2, keepdim=True)),
            S(T("N1", d), 0, names=(), torch=lambda t: torch_fn(t, 0)),
            S(T("N3 C5", d, values=TIES), "C", names=("N",), torch=lambda t: torch_fn(t, 1), label=f"ties-{d}"),
            S(T("N3 C5", d, values=TIES), "N", names=("C",), torch=lambda t: torch_fn(t, 0), label=f"ties-N-{d}"),
        ]
    return samples


def _logsumexp_samples(d):
    x = T(X, d)
    return [
        S(x, "C", names=("N", "H"), torch=lambda t: torch.logsumexp(t, 1)),
        S(x, ("N", -1), names=("C",), torch=lambda t: torch.logsumexp(t, (0, 2))),
        S(x, "H", keepdim=True, names=("N", "C", "H"), torch=lambda t: torch.logsumexp(t, 2, keepdim=True)),
        # a row of -inf stays -inf (not nan), an inf gives inf
        S(T("N2 C3", d, values=((float("-inf"),) * 3, (0.5, float("inf"), -1.0))), "C", names=("N",),
          torch=lambda t: torch.logsumexp(t, 1), label=f"infinite-{d}"),
    ]


def _softmax_samples(torch_fn):
    def samples(d):
        x = T(X, d)
        out = [
            S(x, "C", names=("N", "C", "H"), torch=lambda t: torch_fn(t, 1)),
            S(x, -1, names=("N", "C", "H"), torch=lambda t: torch_fn(t, -1)),
            S(T("N0 C3", d), "C", names=("N", "C"), torch=lambda t: torch_fn(t, 1)),
        ]
        if d == "float32":
            out.append(S(x, "N", dtype="float64", names=("N", "C", "H"),
                         torch=lambda t: torch_fn(t, 0, dtype=torch.float64)))
        return out
    return samples


TABLE = [
    OpInfo("sum", _sum_samples, ALL, errors=_reduce_errors("sum")),
    OpInfo("prod", _prod_samples, ALL, errors=lambda: _reduce_errors("prod")() + [
        E(T("N3 C4"), None, exc=NamedShapeError, match="prod: dim=None names no dim of {N: 3, C: 4}")]),
    OpInfo("mean", _mean_samples, FLOATS, errors=_float_errors("mean")),
    OpInfo("var", _var_samples(torch.var), FLOATS, errors=_float_errors("var")),
    OpInfo("std", _var_samples(torch.std), FLOATS, errors=_float_errors("std")),
    OpInfo("amax", _amax_samples(torch.amax), ALL, errors=_empty_errors("amax")),
    OpInfo("amin", _amax_samples(torch.amin), ALL, errors=_empty_errors("amin")),
    OpInfo("max", _max_samples(torch.max), NUMBERS),
    OpInfo("min", _max_samples(torch.min), NUMBERS),
    OpInfo("argmax", _arg_samples(torch.argmax), NUMBERS, errors=_arg_errors("argmax")),
    OpInfo("argmin", _arg_samples(torch.argmin), NUMBERS, errors=_arg_errors("argmin")),
    OpInfo("logsumexp", _logsumexp_samples, FLOATS, errors=_float_errors("logsumexp")),
    OpInfo("softmax", _softmax_samples(torch.softmax), FLOATS, errors=lambda: [
        E(T("N3 C4"), "H", exc=NamedShapeError, match="softmax: name 'H' not found"),
        E(T("N3 C4"), None, exc=NamedShapeError, match="implicit dims are refused: look up dimensions by name")]),
    OpInfo("log_softmax", _softmax_samples(torch.log_softmax), FLOATS, errors=lambda: [
        E(T("N3 C4"), 5, exc=IndexError, match="log_softmax: dim 5 is out of range")]),
]
