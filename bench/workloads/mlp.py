"""A 4-layer MLP with relu: x{N, F0} -> F1 -> F2 -> F3 -> F4 (256 x 512 -> 1024 -> 1024 -> 1024 -> 512 full)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from nir import NamedTensor

from .base import Workload, check_size, randn

WIDTHS = {"small": (8, (32, 64, 64, 64, 32)), "full": (256, (512, 1024, 1024, 1024, 512))}


def mlp(x: NamedTensor, *params: NamedTensor) -> NamedTensor:
    """``params`` are (weight{Fi, Fi+1}, bias{Fi+1}) pairs; relu between layers, none after the last."""
    pairs = list(zip(params[::2], params[1::2]))
    for i, (w, b) in enumerate(pairs):
        x = x @ w + b
        if i < len(pairs) - 1:
            x = x.relu()
    return x


def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """A batch {N, F0} and weights scaled by 1/sqrt(fan-in)."""
    n, widths = WIDTHS[check_size(size)]
    rng = np.random.default_rng(seed)
    out = [randn(rng, N=n, F0=widths[0])]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        out += [randn(rng, 1 / math.sqrt(a), **{f"F{i}": a, f"F{i + 1}": b}), randn(rng, 0.1, **{f"F{i + 1}": b})]
    return out


def _numpy() -> Callable[..., Any]:
    def mlp(x, *params):
        layers = list(zip(params[::2], params[1::2]))
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = np.maximum(x, 0)
        return x
    return mlp


def _torch() -> Callable[..., Any]:
    import torch

    def mlp(x, *params):
        layers = list(zip(params[::2], params[1::2]))
        for i, (w, b) in enumerate(layers):
            x = torch.addmm(b, x, w)
            if i < len(layers) - 1:
                x = torch.relu(x)
        return x
    return mlp


def _jax() -> Callable[..., Any]:
    import jax

    def mlp(x, *params):
        layers = list(zip(params[::2], params[1::2]))
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = jax.nn.relu(x)
        return x
    return mlp


WORKLOADS = [Workload("mlp", "mlp", mlp, make_inputs, {"numpy": _numpy, "torch": _torch, "jax": _jax},
                      "4-layer relu MLP, 256 x 512 -> 1024 -> 1024 -> 1024 -> 512 (full)")]
