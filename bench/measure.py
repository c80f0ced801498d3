"""Timing and memory measurement.

Timing: each variant is warmed up (first call timed on its own, then ``warmup`` more calls, all
excluded), then calibrated so that one sample runs ``calls`` back-to-back calls lasting at least
``sample_s``; samples of all variants are taken round-robin, the order rotating each round, so that
drift (thermal, other load) hits every variant alike. Each sample settles first (20 ms idle, then one
untimed call): torch's OpenMP threads, TVM's and XLA's pools spin for milliseconds after they ran, and
the next variant must not be timed while they hold its cores (`round_robin`). A sample's value is its
time per call. The garbage collector is off while sampling.

Memory: `measure_memory` runs one variant in a fresh process (`python -m nir.bench.memory`) and reads
its peak resident set after the imports and inputs (the baseline) and after building and running it
(the peak).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nir.tune.measure import round_robin

__all__ = ["Stats", "stats", "first_call", "calibrate", "round_robin", "Memory", "measure_memory", "MAX_CALLS"]

MAX_CALLS = 10_000  # calls per sample at most (a ~1 us program)


@dataclass(frozen=True)
class Stats:
    """Summary of per-call times in seconds."""

    median: float
    p25: float
    p75: float
    min: float
    n: int

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25


def stats(samples: list[float]) -> Stats:
    """Median, quartiles and minimum of ``samples``."""
    a = np.asarray(samples, dtype=np.float64)
    p25, med, p75 = np.percentile(a, [25, 50, 75])
    return Stats(float(med), float(p25), float(p75), float(a.min()), len(a))


def first_call(call: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``call`` once; its result and how long it took (a jit peer compiles here)."""
    t0 = time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0


def calibrate(call: Callable[[], Any], warmup: int, sample_s: float) -> int:
    """Run ``warmup`` untimed calls, then time a few more; the number of calls one sample needs to last
    about ``sample_s``."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return max(1, min(MAX_CALLS, math.ceil(sample_s / max(min(times), 1e-9))))


@dataclass
class Memory:
    """Peak resident memory of one variant in a process of its own, in bytes."""

    baseline_rss: int           # after imports and inputs, before building
    peak_rss: int               # after building and running the variant


def measure_memory(workload: str, variant: dict[str, Any], size: str, seed: int, threads: int,
                   timeout_s: float = 600) -> Memory:
    """Run ``variant`` on ``workload`` in a fresh Python process and return its memory figures.
    Raises RuntimeError with the child's error output when it fails."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, "-m", "nir.bench.memory", json.dumps({
        "workload": workload, "variant": variant, "size": size, "seed": seed, "threads": threads})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"memory run failed (exit {proc.returncode}): {' | '.join(tail)}")
    rec = json.loads(lines[-1])
    return Memory(rec["baseline_rss"], rec["peak_rss"])
