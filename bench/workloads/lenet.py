"""LeNet-5 forward (LeCun et al. 1998), in its common modern form: conv5x5(6)-relu-maxpool,
conv5x5(16)-relu-maxpool, fc120-relu, fc84-relu, fc10, on a batch of 1x32x32 images."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

BATCH = {"small": 4, "full": 128}


def lenet5(x: NamedTensor, c1w: NamedTensor, c1b: NamedTensor, c2w: NamedTensor, c2b: NamedTensor,
           f1w: NamedTensor, f1b: NamedTensor, f2w: NamedTensor, f2b: NamedTensor, f3w: NamedTensor,
           f3b: NamedTensor) -> NamedTensor:
    """x{N, C, H, W} -> logits{N, K}; conv weights are {O, C, H, W}, fc weights {in, out}."""
    y = nir.max_pool2d(nir.conv2d(x, c1w, c1b).relu(), 2)                   # {N, O: 6, H: 14, W: 14}
    y = nir.max_pool2d(nir.conv2d(y.rename(O="C"), c2w, c2b).relu(), 2)     # {N, O: 16, H: 5, W: 5}
    y = y.flatten(["O", "H", "W"], "F0")                                     # {N, F0: 400}
    y = (y @ f1w + f1b).relu()
    y = (y @ f2w + f2b).relu()
    return y @ f3w + f3b


def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """Images {N, C: 1, H: 32, W: 32} and weights scaled by 1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    x = randn(rng, N=BATCH[check_size(size)], C=1, H=32, W=32)
    params = []
    for o, c in ((6, 1), (16, 6)):
        params += [randn(rng, 1 / math.sqrt(c * 25), O=o, C=c, H=5, W=5), randn(rng, 0.1, O=o)]
    for i, (a, b) in enumerate(((400, 120), (120, 84), (84, 10))):
        params += [randn(rng, 1 / math.sqrt(a), **{f"F{i}": a, f"F{i + 1}": b}), randn(rng, 0.1, **{f"F{i + 1}": b})]
    return [x, *params]


def _numpy() -> Callable[..., Any]:
    from numpy.lib.stride_tricks import sliding_window_view

    def conv2d(x, w, b):  # im2col by a strided view, then one BLAS contraction
        win = sliding_window_view(x, w.shape[2:], axis=(2, 3))             # N, C, Ho, Wo, kh, kw
        return np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[:, None, None]

    def max_pool2(x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def lenet5(x, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b):
        y = max_pool2(np.maximum(conv2d(x, c1w, c1b), 0))
        y = max_pool2(np.maximum(conv2d(y, c2w, c2b), 0))
        y = y.reshape(y.shape[0], -1)
        y = np.maximum(y @ f1w + f1b, 0)
        y = np.maximum(y @ f2w + f2b, 0)
        return y @ f3w + f3b
    return lenet5


def _torch() -> Callable[..., Any]:
    import torch.nn.functional as F

    def lenet5(x, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b):
        y = F.max_pool2d(F.relu(F.conv2d(x, c1w, c1b)), 2)
        y = F.max_pool2d(F.relu(F.conv2d(y, c2w, c2b)), 2)
        y = y.flatten(1)
        y = F.relu(y @ f1w + f1b)
        y = F.relu(y @ f2w + f2b)
        return y @ f3w + f3b
    return lenet5


def _jax() -> Callable[..., Any]:
    import jax
    from jax import lax

    def conv2d(x, w, b):
        y = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[:, None, None]

    def max_pool2(x):
        return lax.reduce_window(x, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def lenet5(x, c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b):
        y = max_pool2(jax.nn.relu(conv2d(x, c1w, c1b)))
        y = max_pool2(jax.nn.relu(conv2d(y, c2w, c2b)))
        y = y.reshape(y.shape[0], -1)
        y = jax.nn.relu(y @ f1w + f1b)
        y = jax.nn.relu(y @ f2w + f2b)
        return y @ f3w + f3b
    return lenet5


WORKLOADS = [Workload("lenet5", "cnn", lenet5, make_inputs, {"numpy": _numpy, "torch": _torch, "jax": _jax},
                      "LeNet-5 forward on {N, 1, 32, 32} images (N=4 small, 128 full)")]
