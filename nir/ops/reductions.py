"""Reductions (`reduce_*`, `argmax`/`argmin`) and normalizations (`softmax`, `log_softmax`, `layer_norm`) over named dims."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..types import TensorType, is_float
from ._core import Impl, Rule, _check_present, _fail, _register



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
