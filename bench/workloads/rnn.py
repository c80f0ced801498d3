"""The seed's Elman RNN, h = tanh(x_t W + h U + b), over T steps; the result is the last h.

Two ways to write the loop, at T = 16 and T = 512:

* ``rnn`` / ``rnn_512``: a Python loop, which tracing unrolls (T copies of the step in the program;
  jax.jit unrolls its loop the same way). Compile time grows with T: at T = 512 it takes minutes, so
  ``rnn_512`` runs only when named (``nir bench --workloads rnn_512``, or ``all``).
* ``rnn_scan`` / ``rnn_scan_512``: `nir.scan` over the named dim T, compiled once as a loop (the jax
  peer uses ``lax.scan``; torch has no scan, so its peers are the Python loop, eager or compiled).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

SIZES = {"small": dict(N=2, I=8, H=8), "full": dict(N=64, I=256, H=256)}


def rnn(x: NamedTensor, h: NamedTensor, w: NamedTensor, u: NamedTensor, b: NamedTensor) -> NamedTensor:
    """x{T, N, I}, h0{N, H}, w{I, H}, u{G, H} (G: the previous step's H), b{H} -> h{N, H} after T steps.
    The Python loop has a static trip count, so tracing unrolls it."""
    for t in range(x.size("T")):
        h = nir.tanh(x.select("T", t) @ w + h @ u + b)
    return h


def rnn_scan(x: NamedTensor, h: NamedTensor, w: NamedTensor, u: NamedTensor, b: NamedTensor) -> NamedTensor:
    """The same RNN as one `nir.scan` over T: the step is traced once, whatever T is."""
    def step(h: NamedTensor, x_t: NamedTensor) -> tuple[NamedTensor, None]:
        return nir.tanh(x_t @ w + h @ u + b), None
    return nir.scan(step, h, x, over="T")[0]


def inputs_for(steps: int) -> Callable[[str, int], list[NamedTensor]]:
    """make_inputs for ``steps`` steps: a sequence, an initial state and weights scaled by 1/sqrt(fan-in)."""
    def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
        s = SIZES[check_size(size)]
        rng = np.random.default_rng(seed)
        return [randn(rng, T=steps, N=s["N"], I=s["I"]), randn(rng, 0.5, N=s["N"], H=s["H"]),
                randn(rng, 1 / math.sqrt(s["I"]), I=s["I"], H=s["H"]),
                randn(rng, 1 / math.sqrt(s["H"]), G=s["H"], H=s["H"]), randn(rng, 0.1, H=s["H"])]
    return make_inputs


make_inputs = inputs_for(16)


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


def _jax_scan() -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp

    def rnn(x, h, w, u, b):
        return jax.lax.scan(lambda h, x_t: (jnp.tanh(x_t @ w + h @ u + b), None), h, x)[0]
    return rnn


UNROLLED = {"numpy": _numpy, "torch": _torch, "jax": _jax}
SCANNED = {"numpy": _numpy, "torch": _torch, "jax": _jax_scan}
SHAPE = "batch 64, 256 -> 256 (full)"

WORKLOADS = [
    Workload("rnn", "rnn", rnn, make_inputs, UNROLLED, f"tanh RNN cell unrolled over 16 steps, {SHAPE}"),
    Workload("rnn_scan", "rnn", rnn_scan, make_inputs, SCANNED, f"the RNN as nir.scan over 16 steps, {SHAPE}"),
    Workload("rnn_scan_512", "rnn", rnn_scan, inputs_for(512), SCANNED,
             f"the RNN as nir.scan over 512 steps, {SHAPE}", rtol=1e-3, atol=1e-4),
    Workload("rnn_512", "rnn", rnn, inputs_for(512), UNROLLED,
             f"the RNN unrolled over 512 steps (compiles for minutes; only when named), {SHAPE}",
             rtol=1e-3, atol=1e-4, default=False),
]
