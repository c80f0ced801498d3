"""A pre-norm transformer block: layer norm, QKV, softmax attention, out-projection and residual, then
layer norm and a GELU FFN with residual. Full size: batch 8, sequence 128, 4 heads of dim 32 (D = 128,
FFN 512), as in the JAX/torch probe. nir writes every contraction by name with `nir.contract`; the peers
reshape and transpose heads the way their users do."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import nir
from nir import NamedTensor

from .base import Workload, check_size, randn

SHAPES = {"small": dict(B=2, S=16, H=2, E=8), "full": dict(B=8, S=128, H=4, E=32)}


def attention_block(x: NamedTensor, ln1_w: NamedTensor, ln1_b: NamedTensor, wq: NamedTensor, bq: NamedTensor,
                    wk: NamedTensor, bk: NamedTensor, wv: NamedTensor, bv: NamedTensor, wo: NamedTensor,
                    bo: NamedTensor, ln2_w: NamedTensor, ln2_b: NamedTensor, w1: NamedTensor, b1: NamedTensor,
                    w2: NamedTensor, b2: NamedTensor) -> NamedTensor:
    """x{B, S, D}; wq/wk/wv{D, H, E}, wo{H, E, D}, w1{D, F}, w2{F, D} -> {B, S, D}."""
    h = nir.layer_norm(x, "D", ln1_w, ln1_b)
    q = nir.contract(h, wq, over="D") + bq                                   # {B, S, H, E}
    k = (nir.contract(h, wk, over="D") + bk).rename(S="T")                   # keys and values along T
    v = (nir.contract(h, wv, over="D") + bv).rename(S="T")
    scores = nir.contract(q, k, over="E") / math.sqrt(q.size("E"))          # {B, H, S, T}
    o = nir.contract(scores.softmax("T"), v, over="T")                       # {B, H, S, E}
    x = x + nir.contract(o, wo, over=("H", "E")) + bo                        # {B, S, D}
    h = nir.layer_norm(x, "D", ln2_w, ln2_b)
    f = nir.gelu(nir.contract(h, w1, over="D") + b1)                         # {B, S, F}
    return x + nir.contract(f, w2, over="F") + b2


def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    """Activations {B, S, D} and the block's weights, scaled by 1/sqrt(fan-in)."""
    s = SHAPES[check_size(size)]
    b, t, h, e = s["B"], s["S"], s["H"], s["E"]
    d = h * e
    rng = np.random.default_rng(seed)
    out = [randn(rng, B=b, S=t, D=d), randn(rng, 0.1, 1.0, D=d), randn(rng, 0.1, D=d)]
    for _ in "qkv":
        out += [randn(rng, 1 / math.sqrt(d), D=d, H=h, E=e), randn(rng, 0.1, H=h, E=e)]
    out += [randn(rng, 1 / math.sqrt(d), H=h, E=e, D=d), randn(rng, 0.1, D=d)]
    out += [randn(rng, 0.1, 1.0, D=d), randn(rng, 0.1, D=d)]
    out += [randn(rng, 1 / math.sqrt(d), D=d, F=4 * d), randn(rng, 0.1, F=4 * d)]
    out += [randn(rng, 1 / math.sqrt(4 * d), F=4 * d, D=d), randn(rng, 0.1, D=d)]
    return out


def _numpy() -> Callable[..., Any]:
    try:
        from scipy.special import erf
    except ImportError:  # scipy comes with jax; a bench without it is slower here, not wrong
        erf = np.vectorize(math.erf, otypes=[np.float32])

    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def block(x, ln1_w, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_w, ln2_b, w1, b1, w2, b2):
        B, S, D = x.shape
        H, E = wq.shape[1:]
        h = layer_norm(x, ln1_w, ln1_b)
        q, k, v = ((h @ w.reshape(D, H * E) + b.reshape(H * E)).reshape(B, S, H, E).transpose(0, 2, 1, 3)
                   for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        p = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(E))
        o = (p @ v).transpose(0, 2, 1, 3).reshape(B, S, H * E)
        x = x + o @ wo.reshape(H * E, D) + bo
        f = layer_norm(x, ln2_w, ln2_b) @ w1 + b1
        f = 0.5 * f * (1 + erf(f / math.sqrt(2)))
        return x + f @ w2 + b2
    return block


def _torch() -> Callable[..., Any]:
    import torch
    import torch.nn.functional as F

    def block(x, ln1_w, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_w, ln2_b, w1, b1, w2, b2):
        B, S, D = x.shape
        H, E = wq.shape[1:]
        h = F.layer_norm(x, (D,), ln1_w, ln1_b)
        q, k, v = ((h @ w.reshape(D, H * E) + b.reshape(H * E)).view(B, S, H, E).transpose(1, 2)
                   for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(E), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, S, H * E)
        x = x + o @ wo.reshape(H * E, D) + bo
        h = F.layer_norm(x, (D,), ln2_w, ln2_b)
        return x + F.gelu(h @ w1 + b1) @ w2 + b2
    return block


def _jax() -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp

    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b

    def block(x, ln1_w, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo, ln2_w, ln2_b, w1, b1, w2, b2):
        B, S, D = x.shape
        H, E = wq.shape[1:]
        h = layer_norm(x, ln1_w, ln1_b)
        q, k, v = ((h @ w.reshape(D, H * E) + b.reshape(H * E)).reshape(B, S, H, E).transpose(0, 2, 1, 3)
                   for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        p = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / math.sqrt(E), axis=-1)
        o = (p @ v).transpose(0, 2, 1, 3).reshape(B, S, H * E)
        x = x + o @ wo.reshape(H * E, D) + bo
        h = layer_norm(x, ln2_w, ln2_b)
        return x + jax.nn.gelu(h @ w1 + b1, approximate=False) @ w2 + b2
    return block


WORKLOADS = [Workload("attention", "transformer", attention_block, make_inputs,
                      {"numpy": _numpy, "torch": _torch, "jax": _jax},
                      "pre-norm transformer block, batch 8, seq 128, 4 heads x 32 (full)", rtol=1e-4, atol=1e-4)]
