"""The seed examples: per-channel normalization, broadcast BY NAME with ``align_as``.

One nir function serves NCHW and NHWC images alike; positional code needs a different broadcast per
layout (``mean[:, None, None]`` for NCHW, plain ``mean`` for NHWC).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nir import NamedTensor

from .base import Workload, check_size, randn, uniform

SHAPES = {"small": dict(N=2, C=3, H=16, W=16), "full": dict(N=16, C=3, H=224, W=224)}


def normalize(x: NamedTensor, mean: NamedTensor, std: NamedTensor) -> NamedTensor:
    """``(x - mean) / std`` per channel ``C``, whatever the position of ``C`` in ``x``."""
    return (x - mean.align_as(x)) / std.align_as(x)


def _inputs(order: str) -> Callable[[str, int], list[NamedTensor]]:
    def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
        dims = SHAPES[check_size(size)]
        rng = np.random.default_rng(seed)
        x = randn(rng, **{d: dims[d] for d in order})
        return [x, randn(rng, 0.5, C=dims["C"]), uniform(rng, 0.5, 2.0, C=dims["C"])]
    return make_inputs


def normalize_nchw_positional(x: Any, mean: Any, std: Any) -> Any:
    """NCHW: the channel vectors need two trailing axes (numpy, torch and jax spell it the same)."""
    return (x - mean[:, None, None]) / std[:, None, None]


def normalize_nhwc_positional(x: Any, mean: Any, std: Any) -> Any:
    """NHWC: channels are last, so plain broadcasting lines them up."""
    return (x - mean) / std


def _same_everywhere(fn: Callable[..., Any]) -> dict[str, Callable[[], Callable[..., Any]]]:
    return {"numpy": lambda: fn, "torch": lambda: fn, "jax": lambda: fn}


WORKLOADS = [
    Workload("normalize_nchw", "seed", normalize, _inputs("NCHW"), _same_everywhere(normalize_nchw_positional),
             "per-channel (x - mean) / std of NCHW images via align_as"),
    Workload("normalize_nhwc", "seed", normalize, _inputs("NHWC"), _same_everywhere(normalize_nhwc_positional),
             "the same nir function on NHWC images"),
]
