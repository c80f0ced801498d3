"""One 3x3 convolution layer with bias and relu, padding 1 (a ResNet stage-1 layer at full size)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

SHAPES = {"small": dict(N=1, C=8, H=14, W=14, O=8), "full": dict(N=1, C=64, H=56, W=56, O=64)}


def conv3x3(x: NamedTensor, w: NamedTensor, b: NamedTensor) -> NamedTensor:
    """x{N, C, H, W}, w{O, C, H, W}, b{O} -> relu(conv(x, w) + b){N, O, H, W}."""
    return nir.conv2d(x, w, b, padding=1).relu()


def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """An image batch and 3x3 filters scaled by 1/sqrt(fan-in)."""
    d = SHAPES[check_size(size)]
    rng = np.random.default_rng(seed)
    return [randn(rng, N=d["N"], C=d["C"], H=d["H"], W=d["W"]),
            randn(rng, 1 / math.sqrt(d["C"] * 9), O=d["O"], C=d["C"], H=3, W=3), randn(rng, 0.1, O=d["O"])]


def _numpy() -> Callable[..., Any]:
    from numpy.lib.stride_tricks import sliding_window_view

    def conv3x3(x, w, b):
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(xp, (3, 3), axis=(2, 3))                 # N, C, H, W, 3, 3
        return np.maximum(np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[:, None, None], 0)
    return conv3x3


def _torch() -> Callable[..., Any]:
    import torch.nn.functional as F

    def conv3x3(x, w, b):
        return F.relu(F.conv2d(x, w, b, padding=1))
    return conv3x3


def _jax() -> Callable[..., Any]:
    import jax
    from jax import lax

    def conv3x3(x, w, b):
        y = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return jax.nn.relu(y + b[:, None, None])
    return conv3x3


WORKLOADS = [Workload("conv3x3", "cnn", conv3x3, make_inputs, {"numpy": _numpy, "torch": _torch, "jax": _jax},
                      "3x3 conv + bias + relu, pad 1: {1, 64, 56, 56} x 64 filters (full)")]
