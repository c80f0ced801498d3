"""The `Workload` record and the helpers that make deterministic inputs for it.

A workload is one named nir program (a Python function over NamedTensors), how to make its inputs
(activations and weights, from a seed) at a ``"small"`` and a ``"full"`` size, and the same computation
written positionally for each peer framework, the way that framework's users would write it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

import nir
from nir import NamedTensor

__all__ = ["Workload", "SIZES", "PeerMaker", "randn", "uniform", "check_size"]

SIZES = ("small", "full")

# framework -> a function of no arguments that imports the framework and returns the positional program;
# frameworks are "numpy", "torch" and "jax" (torch.compile and jax.jit wrap the torch and jax programs)
PeerMaker = Callable[[], Callable[..., Any]]


@dataclass(frozen=True)
class Workload:
    """One benchmark program.

    ``fn`` takes the NamedTensors that ``make_inputs(size, seed)`` returns (activations first, then
    weights) and returns one NamedTensor. Each peer in ``peers`` takes the same arrays, positionally, in
    the same memory order (each tensor's logical order), and returns one array. ``rtol``/``atol`` are
    the tolerances at which every variant must agree with nir's reference backend. ``default``: part of
    a plain `nir bench` run (False for families that are only run when asked for, such as the zoo).
    """

    name: str
    family: str
    fn: Callable[..., NamedTensor]
    make_inputs: Callable[[str, int], list[NamedTensor]]
    peers: Mapping[str, PeerMaker] = field(repr=False)
    description: str = ""
    rtol: float = 1e-4
    atol: float = 1e-5
    default: bool = True


def randn(rng: np.random.Generator, scale: float = 1.0, shift: float = 0.0, **dims: int) -> NamedTensor:
    """``shift`` plus normal samples times ``scale``, with the dims given in order:
    ``randn(rng, 0.1, F=64, G=32)``. The data is a fresh, writable numpy array."""
    data = rng.standard_normal(tuple(dims.values()), dtype=np.float32) * np.float32(scale) + np.float32(shift)
    return nir.tensor(data, names=tuple(dims))


def uniform(rng: np.random.Generator, low: float, high: float, **dims: int) -> NamedTensor:
    """Uniform samples in [low, high) with the dims given in order."""
    data = rng.uniform(low, high, tuple(dims.values())).astype(np.float32)
    return nir.tensor(data, names=tuple(dims))


def check_size(size: str) -> str:
    """``size`` itself if it is a known size name, else a ValueError that lists them."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes are {', '.join(SIZES)}")
    return size
