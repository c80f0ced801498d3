"""An Elman RNN cell unrolled over 16 steps: h = tanh(x_t W + h U + b); the result is the last h."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

SHAPES = {"small": dict(T=16, N=2, I=8, H=8), "full": dict(T=16, N=64, I=256, H=256)}


def rnn(x: NamedTensor, h: NamedTensor, w: NamedTensor, u: NamedTensor, b: NamedTensor) -> NamedTensor:
    """x{T, N, I}, h0{N, H}, w{I, H}, u{G, H} (G: the previous step's H), b{H} -> h{N, H} after T steps.
    The Python loop has a static trip count, so tracing unrolls it."""
    for t in range(x.size("T")):
        h = nir.tanh(x.select("T", t) @ w + h @ u + b)
    return h


def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """A sequence, an initial state and weights scaled by 1/sqrt(fan-in)."""
    s = SHAPES[check_size(size)]
    rng = np.random.default_rng(seed)
    return [randn(rng, T=s["T"], N=s["N"], I=s["I"]), randn(rng, 0.5, N=s["N"], H=s["H"]),
            randn(rng, 1 / math.sqrt(s["I"]), I=s["I"], H=s["H"]), randn(rng, 1 / math.sqrt(s["H"]), G=s["H"], H=s["H"]),
            randn(rng, 0.1, H=s["H"])]


def _numpy() -> Callable[..., Any]:
    def rnn(x, h, w, u, b):
        for t in range(x.shape[0]):
            h = np.tanh(x[t] @ w + h @ u + b)
        return h
    return rnn


def _torch() -> Callable[..., Any]:
    import torch

    def rnn(x, h, w, u, b):
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ w + h @ u + b)
        return h
    return rnn


def _jax() -> Callable[..., Any]:
    import jax.numpy as jnp

    def rnn(x, h, w, u, b):  # unrolled under jit, like nir's trace
        for t in range(x.shape[0]):
            h = jnp.tanh(x[t] @ w + h @ u + b)
        return h
    return rnn


WORKLOADS = [Workload("rnn", "rnn", rnn, make_inputs, {"numpy": _numpy, "torch": _torch, "jax": _jax},
                      "tanh RNN cell unrolled over 16 steps, batch 64, 256 -> 256 (full)")]
