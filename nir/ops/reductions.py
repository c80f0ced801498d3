"""Reductions (`reduce_*`, `argmax`/`argmin`) and normalizations (`softmax`, `log_softmax`, `layer_norm`) over named dims."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..types import TensorType, fresh_name, is_float
from . import _ad as ad
from ._core import Impl, Rule, _check_present, _fail, _register, defvjp



def _reduce_rule(op: str) -> Rule:
    def rule(x: TensorType, *, dims: tuple[str, ...]) -> TensorType:
        _check_present(op, x, dims)
        if op in ("reduce_max", "reduce_min"):  # no identity: a maximum over nothing is undefined
            for n in dims:
                if x.size(n) == 0:
                    raise _fail(op, f"cannot reduce the empty dim {n!r}", x)
        return x.with_dims((n, s) for n, s in x.dims if n not in dims)
    return rule


REDUCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod,
}


def _reduce_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...]) -> np.ndarray:
        axes = tuple(types[0].names.index(n) for n in dims)
        return np.asarray(fn(x, axis=axes)).astype(x.dtype, copy=False)
    return impl


for _name, _fn in REDUCTIONS.items():
    _register(_name, "reduction", 1, _reduce_rule(_name), _reduce_impl(_fn))


def _arg_rule(op: str) -> Rule:
    def rule(x: TensorType, *, dim: str) -> TensorType:
        _check_present(op, x, (dim,))
        if x.size(dim) == 0:
            raise _fail(op, f"cannot reduce the empty dim {dim!r}", x)
        return TensorType(tuple((n, s) for n, s in x.dims if n != dim), "int64")
    return rule


def _arg_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
        return fn(x, axis=types[0].names.index(dim)).astype(np.int64)
    return impl


_register("argmax", "reduction", 1, _arg_rule("argmax"), _arg_impl(np.argmax), "index of the first maximum")
_register("argmin", "reduction", 1, _arg_rule("argmin"), _arg_impl(np.argmin), "index of the first minimum")


def _same_over_rule(op: str, single: bool) -> Rule:
    def rule(x: TensorType, **p: Any) -> TensorType:
        names = (p["dim"],) if single else p["dims"]
        _check_present(op, x, names)
        if not is_float(x.dtype):
            raise _fail(op, f"needs a floating-point input, got {x.dtype}", x, fix="Cast with .to('float32')")
        return x
    return rule


def _softmax_impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    e = np.exp(x - np.max(x, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


def _log_softmax_impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    z = x - np.max(x, axis=ax, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=ax, keepdims=True))


def _layer_norm_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...], eps: float) -> np.ndarray:
    axes = tuple(types[0].names.index(n) for n in dims)
    mean = np.mean(x, axis=axes, keepdims=True)
    var = np.mean(np.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + np.asarray(eps, x.dtype))


_register("softmax", "normalization", 1, _same_over_rule("softmax", True), _softmax_impl)
_register("log_softmax", "normalization", 1, _same_over_rule("log_softmax", True), _log_softmax_impl)
_register("layer_norm", "normalization", 1, _same_over_rule("layer_norm", False), _layer_norm_impl,
          "(x - mean) / sqrt(var + eps) over `dims` (biased variance); scale and shift are separate ops")


# ------------------------------------------------------------------------------------------------
# reverse-mode rules (see nir/ops/_ad.py); argmax/argmin give integers, so no cotangent reaches them
# ------------------------------------------------------------------------------------------------

def _sum_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple[str, ...]) -> tuple:
    return (ad.expand_to(ct, x.type),)


def _chooser_vjp(arg: str) -> Any:
    """reduce_max/min: the cotangent goes to the first extreme element (in the order of ``dims``), found
    with argmax/argmin — one op over the input, never an equality test against the reduced result, which a
    compiler may have computed from differently fused (bitwise different) values."""
    def vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple[str, ...]) -> tuple:
        if x.type.numel == 0:
            return (ad.zeros(x.type),)
        k = fresh_name()
        size = int(np.prod([x.type.size(n) for n in dims], dtype=np.int64))
        flat = ad.emit("flatten", x, dims=dims, into=k) if len(dims) > 1 else ad.rename(x, {dims[0]: k})
        first = ad.emit(arg, flat, dim=k)
        hit = ad.emit("eq", ad.emit("iota", dim=k, size=size, start=0.0, step=1.0, dtype="int64"), first)
        hit = (ad.emit("unflatten", hit, dim=k, parts=tuple((n, x.type.size(n)) for n in dims)) if len(dims) > 1
               else ad.rename(hit, {k: dims[0]}))
        return (ad.to_type(ad.mask(hit, ad.expand_to(ct, x.type)), x.type),)
    return vjp


def _prod_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple[str, ...]) -> tuple:
    """The product of the other elements, exact with zeros in the input: with no zero it is out/x; with
    one zero, the product of the nonzeros at the zero and 0 elsewhere; with more zeros, 0."""
    one, zero = ad.scalar(1.0, x.dtype), ad.scalar(0.0, x.dtype)
    is_zero = ad.emit("eq", x, zero)
    nonzero = ad.where(is_zero, one, x)
    prod_nonzero = ad.expand_to(ad.emit("reduce_prod", nonzero, dims=dims), x.type)
    zeros = ad.expand_to(ad.reduce_sum(ad.cast(is_zero, x.dtype), dims), x.type)
    others = ad.where(ad.emit("eq", zeros, zero), ad.div(prod_nonzero, nonzero),
                      ad.where(ad.emit("eq", zeros, one), ad.mask(is_zero, prod_nonzero), zero))
    return (ad.mul(ad.expand_to(ct, x.type), others),)


defvjp("reduce_sum", _sum_vjp)
defvjp("reduce_max", _chooser_vjp("argmax"))
defvjp("reduce_min", _chooser_vjp("argmin"))
defvjp("reduce_prod", _prod_vjp)


def _softmax_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str) -> tuple:
    dot = ad.expand_to(ad.reduce_sum(ad.mul(ct, out), (dim,)), x.type)
    return (ad.to_type(ad.mul(out, ad.sub(ct, dot)), x.type),)


def _log_softmax_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dim: str) -> tuple:
    total = ad.expand_to(ad.reduce_sum(ct, (dim,)), x.type)
    return (ad.to_type(ad.sub(ct, ad.mul(ad.emit("exp", out), total)), x.type),)


def _layer_norm_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], dims: tuple[str, ...], eps: float) -> tuple:
    """dx = r * (ct - mean(ct) - y * mean(ct * y)), r = 1/sqrt(var + eps), means over ``dims``."""
    count = float(np.prod([x.type.size(n) for n in dims], dtype=np.int64))

    def mean(a: Any) -> Any:
        return ad.expand_to(ad.scale(ad.reduce_sum(a, dims), 1 / count), x.type)
    centered = ad.sub(x, mean(x))
    r = ad.emit("rsqrt", ad.add(mean(ad.mul(centered, centered)), ad.scalar(eps, x.dtype)))
    inner = ad.sub(ad.sub(ct, mean(ct)), ad.mul(out, mean(ad.mul(ct, out))))
    return (ad.to_type(ad.mul(r, inner), x.type),)


defvjp("softmax", _softmax_vjp)
defvjp("log_softmax", _log_softmax_vjp)
defvjp("layer_norm", _layer_norm_vjp)
