"""Elementwise functions and the NamedTensor operators: arithmetic, comparisons, unary maps, where, clamp,
masked_fill, cast."""

from __future__ import annotations

import operator

import torch

import nir
from nir.types import NamedShapeError

from .core import ALL, FLOATS, INTS, E, OpInfo, S, T

F = torch.nn.functional
NUMBERS = FLOATS + INTS  # every dtype but bool


def _float_result(d: str) -> str:
    return d if d in FLOATS else "float32"


# -- unary ---------------------------------------------------------------------------------------

def _unary(name: str, torch_fn, positive: bool = False, dtypes=ALL) -> OpInfo:
    kind = "positive" if positive else "normal"

    def samples(d):
        return [
            S(T("N3 C4", d, kind), names=("N", "C"), torch=torch_fn),
            S(T("N2 3", d, kind), names=("N", None), torch=torch_fn),
            S(T("", d, kind), names=(), torch=torch_fn),
            S(T("N0 C3", d, kind), names=("N", "C"), torch=torch_fn),
        ]
    return OpInfo(name, samples, dtypes)


UNARY_FLOAT = [
    _unary("exp", torch.exp), _unary("log", torch.log, positive=True), _unary("sqrt", torch.sqrt, positive=True),
    _unary("rsqrt", torch.rsqrt, positive=True), _unary("tanh", torch.tanh), _unary("sigmoid", torch.sigmoid),
    _unary("sin", torch.sin), _unary("cos", torch.cos), _unary("erf", torch.erf),
]
# torch refuses neg/abs/relu on bool tensors, and so does nir
UNARY_SIGNED = [_unary("neg", torch.neg, dtypes=NUMBERS), _unary("abs", torch.abs, dtypes=NUMBERS),
                _unary("relu", torch.relu, dtypes=NUMBERS)]


def _unary_bool_errors(name):
    return lambda: [E(T("N3", "bool"), exc=TypeError, match=f"{name}: not defined for bool tensors")]


UNARY_SIGNED = [OpInfo(o.name, o.samples, o.dtypes, errors=_unary_bool_errors(o.name)) for o in UNARY_SIGNED]


def _gelu_samples(d):
    g = lambda x: F.gelu(x if d in FLOATS else x.float())  # noqa: E731  (torch has no integer GELU)
    return [
        S(T("N3 C4", d), names=("N", "C"), torch=g),
        S(T("N0 5", d), names=("N", None), torch=g),
        S(T("N7", d), approximate="tanh", names=("N",), label=f"tanh-{d}",
          torch=lambda x: F.gelu(x if d in FLOATS else x.float(), approximate="tanh")),
    ]


GELU = OpInfo("gelu", _gelu_samples, NUMBERS,
              errors=lambda: [E(T("N3"), approximate="fast", exc=ValueError, match="approximate must be 'none'")])


def _logical_not_samples(d):
    return [S(T("N3 C4", d), names=("N", "C"), torch=torch.logical_not),
            S(T("", d), names=(), torch=torch.logical_not)]


LOGICAL_NOT = OpInfo("logical_not", _logical_not_samples, ALL)


# -- binary --------------------------------------------------------------------------------------

def _binary_samples(torch_fn, positive: bool = False, scalar=None):
    kind = "positive" if positive else "normal"

    def samples(d):
        out = [
            S(T("N3 C4", d), T("N3 C4", d, kind), names=("N", "C"), torch=torch_fn),
            S(T("N3 C4", d), T("C4", d, kind), names=("N", "C"), torch=torch_fn),  # by position from the right
            S(T("3 C4", d), T("N3 1", d, kind), names=("N", "C"), torch=torch_fn),  # None matches any name
            S(T("N3 1", d), T("C4", d, kind), names=("N", "C"), torch=torch_fn),  # size-1 broadcast
            S(T("N0 C4", d), T("C4", d, kind), names=("N", "C"), torch=torch_fn),
            S(T("", d), T("N2", d, kind), names=("N",), torch=torch_fn),
        ]
        if scalar is not None and d != "bool":
            v = scalar(d)
            out.append(S(T("N3 C2", d), v, names=("N", "C"), torch=lambda x: torch_fn(x, v)))
        return out
    return samples


def _binary_errors():
    return [
        E(T("N3 C4"), T("C4 N3"), exc=NamedShapeError,
          match="dim 'N' and dim 'C' are at the same position from the right but do not match"),
        E(T("N3 C4"), T("N3 C5"), exc=NamedShapeError, match="sizes do not broadcast"),
        E(T("N3 3"), T("3 N3"), exc=NamedShapeError, match="misaligned dims: dim 'N'"),
    ]


def _scalar(d):
    return 2 if d in INTS else 1.5


def _binary(name, torch_fn, dtypes=NUMBERS, positive=False, scalar=_scalar, errors=_binary_errors) -> OpInfo:
    return OpInfo(name, _binary_samples(torch_fn, positive, scalar), dtypes, errors=errors)


def _true_div(a, b):
    return torch.div(a, b)


def _float_pow(a, b):
    # nir's pow is floating point (integer operands give float32), where torch keeps integers
    if not isinstance(a, torch.Tensor) or a.dtype.is_floating_point:
        return torch.pow(a, b)
    return torch.pow(a.float(), b.float() if isinstance(b, torch.Tensor) else b)


def _promotion_samples(d):
    """Mixed dtypes promote as in PyTorch (only run under the float32 sweep: one copy each)."""
    if d != "float32":
        return []
    pairs = [("int32", "int64"), ("int64", "float16"), ("float16", "bfloat16"), ("bool", "int32"),
             ("uint8", "int8"), ("int8", "int16"), ("int64", "bfloat16"), ("float32", "float64")]
    out = [S(T("N3 C4", a), T("C4", b), names=("N", "C"), torch=torch.add, label=f"add-{a}-{b}") for a, b in pairs]
    out.append(S(T("N3", "int64"), 2.5, names=("N",), torch=lambda x: x + 2.5, label="int64-plus-float"))
    out.append(S(T("N3", "float16"), 2.5, names=("N",), torch=lambda x: x + 2.5, label="float16-plus-float"))
    out.append(S(T("N3", "int32"), 7, names=("N",), torch=lambda x: x + 7, label="int32-plus-int"))
    out.append(S(T("N3", "bool"), True, names=("N",), torch=lambda x: x + True, label="bool-plus-bool"))
    return out


def _add_samples(d):
    return _binary_samples(torch.add, scalar=_scalar)(d) + _promotion_samples(d)


BINARY = [
    OpInfo("add", _add_samples, ALL, errors=_binary_errors),
    _binary("sub", torch.sub, errors=lambda: _binary_errors() + [
        E(T("N3", "bool"), T("N3", "bool"), exc=TypeError, match="sub: not defined for bool tensors")]),
    _binary("mul", torch.mul, ALL),
    _binary("div", _true_div, ALL, positive=True),
    _binary("pow", _float_pow, NUMBERS, positive=True),
    _binary("maximum", torch.maximum, ALL, scalar=None),
    _binary("minimum", torch.minimum, ALL, scalar=None),
    *[_binary(n, getattr(torch, n), ALL, scalar=None) for n in ("eq", "ne", "lt", "le", "gt", "ge")],
    _binary("logical_and", torch.logical_and, ALL, scalar=None),
    _binary("logical_or", torch.logical_or, ALL, scalar=None),
]


# -- operators: the binding of each NamedTensor dunder ---------------------------------------------

def _operator(dunder: str, torch_fn, dtypes, scalar=None) -> OpInfo:
    def samples(d):
        out = [S(T("N3 C4", d), T("C4", d, "positive"), names=("N", "C"), torch=torch_fn)]
        if scalar is not None and d != "bool":
            v = scalar(d)
            out.append(S(T("N3 C2", d, "positive"), v, names=("N", "C"), torch=lambda x: torch_fn(x, v)))
        return out
    return OpInfo(dunder, samples, dtypes, fn=getattr(nir.NamedTensor, dunder), method=None)


def _reflected(op):
    return lambda a, b: op(b, a)


def _rpow(a, b):
    return _float_pow(b, a) if isinstance(b, torch.Tensor) else torch.pow(b, a if a.is_floating_point() else a.float())


OPERATORS = [
    _operator("__add__", operator.add, ALL, _scalar), _operator("__radd__", _reflected(operator.add), ALL, _scalar),
    _operator("__sub__", operator.sub, NUMBERS, _scalar),
    _operator("__rsub__", _reflected(operator.sub), NUMBERS, _scalar),
    _operator("__mul__", operator.mul, ALL, _scalar), _operator("__rmul__", _reflected(operator.mul), ALL, _scalar),
    _operator("__truediv__", operator.truediv, ALL, _scalar),
    _operator("__rtruediv__", _reflected(operator.truediv), ALL, _scalar),
    _operator("__pow__", _float_pow, NUMBERS, _scalar), _operator("__rpow__", _rpow, NUMBERS, _scalar),
    *[_operator(f"__{n}__", getattr(operator, n), ALL, _scalar) for n in ("eq", "ne", "lt", "le", "gt", "ge")],
    # & | ~ are logical on bool tensors; torch's are bitwise on integers, which nir refuses
    OpInfo("__and__", lambda d: [S(T("N3 C4", "bool"), T("C4", "bool"), names=("N", "C"), torch=operator.and_)],
           fn=nir.NamedTensor.__and__, method=None, errors=lambda: [
               E(T("N3", "int64"), T("N3", "int64"), exc=TypeError, match="& is logical and on bool tensors")]),
    OpInfo("__rand__", lambda d: [S(T("N3 C4", "bool"), True, names=("N", "C"), torch=lambda x: True & x)],
           fn=nir.NamedTensor.__rand__, method=None),
    OpInfo("__or__", lambda d: [S(T("N3 C4", "bool"), T("C4", "bool"), names=("N", "C"), torch=operator.or_)],
           fn=nir.NamedTensor.__or__, method=None, errors=lambda: [
               E(T("N3", "int32"), T("N3", "int32"), exc=TypeError, match="| is logical or on bool tensors")]),
    OpInfo("__ror__", lambda d: [S(T("N3 C4", "bool"), False, names=("N", "C"), torch=lambda x: False | x)],
           fn=nir.NamedTensor.__ror__, method=None),
    OpInfo("__invert__", lambda d: [S(T("N3 C4", "bool"), names=("N", "C"), torch=operator.invert)],
           fn=nir.NamedTensor.__invert__, method=None, errors=lambda: [
               E(T("N3", "int64"), exc=TypeError, match="~ is logical not on bool tensors")]),
    OpInfo("__neg__", lambda d: [S(T("N3 C4", d), names=("N", "C"), torch=operator.neg)], NUMBERS,
           fn=nir.NamedTensor.__neg__, method=None),
    OpInfo("__abs__", lambda d: [S(T("N3 C4", d), names=("N", "C"), torch=operator.abs)], NUMBERS,
           fn=nir.NamedTensor.__abs__, method=None),
]


# -- where, clamp, masked_fill, cast -----------------------------------------------------------------

def _where_samples(d):
    return [
        S(T("N3 C4", "bool"), T("N3 C4", d), T("N3 C4", d), names=("N", "C"), torch=torch.where),
        S(T("N3 1", "bool"), T("C4", d), T("3 C4", d), names=("N", "C"), torch=torch.where),
        S(T("N3 C4", "bool"), T("C4", d), _scalar(d) if d != "bool" else False, names=("N", "C"),
          torch=lambda c, x: torch.where(c, x, _scalar(d) if d != "bool" else False)),
        S(T("N0 C4", "bool"), T("N0 C4", d), T("C4", d), names=("N", "C"), torch=torch.where),
    ]


WHERE = OpInfo("where", _where_samples, ALL, method=None, errors=lambda: [
    E(T("N3", "float32"), T("N3"), T("N3"), exc=TypeError, match="the condition must be a bool tensor"),
    E(T("N3 C4", "bool"), T("C4 N3"), T("N3 C4"), exc=NamedShapeError, match="are at the same position"),
])


def _clamp_samples(d):
    lo, hi = (-1, 2) if d in INTS else (-0.5, 0.7)
    return [
        S(T("N3 C4", d), min=lo, names=("N", "C"), torch=lambda x: torch.clamp(x, min=lo)),
        S(T("N3 C4", d), max=hi, names=("N", "C"), torch=lambda x: torch.clamp(x, max=hi)),
        S(T("N3 C4", d), min=lo, max=hi, names=("N", "C"), torch=lambda x: torch.clamp(x, lo, hi)),
        # min above max gives max everywhere, as in torch
        S(T("N3 C4", d), min=hi, max=lo, names=("N", "C"), torch=lambda x: torch.clamp(x, hi, lo)),
        S(T("N3 C4", d), T("C4", d), T("N3 1", d), names=("N", "C"), torch=lambda x, a, b: torch.clamp(x, a, b),
          label=f"tensor-bounds-{d}"),
    ]


CLAMP = OpInfo("clamp", _clamp_samples, NUMBERS,
               errors=lambda: [E(T("N3"), exc=ValueError, match="give at least one of min= and max=")])


def _masked_fill_samples(d):
    v = True if d == "bool" else _scalar(d)
    return [
        S(T("N3 C4", d), T("N3 C4", "bool"), v, names=("N", "C"), torch=lambda x, m: x.masked_fill(m, v)),
        S(T("N3 C4", d), T("C4", "bool"), v, names=("N", "C"), torch=lambda x, m: x.masked_fill(m, v)),
        S(T("N3 C4", d), T("3 1", "bool"), v, names=("N", "C"), torch=lambda x, m: x.masked_fill(m, v)),
    ]


MASKED_FILL = OpInfo("masked_fill", _masked_fill_samples, ALL, errors=lambda: [
    E(T("N3"), T("N3", "int64"), 0.0, exc=TypeError, match="masked_fill: mask must be bool"),
    E(T("C4"), T("N3 C4", "bool"), 0.0, exc=NamedShapeError, match="has more dims than the tensor"),
])


def _cast_samples(d):
    out = [S(T("N3 C4", d), to, names=("N", "C"), torch=lambda x, to=to: x.to(getattr(torch, to)))
           for to in ALL]
    if d == "float32":
        out += [S(T("N2", d), torch.bfloat16, names=("N",), torch=lambda x: x.to(torch.bfloat16), label="torch-dtype"),
                S(T("N2", d), "f16", names=("N",), torch=lambda x: x.to(torch.float16), label="short-name")]
    return out


CAST = OpInfo("cast", _cast_samples, ALL, errors=lambda: [
    E(T("N3"), "complex64", exc=TypeError, match="unsupported dtype 'complex64'")])
TO = OpInfo("to", _cast_samples, ("float32", "int64"), fn=nir.NamedTensor.to, method=None)

TABLE = [*UNARY_FLOAT, *UNARY_SIGNED, GELU, LOGICAL_NOT, *BINARY, *OPERATORS, WHERE, CLAMP, MASKED_FILL, CAST, TO]
