"""The PyTorch frontend: bring a torch program in, give its dimensions names, compile it anywhere.

    traced = nir.from_torch(model, (images,), names={"x": ("N", "C", "H", "W")})
    f = nir.compile(traced, target="llvm", backend="xla")
    logits = f(nir.tensor(images, names=("N", "C", "H", "W")))      # names ('N', 'fc3.out')

How it works. `torch.export.export` (eval mode, no_grad) gives a flat graph of ATen ops whose parameters
are lifted to inputs. That graph is *replayed* with nir's named-tensor API inside a nir trace: every ATen
op has a converter in `CONVERTERS` that resolves its positional meaning (``dim=1``, Linear's
``x @ W.T``) against the tensor's positional layout and calls `nir.functions`, so nir's name rules check
the program while it is converted. Parameters and buffers become named constants whose dims are named
after their layer and role (``fc1.weight`` -> ``{fc1.out, fc1.in}``, ``conv1.weight`` ->
``{conv1.out, conv1.in, conv1.kh, conv1.kw}``); ``param_names=`` overrides any of them.

How names flow. Names the user gives (for inputs, and for parameters through ``param_names=``) are
*asserted*: two asserted names that meet at one position of an elementwise op are a conflict, reported
as a `TorchNameError` (a `nir.NamedShapeError`) that names the module it happened in. Names derived from
layers (``fc1.out``) are *provisional*: where one meets another name at the same position of an
elementwise op (the residual ``x + self.proj(h)``), it yields and takes that name, since the model says
they are one dim. A contraction renames the weight's contracted dim to the input's name (Linear's in-dim
becomes ``C``); a Linear's output dim carries the layer's out name. A torch ``view``/``reshape`` becomes
nir ``flatten``/``unflatten`` on the runs of consecutive dims it merges or splits; dims it leaves alone
keep their names, merged or split dims are unnamed.

An ATen op without a converter is first decomposed with torch's own decomposition (when torch has one)
into ops that have converters; one that still has none raises `UnsupportedOpError`, naming the op and the
module and source line it came from. `docs/torch_ops.md` lists the converted ops (`supported_ops_markdown`).
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import math
import operator
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.fx import Node
from torch.fx.node import map_arg

import nir.functions as nf
from nir.functions import _rename_ir
from nir.ops.windows import _window_out
from nir.tensor import NamedTensor, bind, current_trace, from_array
from nir.types import NamedShapeError, canonical_dtype, check_user_name, fresh_name

from .python import Spec, Traced, trace

__all__ = ["from_torch", "TorchTraced", "UnsupportedOpError", "TorchNameError", "CONVERTERS", "converts", "op_key",
           "default_param_names", "supported_ops_markdown"]

Names = Sequence[str | None]


class UnsupportedOpError(NotImplementedError):
    """An ATen op (or a setting of one) that nir cannot convert. The message names the op and the module
    and source line of the user's model it came from."""


class TorchNameError(NamedShapeError):
    """A name conflict found while converting a torch program; the message names the module it arose in."""


# ------------------------------------------------------------------------------------------------
# the converter table
# ------------------------------------------------------------------------------------------------

CONVERTERS: dict[str, Callable[..., Any]] = {}
"""ATen op overload name (``"aten.linear.default"``, or ``"operator.getitem"``) -> converter. A converter
takes the op's arguments as in its ATen schema, with tensors as NamedTensors, and returns a NamedTensor
(a tuple of them for multi-output ops, an int for symbolic sizes, None for assertions)."""

_SECTIONS: dict[str, list[str]] = {}


def converts(section: str, *ops: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the converter of ``ops`` (listed under ``section`` in the docs)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op in ops:
            if op in CONVERTERS:
                raise ValueError(f"two converters for {op}")
            CONVERTERS[op] = fn
            _SECTIONS.setdefault(section, []).append(op)
        return fn
    return register


def op_key(target: Any) -> str:
    """The key of an FX node's target in `CONVERTERS`: ``"aten.add.Tensor"``, ``"operator.getitem"``."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or repr(target)
    return f"{'operator' if module in ('_operator', 'operator') else module}.{name}"


class _Unsupported(Exception):
    """Raised by a converter for a setting it cannot express; re-raised as UnsupportedOpError with the place."""


# ------------------------------------------------------------------------------------------------
# conversion state and name helpers
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _State:
    asserted: frozenset[str] = frozenset()  # names the user gave: they never yield to another name


_STATE: contextvars.ContextVar[_State] = contextvars.ContextVar("nir_torch_state", default=_State())
_temp_names = itertools.count()


def _rename_at(t: NamedTensor, pos: int, new: str | None) -> NamedTensor:
    """``t`` with the dim at position ``pos`` named ``new`` (None: unnamed)."""
    return _rename_ir(t, {t.type.names[pos]: fresh_name() if new is None else new})


def _reconcile(*xs: Any, apart: int | None = None) -> list[Any]:
    """Operands of a positional broadcast (elementwise ops, cat) with layer-derived names reconciled.

    PyTorch pairs dims by position from the right. Where the dims at one position carry different names
    and at most one of them was given by the user, the others take that name (or, when none was, the first
    operand's): the model itself says they are one dim, so ``x{N, C} + fc(x){N, fc.out}`` is ``{N, C}``.
    Two different user-given names are left alone, so nir reports the conflict. ``apart`` is a position
    from the right (1 = last) whose differing layer-derived names are dropped instead of unified: the dim
    cat joins along is a new dim, not any of its parts."""
    out = list(xs)
    idx = [i for i, x in enumerate(xs) if isinstance(x, NamedTensor)]
    if len(idx) < 2:
        return out
    asserted = _STATE.get().asserted
    for p in range(1, max(out[i].ndim for i in idx) + 1):
        named = [(i, out[i].names[-p]) for i in idx if out[i].ndim >= p and out[i].names[-p] is not None]
        distinct = list(dict.fromkeys(n for _, n in named))
        strong = [n for n in distinct if n in asserted]
        if len(distinct) < 2 or len(strong) > 1:
            continue
        winner = strong[0] if strong else (None if p == apart else distinct[0])
        for i, n in named:
            if n != winner and n not in asserted and (winner is None or winner not in out[i].names):
                out[i] = _rename_at(out[i], -p, winner)
    # A layer-derived name at different positions from the right in two operands (x{A, fc.out} + y{fc.out, B})
    # names two different dims: keep it where it is first seen, unname it elsewhere.
    seen: dict[str, int] = {}
    for i in idx:
        for k, n in enumerate(out[i].names):
            if n is not None and n not in asserted and seen.setdefault(n, out[i].ndim - k) != out[i].ndim - k:
                out[i] = _rename_at(out[i], k, None)
    return out


def _visible(x: NamedTensor, positions: Sequence[int]) -> tuple[NamedTensor, list[str], dict[str, str]]:
    """``x`` with the dims at ``positions`` carrying user-visible names, so that nir functions taking dims
    by name (conv2d, pooling, layer_norm) can be called on dims the user left unnamed: those get temporary
    names. Returns the tensor, the names, and the renames that undo the temporary names (`_restore`)."""
    mapping: dict[str, str] = {}
    names: list[str] = []
    for p in positions:
        name = x.names[p]
        if name is None:
            name = f"nir_tmp{next(_temp_names)}"
            mapping[x.type.names[p]] = name
        names.append(name)
    return _rename_ir(x, mapping), names, {v: k for k, v in mapping.items()}


def _restore(y: NamedTensor, undo: Mapping[str, str]) -> NamedTensor:
    """Undo `_visible`'s temporary names on the dims of ``y`` that still carry them."""
    return _rename_ir(y, {k: v for k, v in undo.items() if k in y.type.names})


def _named_as(p: NamedTensor | None, names: Sequence[str]) -> NamedTensor | None:
    """Parameter ``p`` with its dims (all of them, in order) renamed to ``names``."""
    return None if p is None else _rename_ir(p, dict(zip(p.type.names, names)))


def _matmul(a: NamedTensor, b: NamedTensor, *, weight: bool = False) -> NamedTensor:
    """`nir.matmul`, except that b's column dim loses its name when a's row or batch dims already use it:
    in ``a @ a.transpose(1, 2)`` over ``a{N, L, C}`` the result's second L is a new dim. When b is a
    layer's weight (``weight=True``) a name the user gave it (``param_names=``) stays, and nir reports the
    clash: the user named two different dims alike."""
    col = b.names[-1] if a.ndim >= 2 and b.ndim >= 2 else None
    if col is not None and col in a.names[:-1] and not (weight and col in _STATE.get().asserted):
        b = _rename_at(b, -1, None)
    return nf.matmul(a, b)


def _dtype(dtype: Any) -> str | None:
    return None if dtype is None else canonical_dtype(dtype)


def _maybe_cast(x: NamedTensor, dtype: Any) -> NamedTensor:
    return x if dtype is None else nf.cast(x, dtype)


def _positions(x: NamedTensor, dim: int | Sequence[int] | None) -> list[int]:
    """ATen's ``dim`` argument as a list of positions; None or [] means every dim."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return list(range(x.ndim))
    return [int(d) % max(x.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)]


# ------------------------------------------------------------------------------------------------
# converters: elementwise
# ------------------------------------------------------------------------------------------------

_UNARY = {"relu": nf.relu, "tanh": nf.tanh, "sigmoid": nf.sigmoid, "exp": nf.exp, "log": nf.log, "sqrt": nf.sqrt,
          "rsqrt": nf.rsqrt, "neg": nf.neg, "abs": nf.abs, "erf": nf.erf, "sin": nf.sin, "cos": nf.cos,
          "logical_not": nf.logical_not}


def _unary_converter(fn: Callable[[NamedTensor], NamedTensor]) -> Callable[..., NamedTensor]:
    def convert(x: NamedTensor) -> NamedTensor:
        return fn(x)
    convert.__doc__ = f"`nir.{fn.__name__}`; keeps names."
    return convert


for _name, _fn in _UNARY.items():
    converts("elementwise", f"aten.{_name}.default")(_unary_converter(_fn))


@converts("elementwise", "aten.gelu.default")
def _gelu(x: NamedTensor, *, approximate: str = "none") -> NamedTensor:
    """`nir.gelu` (exact, or ``approximate='tanh'``)."""
    return nf.gelu(x, approximate)


@converts("elementwise", "aten.silu.default")
def _silu(x: NamedTensor) -> NamedTensor:
    """``x * sigmoid(x)``."""
    return x * nf.sigmoid(x)


@converts("elementwise", "aten.reciprocal.default")
def _reciprocal(x: NamedTensor) -> NamedTensor:
    """``1 / x``."""
    return nf.div(1.0, x)


@converts("elementwise", "aten.clamp.default")
def _clamp(x: NamedTensor, min: float | None = None, max: float | None = None) -> NamedTensor:  # noqa: A002
    """`nir.clamp`."""
    return nf.clamp(x, min, max) if min is not None or max is not None else x


@converts("elementwise", "aten.hardtanh.default")
def _hardtanh(x: NamedTensor, min_val: float = -1.0, max_val: float = 1.0) -> NamedTensor:
    """`nir.clamp` to [min_val, max_val]."""
    return nf.clamp(x, min_val, max_val)


@converts("elementwise", "aten.clamp_min.default")
def _clamp_min(x: NamedTensor, min: float) -> NamedTensor:  # noqa: A002
    """`nir.maximum` with a scalar."""
    return nf.maximum(x, min)


@converts("elementwise", "aten.clamp_max.default")
def _clamp_max(x: NamedTensor, max: float) -> NamedTensor:  # noqa: A002
    """`nir.minimum` with a scalar."""
    return nf.minimum(x, max)


@converts("elementwise", "aten.leaky_relu.default")
def _leaky_relu(x: NamedTensor, negative_slope: float = 0.01) -> NamedTensor:
    """``where(x > 0, x, x * negative_slope)``."""
    return nf.where(x > 0, x, x * negative_slope)


def _binary_converter(fn: Callable[[Any, Any], NamedTensor], has_alpha: bool) -> Callable[..., NamedTensor]:
    def convert(a: Any, b: Any, *, alpha: float = 1) -> NamedTensor:
        if alpha != 1:
            b = b * alpha
        return fn(*_reconcile(a, b))
    convert.__doc__ = f"`nir.{fn.__name__}`" + (" (``alpha=`` scales the second operand)." if has_alpha else ".")
    return convert


_BINARY = {
    "add": (nf.add, ("Tensor", "Scalar")), "sub": (nf.sub, ("Tensor", "Scalar")),
    "mul": (nf.mul, ("Tensor", "Scalar")), "div": (nf.div, ("Tensor", "Scalar")),
    "pow": (nf.pow, ("Tensor_Scalar", "Tensor_Tensor", "Scalar")),
    "maximum": (nf.maximum, ("default",)), "minimum": (nf.minimum, ("default",)),
    "eq": (nf.eq, ("Tensor", "Scalar")), "ne": (nf.ne, ("Tensor", "Scalar")), "lt": (nf.lt, ("Tensor", "Scalar")),
    "le": (nf.le, ("Tensor", "Scalar")), "gt": (nf.gt, ("Tensor", "Scalar")), "ge": (nf.ge, ("Tensor", "Scalar")),
    "logical_and": (nf.logical_and, ("default",)), "logical_or": (nf.logical_or, ("default",)),
}
for _name, (_fn, _overloads) in _BINARY.items():
    converts("elementwise", *(f"aten.{_name}.{o}" for o in _overloads))(
        _binary_converter(_fn, _name in ("add", "sub")))


@converts("elementwise", "aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(x: NamedTensor, other: Any, alpha: float = 1) -> NamedTensor:
    """``other - alpha * x``."""
    return nf.sub(*_reconcile(other, x * alpha if alpha != 1 else x))


@converts("elementwise", "aten.div.Tensor_mode")
def _div_mode(a: Any, b: Any, *, rounding_mode: str | None = None) -> NamedTensor:
    """`nir.div` when ``rounding_mode`` is None; nir has no floor or trunc primitive."""
    if rounding_mode is not None:
        raise _Unsupported(f"rounding_mode={rounding_mode!r}: nir has no floor/trunc primitive; use true division")
    return nf.div(*_reconcile(a, b))


@converts("elementwise", "aten.where.self")
def _where(cond: NamedTensor, x: Any, y: Any) -> NamedTensor:
    """`nir.where`, broadcasting the three operands by position."""
    return nf.where(*_reconcile(cond, x, y))


@converts("elementwise", "aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(x: NamedTensor, mask: NamedTensor, value: Any) -> NamedTensor:
    """``where(mask, value, x)``."""
    x, mask = _reconcile(x, mask)
    return nf.where(mask, value, x)


# ------------------------------------------------------------------------------------------------
# converters: reductions and softmax
# ------------------------------------------------------------------------------------------------

@converts("reduction", "aten.sum.default", "aten.sum.dim_IntList")
def _sum(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.sum` over the dims at the given positions (all when none are given)."""
    return nf.sum(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.mean.default", "aten.mean.dim")
def _mean(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.mean` over the dims at the given positions."""
    return nf.mean(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.prod.default", "aten.prod.dim_int")
def _prod(x: NamedTensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> NamedTensor:
    """`nir.prod` over the dims at the given positions."""
    return nf.prod(_maybe_cast(x, dtype), _positions(x, dim), keepdim)


@converts("reduction", "aten.amax.default", "aten.max.default")
def _amax(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """`nir.amax` over the dims at the given positions."""
    return nf.amax(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.amin.default", "aten.min.default")
def _amin(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """`nir.amin` over the dims at the given positions."""
    return nf.amin(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.max.dim")
def _max_dim(x: NamedTensor, dim: int, keepdim: bool = False) -> tuple[NamedTensor, NamedTensor]:
    """`nir.max` along one dim: (values, indices)."""
    return tuple(nf.max(x, dim, keepdim))  # type: ignore[return-value]


@converts("reduction", "aten.min.dim")
def _min_dim(x: NamedTensor, dim: int, keepdim: bool = False) -> tuple[NamedTensor, NamedTensor]:
    """`nir.min` along one dim: (values, indices)."""
    return tuple(nf.min(x, dim, keepdim))  # type: ignore[return-value]


@converts("reduction", "aten.argmax.default")
def _argmax(x: NamedTensor, dim: int | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.argmax`."""
    return nf.argmax(x, dim, keepdim)


@converts("reduction", "aten.argmin.default")
def _argmin(x: NamedTensor, dim: int | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.argmin`."""
    return nf.argmin(x, dim, keepdim)


@converts("reduction", "aten.var.correction")
def _var(x: NamedTensor, dim: Any = None, *, correction: float | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.var` (correction 1 unless given)."""
    return nf.var(x, _positions(x, dim), correction=1 if correction is None else int(correction), keepdim=keepdim)


@converts("reduction", "aten.std.correction")
def _std(x: NamedTensor, dim: Any = None, *, correction: float | None = None, keepdim: bool = False) -> NamedTensor:
    """`nir.std` (correction 1 unless given)."""
    return nf.std(x, _positions(x, dim), correction=1 if correction is None else int(correction), keepdim=keepdim)


@converts("reduction", "aten.var.dim")
def _var_dim(x: NamedTensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> NamedTensor:
    """`nir.var` (Bessel's correction when ``unbiased``)."""
    return nf.var(x, _positions(x, dim), correction=int(unbiased), keepdim=keepdim)


@converts("reduction", "aten.std.dim")
def _std_dim(x: NamedTensor, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> NamedTensor:
    """`nir.std` (Bessel's correction when ``unbiased``)."""
    return nf.std(x, _positions(x, dim), correction=int(unbiased), keepdim=keepdim)


@converts("reduction", "aten.logsumexp.default")
def _logsumexp(x: NamedTensor, dim: Any, keepdim: bool = False) -> NamedTensor:
    """`nir.logsumexp`."""
    return nf.logsumexp(x, _positions(x, dim), keepdim)


@converts("reduction", "aten.any.default", "aten.any.dim", "aten.any.dims")
def _any(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """``sum(x != 0) > 0`` over the dims at the given positions."""
    return nf.sum(nf.ne(x, 0), _positions(x, dim), keepdim) > 0


@converts("reduction", "aten.all.default", "aten.all.dim", "aten.all.dims")
def _all(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> NamedTensor:
    """``sum(x == 0) == 0`` over the dims at the given positions."""
    return nf.sum(nf.eq(x, 0), _positions(x, dim), keepdim) == 0


@converts("reduction", "aten.softmax.int", "aten._softmax.default")
def _softmax(x: NamedTensor, dim: int, dtype: Any = None) -> NamedTensor:
    """`nir.softmax` along the dim at that position."""
    return nf.softmax(x, dim, None if isinstance(dtype, bool) else dtype)  # _softmax's 3rd arg is half_to_float


@converts("reduction", "aten.log_softmax.int", "aten._log_softmax.default")
def _log_softmax(x: NamedTensor, dim: int, dtype: Any = None) -> NamedTensor:
    """`nir.log_softmax` along the dim at that position."""
    return nf.log_softmax(x, dim, None if isinstance(dtype, bool) else dtype)


# ------------------------------------------------------------------------------------------------
# converters: contraction, normalization, convolution, pooling, attention, embedding
# ------------------------------------------------------------------------------------------------

@converts("layer", "aten.linear.default")
def _linear(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None = None) -> NamedTensor:
    """``matmul(x, weight.t()) + bias``: the weight's in-dim takes the name of x's last dim; the output's
    last dim is the weight's out-dim (``fc1.out``)."""
    name = x.names[-1]
    if name is not None and name not in weight.names:
        weight = _rename_at(weight, -1, name)
    y = _matmul(x, nf.t(weight), weight=True)
    return y if bias is None else nf.add(*_reconcile(y, bias))


@converts("layer", "aten.matmul.default", "aten.mm.default", "aten.bmm.default")
def _matmul_converter(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """`nir.matmul` (contracted names are ignored; a column name that the result already has is dropped)."""
    return _matmul(a, b)


@converts("layer", "aten.addmm.default")
def _addmm(bias: Any, a: NamedTensor, b: NamedTensor, *, beta: float = 1, alpha: float = 1) -> NamedTensor:
    """``beta * bias + alpha * (a @ b)``."""
    y = _matmul(a, b)
    y = y * alpha if alpha != 1 else y
    return nf.add(*_reconcile(y, bias * beta if beta != 1 else bias))


@converts("layer", "aten.layer_norm.default")
def _layer_norm(x: NamedTensor, normalized_shape: Sequence[int], weight: NamedTensor | None = None,
                bias: NamedTensor | None = None, eps: float = 1e-5, cudnn_enable: bool = True) -> NamedTensor:
    """`nir.layer_norm` over x's last ``len(normalized_shape)`` dims, by name; weight and bias take those names."""
    xv, over, undo = _visible(x, range(x.ndim - len(normalized_shape), x.ndim))
    return _restore(nf.layer_norm(xv, over, _named_as(weight, over), _named_as(bias, over), eps), undo)


@converts("layer", "aten.native_layer_norm.default")
def _native_layer_norm(x: NamedTensor, normalized_shape: Sequence[int], weight: NamedTensor | None,
                       bias: NamedTensor | None, eps: float) -> tuple[Any, ...]:
    """As ``aten.layer_norm`` (only the first output, the normalized tensor, is available)."""
    return (_layer_norm(x, normalized_shape, weight, bias, eps), _NOT_CONVERTED, _NOT_CONVERTED)


def _per_channel(p: NamedTensor, x: NamedTensor) -> NamedTensor:
    """A per-channel vector ``{C}`` named after x's channel dim (position 1) and shaped ``{C, 1, 1}`` to
    broadcast against x by position, as torch does."""
    p = _rename_ir(p, {p.type.names[0]: x.type.names[1]})
    for _ in range(x.ndim - 2):
        p = nf.unsqueeze(p, -1)
    return p


@converts("layer", "aten.batch_norm.default")
def _batch_norm(x: NamedTensor, weight: NamedTensor | None, bias: NamedTensor | None,
                running_mean: NamedTensor | None, running_var: NamedTensor | None, training: bool,
                momentum: float, eps: float, cudnn_enabled: bool = True) -> NamedTensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` along x's channel dim (position 1), by name; the
    running statistics in eval mode, the batch's own otherwise."""
    if x.ndim < 2:
        raise _Unsupported(f"batch_norm needs a channel dim at position 1, got {x.type.pretty()}")
    if training or running_mean is None or running_var is None:
        dims = [i for i in range(x.ndim) if i != 1]
        mean, var = nf.mean(x, dims, keepdim=True), nf.var(x, dims, correction=0, keepdim=True)
    else:
        mean, var = _per_channel(running_mean, x), _per_channel(running_var, x)
    y = (x - mean) / nf.sqrt(var + eps)
    if weight is not None:
        y = y * _per_channel(weight, x)
    return y if bias is None else y + _per_channel(bias, x)


@converts("layer", "aten._native_batch_norm_legit_no_training.default")
def _batch_norm_no_training(x: NamedTensor, weight: NamedTensor | None, bias: NamedTensor | None,
                            running_mean: NamedTensor, running_var: NamedTensor, momentum: float,
                            eps: float) -> tuple[Any, ...]:
    """As ``aten.batch_norm`` in eval mode (only the first output is available)."""
    y = _batch_norm(x, weight, bias, running_mean, running_var, False, momentum, eps)
    return (y, _NOT_CONVERTED, _NOT_CONVERTED)


@converts("layer", "aten.conv2d.default", "aten.conv2d.padding")
def _conv2d(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None = None, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1) -> NamedTensor:
    """`nir.conv2d` with ``channels`` and ``spatial`` taken from x's dims at positions -3, -2, -1 (the
    weight's in, kh and kw dims take those names) and ``out_channels`` from the weight's out-dim (``conv1.out``)."""
    if x.ndim not in (3, 4) or weight.ndim != 4:
        raise _Unsupported(f"only 2-d convolution converts (input {x.type.pretty()}, weight {weight.type.pretty()})")
    xv, (c, h, w), undo = _visible(x, (-3, -2, -1))
    out = weight.names[0]
    if out is None or out in xv.names:  # unnamed, or taken: a conv applied to its own output
        tmp = f"nir_tmp{next(_temp_names)}"
        undo[tmp] = out if out is not None else fresh_name()
        out = tmp
    y = nf.conv2d(xv, _named_as(weight, (out, c, h, w)), _named_as(bias, (out,)), stride=stride, padding=padding,
                  dilation=dilation, groups=groups, channels=c, out_channels=out, spatial=(h, w))
    return _restore(y, undo)


@converts("layer", "aten.convolution.default")
def _convolution(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None, stride: Any, padding: Any,
                 dilation: Any, transposed: bool, output_padding: Any, groups: int) -> NamedTensor:
    """As ``aten.conv2d`` (2-d, not transposed)."""
    if transposed:
        raise _Unsupported("transposed convolution has no nir primitive")
    return _conv2d(x, weight, bias, stride, padding, dilation, groups)


def _ceil_pool_out(size: int, k: int, s: int, p: int) -> int:
    """torch's pooled size with ceil_mode=True (a last window must start inside the input or left padding)."""
    out = -(-(size + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= size + p else out


def _pool(kind: str, x: NamedTensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> NamedTensor:
    k = nf._pair(kernel_size, "kernel_size", kind)
    s = nf._pair(stride if stride else k, "stride", kind)
    p = nf._pair(padding, "padding", kind)
    if ceil_mode and any(_ceil_pool_out(n, *a) != _window_out(n, *a, 1) for n, a in zip(x.shape[-2:], zip(k, s, p))):
        raise _Unsupported("ceil_mode=True changes the output size here; nir pools with floor (ceil_mode=False)")
    xv, spatial, undo = _visible(x, (-2, -1))
    return _restore((nf.max_pool2d if kind == "max" else nf.avg_pool2d)(xv, k, s, p, spatial=spatial), undo)


@converts("layer", "aten.max_pool2d.default")
def _max_pool2d(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False) -> NamedTensor:
    """`nir.max_pool2d` over x's last two dims, by name."""
    if nf._pair(dilation, "dilation", "max_pool2d") != (1, 1):
        raise _Unsupported(f"dilation={dilation}: nir's pool2d has no dilation")
    return _pool("max", x, kernel_size, stride, padding, ceil_mode)


@converts("layer", "aten.max_pool2d_with_indices.default")
def _max_pool2d_with_indices(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0,
                             dilation: Any = 1, ceil_mode: bool = False) -> tuple[Any, ...]:
    """As ``aten.max_pool2d`` (the indices are not available)."""
    return (_max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode), _NOT_CONVERTED)


@converts("layer", "aten.avg_pool2d.default")
def _avg_pool2d(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0, ceil_mode: bool = False,
                count_include_pad: bool = True, divisor_override: int | None = None) -> NamedTensor:
    """`nir.avg_pool2d` over x's last two dims, by name (padding counts as zeros, torch's default)."""
    if divisor_override is not None:
        raise _Unsupported(f"divisor_override={divisor_override}")
    if not count_include_pad and any(nf._pair(padding, "padding", "avg_pool2d")):
        raise _Unsupported("count_include_pad=False with padding: nir's average counts the padding")
    return _pool("avg", x, kernel_size, stride, padding, ceil_mode)


@converts("layer", "aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(x: NamedTensor, output_size: Any) -> NamedTensor:
    """`nir.avg_pool2d` with kernel = stride = input size / output size (which must divide)."""
    out = nf._pair(output_size, "output_size", "adaptive_avg_pool2d")
    size = x.shape[-2:]
    if any(o is None or o == 0 or n % o for n, o in zip(size, out)):
        raise _Unsupported(f"output size {out} does not divide the input size {tuple(size)}")
    k = tuple(n // o for n, o in zip(size, out))
    return _pool("avg", x, k, k, 0, False)


@converts("layer", "aten.scaled_dot_product_attention.default")
def _sdpa(query: NamedTensor, key: NamedTensor, value: NamedTensor, attn_mask: NamedTensor | None = None,
          dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
          enable_gqa: bool = False) -> NamedTensor:
    """``softmax(q @ k.T * scale + mask) @ v`` with `nir.matmul` and `nir.softmax`; the key's sequence dim
    is unnamed first, since it is not the query's even when both are named S."""
    if dropout_p:
        raise _Unsupported(f"dropout_p={dropout_p} is random at run time; pass dropout_p=0.0 outside training")
    if enable_gqa and query.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        raise _Unsupported("grouped-query attention (enable_gqa with fewer key heads)")
    s = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = _matmul(query, nf.transpose(_rename_at(key, -2, None), -2, -1)) * s
    if is_causal:
        keep = nf.unsqueeze(nf.arange(query.shape[-2]), -1) >= nf.arange(key.shape[-2])
        scores = nf.where(keep, scores, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == "bool":
            attn_mask, scores = _reconcile(attn_mask, scores)
            scores = nf.where(attn_mask, scores, -math.inf)
        else:
            scores = nf.add(*_reconcile(scores, attn_mask))
    return _matmul(nf.softmax(scores, -1), value)


@converts("layer", "aten.embedding.default")
def _embedding(weight: NamedTensor, indices: NamedTensor, padding_idx: int = -1, scale_grad_by_freq: bool = False,
               sparse: bool = False) -> NamedTensor:
    """`nir.take` along the table's first dim: table ``{emb.vocab, emb.dim}`` and tokens ``{B, S}`` give
    ``{B, S, emb.dim}``."""
    return nf.take(weight, indices, 0)


# ------------------------------------------------------------------------------------------------
# converters: layout and indexing
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# converters: dtype, copies, dropout, creation, symbolic sizes, assertions
# ------------------------------------------------------------------------------------------------

@converts("identity", "aten.contiguous.default", "aten.clone.default", "aten.detach.default", "aten.alias.default",
          "aten.lift_fresh_copy.default")
def _identity(x: NamedTensor, *args: Any, **kwargs: Any) -> NamedTensor:
    """The tensor itself: memory formats and copies mean nothing to a value-semantics IR."""
    return x


@converts("identity", "aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default")
def _dropout(x: NamedTensor, p: float, train: bool) -> NamedTensor:
    """The tensor itself in eval mode (``train=False``)."""
    if train and p:
        raise _Unsupported(f"dropout with train=True (p={p}) is random at run time; call model.eval() or pass "
                           "training=self.training to F.dropout")
    return x


@converts("identity", "aten.native_dropout.default")
def _native_dropout(x: NamedTensor, p: float, train: bool | None) -> tuple[Any, ...]:
    """The tensor itself in eval mode (the mask is not available)."""
    return (_dropout(x, p, bool(train)), _NOT_CONVERTED)


@converts("dtype", "aten._to_copy.default", "aten.to.dtype_layout")
def _to_copy(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.cast` when a dtype is given (device and layout mean nothing here)."""
    return _maybe_cast(x, dtype)


@converts("dtype", "aten.to.dtype")
def _to_dtype(x: NamedTensor, dtype: Any, *args: Any, **kwargs: Any) -> NamedTensor:
    """`nir.cast`."""
    return nf.cast(x, dtype)


def _full(size: Sequence[int], value: float, dtype: Any) -> NamedTensor:
    if dtype is None:
        dtype = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "float32"
    return nf.full(*size, fill_value=value, dtype=dtype)


@converts("creation", "aten.full.default")
def _full_converter(size: Sequence[int], fill_value: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.full` (unnamed dims)."""
    return _full(size, fill_value, dtype)


@converts("creation", "aten.zeros.default")
def _zeros(size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.zeros` (unnamed dims)."""
    return _full(size, 0.0, dtype)


@converts("creation", "aten.ones.default")
def _ones(size: Sequence[int], *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.ones` (unnamed dims)."""
    return _full(size, 1.0, dtype)


@converts("creation", "aten.scalar_tensor.default")
def _scalar_tensor(s: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """A 0-d `nir.full`."""
    return _full((), s, dtype or "float32")


@converts("creation", "aten.full_like.default")
def _full_like(x: NamedTensor, fill_value: float, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """A `nir.full` with x's names and sizes."""
    return bind("full", [], value=fill_value, dims=x.type.dims, dtype=_dtype(dtype) or x.dtype)


@converts("creation", "aten.zeros_like.default")
def _zeros_like(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.zeros_like`."""
    return _full_like(x, 0, dtype=dtype)


@converts("creation", "aten.ones_like.default")
def _ones_like(x: NamedTensor, *, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.ones_like`."""
    return _full_like(x, 1, dtype=dtype)


@converts("creation", "aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(*args: float, dtype: Any = None, **kwargs: Any) -> NamedTensor:
    """`nir.arange` (an unnamed dim)."""
    return nf.arange(*args, dtype=dtype)


def _triangle(x: NamedTensor, diagonal: int, lower: bool) -> NamedTensor:
    rows, cols = x.shape[-2:]
    offset = nf.arange(cols) - nf.unsqueeze(nf.arange(rows), -1)  # j - i
    keep = offset <= diagonal if lower else offset >= diagonal
    return nf.where(*_reconcile(keep, x, nf.zeros_like(x)))


@converts("creation", "aten.tril.default")
def _tril(x: NamedTensor, diagonal: int = 0) -> NamedTensor:
    """``where(j - i <= diagonal, x, 0)`` from `nir.arange`."""
    return _triangle(x, diagonal, True)


@converts("creation", "aten.triu.default")
def _triu(x: NamedTensor, diagonal: int = 0) -> NamedTensor:
    """``where(j - i >= diagonal, x, 0)`` from `nir.arange`."""
    return _triangle(x, diagonal, False)


@converts("symbolic", "aten.sym_size.int")
def _sym_size(x: NamedTensor, dim: int) -> int:
    """The size of a dim, as an int (the graph computes shapes from it when the batch is dynamic)."""
    return x.shape[dim]


@converts("symbolic", "aten.sym_numel.default")
def _sym_numel(x: NamedTensor) -> int:
    """The number of elements, as an int."""
    return x.numel()


for _name in ("add", "sub", "mul", "floordiv", "truediv", "neg"):
    converts("symbolic", f"operator.{_name}")(getattr(operator, _name))


@converts("symbolic", "operator.getitem")
def _getitem(values: Sequence[Any], i: int) -> Any:
    """One output of a multi-output op."""
    if values[i] is _NOT_CONVERTED:
        raise _Unsupported(f"output {i} of this op (e.g. layer_norm's mean, max_pool2d's indices) is not converted")
    return values[i]


@converts("symbolic", "aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
          "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg")
def _assertion(*args: Any, **kwargs: Any) -> None:
    """Nothing: torch's run-time assertions on metadata nir checks while converting."""
    return None


class _NotConverted:
    """Stands for an output of a multi-output ATen op that has no converter (layer_norm's mean, ...)."""

    def __repr__(self) -> str:
        return "<not converted>"


_NOT_CONVERTED = _NotConverted()

# ------------------------------------------------------------------------------------------------
# parameters: named constants
# ------------------------------------------------------------------------------------------------

# (op, argument index) -> the roles of a parameter's dims when that op is its first use
_ROLES: dict[tuple[str, int], tuple[str, ...]] = {
    ("aten.linear.default", 1): ("out", "in"), ("aten.linear.default", 2): ("out",),
    ("aten.embedding.default", 0): ("vocab", "dim"), ("aten.addmm.default", 0): ("out",),
}
for _op in ("aten.conv2d.default", "aten.conv2d.padding", "aten.convolution.default"):
    _ROLES[(_op, 1)], _ROLES[(_op, 2)] = ("out", "in", "kh", "kw"), ("out",)
for _op, _first in (("aten.batch_norm.default", 1), ("aten._native_batch_norm_legit_no_training.default", 1)):
    for _i in range(_first, _first + 4):
        _ROLES[(_op, _i)] = ("channels",)


def _layer_prefix(path: str) -> str:
    """A parameter path as the start of a dim name: ``fc1`` stays; Sequential's ``0`` becomes ``layer0``."""
    return path if re.match(r"[A-Za-z]", path) else f"layer{path}"


def default_param_names(target: str, shape: Sequence[int], uses: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Dim names for parameter or buffer ``target`` (``"fc1.weight"``) of ``shape``, from its first use
    ``(op, argument index)``: Linear weights ``(fc1.out, fc1.in)``, conv weights ``(conv1.out, conv1.in,
    conv1.kh, conv1.kw)``, biases ``(fc1.out,)``, embedding tables ``(emb.vocab, emb.dim)``, batchnorm
    vectors ``(bn1.channels,)``; any other tensor ``(pos.d0, pos.d1)`` after its own path. A layer_norm's
    weight and bias take the names of the dims they normalize when they are used."""
    layer, _, _ = target.rpartition(".")
    for use in uses[:1]:
        roles = _ROLES.get(use)
        if roles is not None and len(roles) == len(shape):
            return tuple(f"{_layer_prefix(layer or target)}.{r}" for r in roles)
    if len(shape) == 1 and uses[:1] and uses[0][0] == "aten.layer_norm.default":
        return (f"{_layer_prefix(layer or target)}.dim",)
    return tuple(f"{_layer_prefix(target)}.d{i}" for i in range(len(shape)))


_TRANSPOSES = ("aten.t.default", "aten.permute.default", "aten.transpose.int")
_MATMUL_RHS = {("aten.addmm.default", 2), ("aten.mm.default", 1), ("aten.matmul.default", 1)}


def _uses(node: Node) -> list[tuple[str, int]]:
    """(op, argument index) of each use of ``node``. A 2-d weight transposed into the right operand of a
    matrix product (Linear as torch's decompositions write it: ``addmm(b, x, w.t())``) counts as Linear's."""
    uses = []
    for u in node.users:
        op = op_key(u.target)
        for i, a in enumerate(u.args):
            if a is node:
                if op in _TRANSPOSES and any(use in _MATMUL_RHS for use in _uses(u)):
                    op, i = "aten.linear.default", 1
                uses.append((op, i))
    return uses


def _constants(ep: ExportedProgram, param_names: Mapping[str, Names]) -> tuple[dict[str, NamedTensor],
                                                                               dict[str, tuple[str, ...]]]:
    """Placeholder name -> named eager tensor, for every parameter, buffer and constant tensor."""
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    kinds = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)
    specs = [s for s in ep.graph_signature.input_specs if s.kind in kinds]
    known = {s.target for s in specs}
    unknown = sorted(set(param_names) - known)
    if unknown:
        raise KeyError(f"param_names: {unknown} are not parameters or buffers of the model; they are: "
                       f"{', '.join(sorted(known))}")
    out: dict[str, NamedTensor] = {}
    chosen: dict[str, tuple[str, ...]] = {}
    for s in specs:
        value = ep.state_dict[s.target] if s.target in ep.state_dict else ep.constants[s.target]
        # a copy: the program holds the weights as they are now, whatever later training does to the model
        data = (value.detach().float() if value.dtype == torch.bfloat16 else value.detach()).cpu().numpy().copy()
        names = param_names.get(s.target)
        if names is None:
            names = default_param_names(s.target, data.shape, _uses(nodes[s.arg.name]))
        elif len(names) != data.ndim:
            raise NamedShapeError(f"param_names[{s.target!r}] gives {len(names)} names {tuple(names)} for a tensor "
                                  f"of shape {tuple(data.shape)}; give one name (or None) per dim")
        t = from_array(data, names=names)
        out[s.arg.name] = nf.cast(t, value.dtype) if value.dtype == torch.bfloat16 else t
        chosen[s.target] = tuple(names)
    return out, chosen


# ------------------------------------------------------------------------------------------------
# replaying the exported graph
# ------------------------------------------------------------------------------------------------

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)')


def _origin(node: Node) -> str:
    """Where ``node`` came from in the user's model: ``in fc2 (Linear), model.py:12 `return self.fc2(h)```."""
    stack = [v for k, v in (node.meta.get("nn_module_stack") or {}).items() if not str(k).startswith("_empty")]
    if stack:
        path, cls = stack[-1]
        cls = (cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))).rsplit(".", 1)[-1]
        where = f"in {path} ({cls})" if path else f"in the top-level module ({cls})"
    if not stack or (len(stack) == 1 and where.endswith(f"({_Function.__name__})")):
        where = "in the top-level function"
    frames = [f for f in _FRAME.findall(node.meta.get("stack_trace") or "")
              if not f[0].startswith(_TORCH_DIR) and os.path.abspath(f[0]) != _THIS_FILE]
    if frames:
        file, line, code = frames[-1]
        where += f", {os.path.basename(file)}:{line} `{code.strip()}`"
    return where


def _check_like_torch(op: str, out: Any, val: Any) -> Any:
    """Compare a converted value with torch's own result type (``meta['val']``): a shape that disagrees is a
    converter bug; a dtype that disagrees is cast to torch's (torch's promotion of 0-d tensors differs)."""
    if isinstance(out, NamedTensor) and isinstance(val, torch.Tensor):
        want = tuple(val.shape)
        if len(want) != out.ndim or any(isinstance(w, int) and w != s for w, s in zip(want, out.shape)):
            raise AssertionError(f"nir's converter for {op} gave shape {out.shape} {out.type.pretty()}, but torch's "
                                 f"result has shape {want}; please report this as a bug in nir.frontends.torch")
        dtype = canonical_dtype(val.dtype)
        return out if out.dtype == dtype else nf.cast(out, dtype)
    if isinstance(out, tuple) and isinstance(val, (list, tuple)) and len(out) == len(val):
        return tuple(_check_like_torch(op, o, v) for o, v in zip(out, val))
    return out


def _convert_node(node: Node, env: Mapping[Node, Any]) -> Any:
    op = op_key(node.target)
    args = map_arg(node.args, lambda n: env[n])
    kwargs = map_arg(node.kwargs, lambda n: env[n])
    try:
        out = CONVERTERS[op](*args, **kwargs)
    except _Unsupported as e:
        raise UnsupportedOpError(f"{op} {_origin(node)}: {e}. Rewrite that part of the model, or add to the "
                                 "converter in nir.frontends.torch.CONVERTERS") from None
    except NamedShapeError as e:
        raise TorchNameError(f"{_origin(node)}, converting {op}: {e}. (The names come from from_torch's names= "
                             "and param_names=, and from the layers, e.g. fc1.out.)") from e
    except (TypeError, ValueError, IndexError) as e:
        e.add_note(f"while converting {op} {_origin(node)}")
        raise
    return _check_like_torch(op, out, node.meta.get("val"))


def _replay(ep: ExportedProgram, constants: Mapping[str, NamedTensor], state: _State,
            name: str) -> Callable[..., Any]:
    """A function over NamedTensors that replays ``ep``'s graph with the converters: traced by `nir.trace`
    it records a nir program; with a dynamic batch it replays for any batch size."""
    graph = ep.graph
    user_inputs = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    output_kinds = [s.kind for s in ep.graph_signature.output_specs]
    out_spec = ep.call_spec.out_spec

    def run(*inputs: NamedTensor) -> Any:
        if len(inputs) != len(user_inputs):
            raise TypeError(f"{name} takes {len(user_inputs)} inputs ({', '.join(user_inputs)}), got {len(inputs)}")
        token = _STATE.set(state)
        try:
            env: dict[Node, Any] = {}
            given = dict(zip(user_inputs, inputs))
            tr = current_trace()
            for node in graph.nodes:
                if node.op == "placeholder":
                    if node.name in given:
                        env[node] = given[node.name]
                    elif node.users:  # lifted once, here: one named constant per parameter
                        c = constants[node.name]
                        env[node] = tr.lift(c) if tr is not None else c
                elif node.op == "call_function":
                    env[node] = _convert_node(node, env)
                elif node.op == "output":
                    leaves = [env[a] if isinstance(a, Node) else a
                              for a, kind in zip(node.args[0], output_kinds) if kind == OutputKind.USER_OUTPUT]
                    bad = [type(v).__name__ for v in leaves if not isinstance(v, NamedTensor)]
                    if bad:
                        raise UnsupportedOpError(f"the model returns {', '.join(bad)} values; a nir program returns "
                                                 "tensors only (return sizes and Python values outside the model)")
                    return torch.utils._pytree.tree_unflatten(leaves, out_spec)
                else:
                    raise UnsupportedOpError(f"FX node {node.op} {node.target} ({node.format_node()}) has no nir "
                                             "equivalent (control flow and submodule calls do not convert)")
        finally:
            _STATE.reset(token)
        raise AssertionError("the exported graph has no output node")  # pragma: no cover

    run.__name__ = run.__qualname__ = name
    return run


# ------------------------------------------------------------------------------------------------
# from_torch
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchTraced(Traced):
    """A torch program converted to nir: a `nir.Traced` (``program``, ``structure``) that `nir.compile`
    takes as it is, plus ``exported`` (the ``torch.export.ExportedProgram``), ``function`` (the converted
    program as a Python function over NamedTensors: with ``dynamic_batch=True``, ``nir.compile(t.function)``
    serves any batch size) and ``param_names`` (parameter -> the dim names its constant got)."""

    exported: Any = field(repr=False, compare=False, default=None)
    function: Callable[..., Any] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    param_names: Mapping[str, tuple[str | None, ...]] = field(repr=False, compare=False, default_factory=dict)


class _Function(torch.nn.Module):
    """A plain function as a module, so torch.export can take it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def _arg_names(obj: Any, ep: ExportedProgram, count: int) -> list[str]:
    """The names ``names=`` is keyed by: the forward (or function) parameter names, else the graph's."""
    fn = obj.forward if isinstance(obj, torch.nn.Module) else obj
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]


def _input_names(arg_names: Sequence[str], examples: Sequence[Any],
                 names: Mapping[str | int, Names] | Names | None) -> list[tuple[str | None, ...]]:
    """Per input, its dim names (None for unnamed), from ``names=`` or from NamedTensor examples."""
    if names is None:
        names = {}
    elif not isinstance(names, Mapping):
        if len(examples) != 1:
            raise TypeError(f"names= is a sequence, but the model takes {len(examples)} inputs "
                            f"({', '.join(arg_names)}); give a dict such as {{{arg_names[0]!r}: ('N', 'C')}}")
        names = {0: names}
    unknown = [k for k in names if k not in arg_names and not (isinstance(k, int) and 0 <= k < len(examples))]
    if unknown:
        raise KeyError(f"names= has keys {unknown} that are not inputs of the model; its inputs are: "
                       f"{', '.join(arg_names)}")
    out = []
    for i, (arg, x) in enumerate(zip(arg_names, examples)):
        given = names.get(arg, names.get(i))
        if given is None:
            given = x.names if isinstance(x, NamedTensor) else (None,) * x.dim()
        given = tuple(given)
        if len(given) != x.dim():
            raise NamedShapeError(f"names[{arg!r}] gives {len(given)} names {given}, but input {arg!r} has "
                                  f"{x.dim()} dims of sizes {tuple(x.shape)}; give one name (or None) per dim")
        for n in given:
            if n is not None:
                check_user_name(n, f"names[{arg!r}]")
        out.append(given)
    return out


def _to_torch(x: Any) -> Any:
    if isinstance(x, NamedTensor):
        return torch.from_numpy(np.ascontiguousarray(x.numpy()))
    return x


def _decompose_unconvertible(ep: ExportedProgram) -> ExportedProgram:
    """Decompose, with torch's own decompositions, the ops that have no converter (only those: decomposing
    everything would turn Linear into reshapes that merge the batch dims and lose their names)."""
    table = None
    for _ in range(4):  # a decomposition may produce other ops without converters
        missing = {n.target for n in ep.graph.nodes if n.op == "call_function" and op_key(n.target) not in CONVERTERS}
        if not missing:
            break
        table = table or torch.export.default_decompositions()
        chosen = {op: table[op] for op in missing if isinstance(op, torch._ops.OpOverload) and op in table}
        if not chosen:
            break
        with warnings.catch_warnings():  # torch's own pytree deprecation noise, nothing a user can act on
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            ep = ep.run_decompositions(chosen)
    return ep


def _check_supported(ep: ExportedProgram) -> None:
    missing: dict[str, list[Node]] = {}
    for n in ep.graph.nodes:
        if n.op == "call_function" and op_key(n.target) not in CONVERTERS:
            missing.setdefault(op_key(n.target), []).append(n)
    if missing:
        op, nodes = next(iter(missing.items()))
        others = [o for o in missing if o != op]
        raise UnsupportedOpError(
            f"{op} has no nir converter (used {_origin(nodes[0])}). nir converts the ATen ops listed in "
            "docs/torch_ops.md (nir.frontends.torch.supported_ops_markdown()); rewrite that part of the model with "
            "supported ops, or add a converter to nir.frontends.torch.CONVERTERS"
            + (f". Other ops without a converter in this model: {', '.join(others)}" if others else ""))


def from_torch(module_or_fn: Any, example_inputs: Any = None, names: Mapping[str | int, Names] | Names | None = None,
               *, param_names: Mapping[str, Names] | None = None, dynamic_batch: bool = False) -> TorchTraced:
    """Convert a ``torch.nn.Module`` (or a function of tensors, or a ``torch.export.ExportedProgram``) into a
    named nir program, ready for ``nir.compile(result, target=..., backend=...)``.

    ``example_inputs``: a tensor or a tuple of them (torch tensors, or NamedTensors whose names are used).
    ``names``: the dim names of each input, keyed by the forward's parameter name (or position), e.g.
    ``{"x": ("N", "C", "H", "W")}``; None leaves a dim unnamed. Names propagate through nir's rules and
    conflicts among them raise `TorchNameError` naming the module. ``param_names``: dim names for
    parameters and buffers by path, e.g. ``{"fc1.weight": ("hidden", "features")}``; the defaults name dims
    after layer and role (`default_param_names`). ``dynamic_batch``: export with a symbolic batch (dim 0 of
    every input), so that ``result.function`` converts again for any batch size.

    The model is exported in eval mode under no_grad (its training flag is restored afterwards). An op
    without a converter raises `UnsupportedOpError` naming the op and where the model uses it.

    >>> t = nir.from_torch(mlp, (torch.randn(4, 16),), names={"x": ("N", "C")})
    >>> nir.compile(t, backend="reference")(nir.randn(4, 16, names=("N", "C"))).names
    ('N', 'fc2.out')
    """
    if example_inputs is not None and not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    if isinstance(module_or_fn, ExportedProgram):
        ep = module_or_fn
        if example_inputs is None:
            example_inputs = tuple(n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder" and n.name in
                                   {s.arg.name for s in ep.graph_signature.input_specs
                                    if s.kind == InputKind.USER_INPUT})
    else:
        if example_inputs is None:
            raise TypeError("from_torch needs example_inputs: a tensor or a tuple of tensors, one per model input")
        module = module_or_fn if isinstance(module_or_fn, torch.nn.Module) else _Function(module_or_fn)
        args = tuple(_to_torch(x) for x in example_inputs)
        dynamic = None
        if dynamic_batch:
            batch = torch.export.Dim("batch")
            dynamic = tuple({0: batch} if isinstance(a, torch.Tensor) and a.dim() else None for a in args)
        training = {m: m.training for m in module.modules()}
        module.eval()
        try:
            with torch.no_grad():
                ep = torch.export.export(module, args, dynamic_shapes=dynamic)
        finally:
            for m, flag in training.items():  # each submodule as it was (a frozen batchnorm stays in eval)
                m.training = flag
    ep = _decompose_unconvertible(ep)
    _check_supported(ep)

    arg_names = _arg_names(module_or_fn, ep, len(example_inputs))
    input_names = _input_names(arg_names, example_inputs, names)
    param_names = dict(param_names or {})
    constants, chosen = _constants(ep, param_names)
    asserted = {n for ns in [*input_names, *param_names.values()] for n in ns if n is not None}
    label = getattr(module_or_fn, "__name__", type(module_or_fn).__name__)
    function = _replay(ep, constants, _State(frozenset(asserted)), label)
    specs = [Spec(ns, tuple(int(s) for s in x.shape), canonical_dtype(x.dtype))
             for ns, x in zip(input_names, example_inputs)]
    traced = trace(function, *specs)
    return TorchTraced(traced.program, traced.structure, exported=ep, function=function, param_names=chosen)


# ------------------------------------------------------------------------------------------------
# documentation
# ------------------------------------------------------------------------------------------------

_SECTION_TITLES = {
    "elementwise": "Elementwise", "reduction": "Reductions and softmax",
    "layer": "Layers: contraction, normalization, convolution, pooling, attention, embedding",
    "layout": "Layout and indexing", "identity": "Copies and dropout (no-ops in eval mode)",
    "dtype": "Dtype conversion", "creation": "Creation", "symbolic": "Sizes, multiple outputs and assertions",
}


def supported_ops_markdown() -> str:
    """The list of ATen ops the torch frontend converts, as Markdown (checked in as ``docs/torch_ops.md``)."""
    lines = [
        "# ATen ops that `nir.from_torch` converts",
        "",
        "Generated from the converter table `nir.frontends.torch.CONVERTERS` by",
        "`nir.frontends.torch.supported_ops_markdown()`; a test checks that this file is current. Regenerate it with",
        "",
        "    python -c \"from nir.frontends.torch import supported_ops_markdown as m; "
        "open('docs/torch_ops.md', 'w').write(m())\"",
        "",
        "An op that is not listed is first decomposed with torch's own decomposition, when torch has one, into",
        "ops that are; an op that still has no converter raises `UnsupportedOpError`, naming the op and the",
        "module and source line of the model that uses it.",
        "",
        "Ops with several operands (elementwise ops, cat) broadcast by position, as in torch. Where two",
        "operands name the dims at one position differently, a name derived from a layer (`fc1.out`) takes the",
        "other one; two names the user gave (`names=`, `param_names=`) that differ are a conflict.",
    ]
    for section, title in _SECTION_TITLES.items():
        lines += ["", f"## {title}", "", "| ATen op | converts to |", "|---|---|"]
        for op in sorted(_SECTIONS.get(section, [])):
            doc = " ".join((CONVERTERS[op].__doc__ or "").split("\n\n")[0].split()).replace("|", "\\|")
            lines.append(f"| `{op}` | {doc} |")
    return "\n".join(lines) + "\n"
