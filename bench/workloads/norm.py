"""Row-wise normalizations on their own: layer norm over ``D`` and softmax over ``K``."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

ROWS = {"small": (16, 64), "full": (2048, 1024)}


def layer_norm(x: NamedTensor, w: NamedTensor, b: NamedTensor) -> NamedTensor:
    """x{N, D} normalized over D, scaled by w{D} and shifted by b{D}."""
    return nir.layer_norm(x, "D", w, b)


def softmax(x: NamedTensor) -> NamedTensor:
    """Softmax of x{N, K} over K."""
    return x.softmax("K")


def layer_norm_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """Rows {N, D} with a non-zero mean, and an affine {D}."""
    n, d = ROWS[check_size(size)]
    rng = np.random.default_rng(seed)
    return [randn(rng, 2.0, 0.5, N=n, D=d), randn(rng, 0.1, 1.0, D=d), randn(rng, 0.1, D=d)]


def softmax_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """Logits {N, K}."""
    n, k = ROWS[check_size(size)]
    return [randn(np.random.default_rng(seed), 3.0, N=n, K=k)]


def _layer_norm_numpy() -> Callable[..., Any]:
    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b
    return layer_norm


def _layer_norm_torch() -> Callable[..., Any]:
    import torch.nn.functional as F

    def layer_norm(x, w, b):
        return F.layer_norm(x, x.shape[-1:], w, b)
    return layer_norm


def _layer_norm_jax() -> Callable[..., Any]:
    import jax

    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(x.var(-1, keepdims=True) + eps) * w + b
    return layer_norm


def _softmax_numpy() -> Callable[..., Any]:
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return softmax


def _softmax_torch() -> Callable[..., Any]:
    import torch

    def softmax(x):
        return torch.softmax(x, dim=-1)
    return softmax


def _softmax_jax() -> Callable[..., Any]:
    import jax

    def softmax(x):
        return jax.nn.softmax(x, axis=-1)
    return softmax


WORKLOADS = [
    Workload("layer_norm", "normalization", layer_norm, layer_norm_inputs,
             {"numpy": _layer_norm_numpy, "torch": _layer_norm_torch, "jax": _layer_norm_jax},
             "layer norm of {2048, 1024} rows over D with weight and bias (full)"),
    Workload("softmax", "normalization", softmax, softmax_inputs,
             {"numpy": _softmax_numpy, "torch": _softmax_torch, "jax": _softmax_jax},
             "softmax of {2048, 1024} logits over K (full)"),
]
