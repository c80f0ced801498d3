"""Measuring a built executable: warm-up excluded, repeated until a minimum time, median reported."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Timing", "measure"]


@dataclass(frozen=True)
class Timing:
    """Per-call times in milliseconds."""

    median_ms: float
    min_ms: float
    p25_ms: float
    p75_ms: float
    runs: int


def measure(run: Callable[..., Any], inputs: Sequence[Any], *, warmup: int = 2, min_time_s: float = 0.2,
            min_runs: int = 5, max_runs: int = 200) -> Timing:
    """Time ``run(*inputs)``: ``warmup`` calls discarded, then single calls until ``min_time_s`` has
    passed (at least ``min_runs``, at most ``max_runs``)."""
    for _ in range(warmup):
        run(*inputs)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time_s):
        t0 = time.perf_counter()
        run(*inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return Timing(statistics.median(times), min(times), q[0], q[2], len(times))
