"""`nir soak`: serve a compiled model from N threads for M minutes with random batch sizes, and report
calls/s, p50/p99 latency, errors (wrong results count as errors) and resident memory over time.

    nir soak --backend xla --threads 4 --minutes 2
    nir soak --backend tvm --threads 8 --seconds 30 --exact      # one signature per batch size

The model is ``softmax(relu(x @ w1) @ w2)`` over a batch dim ``N``. Every result is compared with the
reference interpreter's for the same input (inputs are drawn from a fixed set per batch size), so a
race that corrupts a result is an error, not a number. Exits 1 if any call failed.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import pathlib
import sys
import threading
import time
from typing import Any, Sequence

import numpy as np

__all__ = ["main", "soak", "rss_mib"]


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux /proc; elsewhere the peak from getrusage)."""
    status = pathlib.Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(width: int, seed: int = 0) -> Any:
    import nir
    rng = np.random.default_rng(seed)
    w1 = nir.tensor(rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width), names=("C", "H"))
    w2 = nir.tensor(rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width), names=("H", "O"))

    def model(x):
        return ((x @ w1).relu() @ w2).softmax("O")
    return model


def soak(backend: str = "auto", threads: int = 4, seconds: float = 60.0, max_batch: int = 64, width: int = 256,
         dynamic: bool = True, interval: float = 10.0, seed: int = 0, out: Any = None) -> dict[str, Any]:
    """Run the soak and return its figures (also printed to ``out``, default stdout, as it goes)."""
    import nir
    out = out or sys.stdout
    model = _model(width, seed)
    f = nir.compile(model, backend=backend, dynamic=("N",) if dynamic else None)
    rng = np.random.default_rng(seed)
    sizes = list(range(1, max_batch + 1))
    inputs = {n: [nir.tensor(rng.standard_normal((n, width)).astype(np.float32), names=("N", "C"))
                  for _ in range(2)] for n in sizes}
    want = {(n, i): model(x).numpy() for n in sizes for i, x in enumerate(inputs[n])}
    print(f"nir soak: backend {f.backend}, {threads} threads, {seconds:g} s, batch 1..{max_batch} "
          f"({'dynamic N, power-of-two buckets' if dynamic else 'one signature per batch size'}), "
          f"model softmax(relu(x @ w1) @ w2) width {width}", file=out)
    t0 = time.perf_counter()
    for n in sizes:  # compile up front: the soak measures serving, not building
        f(inputs[n][0])
    print(f"  compiled {len(f.signatures)} signatures in {time.perf_counter() - t0:.1f} s; rss {rss_mib():.0f} MiB",
          file=out, flush=True)

    lock = threading.Lock()
    latencies = [array.array("d") for _ in range(threads)]  # 8 bytes a call: the soak's own growth stays small
    errors: list[str] = []
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        r = np.random.default_rng(seed + 1 + k)
        lat = latencies[k]
        start.wait()
        while not stop.is_set():
            n, i = int(r.integers(1, max_batch + 1)), int(r.integers(2))
            t = time.perf_counter()
            try:
                y = f(inputs[n][i])
                lat.append(time.perf_counter() - t)
                if y.names != ("N", "O") or not np.allclose(y.numpy(), want[(n, i)], rtol=1e-4, atol=1e-6):
                    raise AssertionError(f"batch {n}: result differs from the reference")
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"thread {k}: {type(e).__name__}: {str(e)[:200]}")

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    rss_start = rss_mib()
    timeline: list[dict[str, Any]] = []
    marks, last_t = [0] * threads, 0.0
    while (now := time.perf_counter() - began) < seconds:
        time.sleep(min(interval, seconds - now))
        now = time.perf_counter() - began
        ends = [len(lat) for lat in latencies]
        window = np.concatenate([np.asarray(lat[m:e]) for lat, m, e in zip(latencies, marks, ends)])
        point = {"t_s": round(now, 1), "calls_per_s": len(window) / max(now - last_t, 1e-9),
                 "p50_ms": float(np.percentile(window, 50) * 1e3) if len(window) else float("nan"),
                 "p99_ms": float(np.percentile(window, 99) * 1e3) if len(window) else float("nan"),
                 "errors": len(errors), "rss_mib": round(rss_mib(), 1)}
        timeline.append(point)
        marks, last_t = ends, now
        print(f"  t={point['t_s']:>6.1f}s  calls/s {point['calls_per_s']:>8.0f}  p50 {point['p50_ms']:.3f} ms  "
              f"p99 {point['p99_ms']:.3f} ms  errors {point['errors']}  rss {point['rss_mib']:.0f} MiB",
              file=out, flush=True)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    all_lat = np.concatenate([np.asarray(lat) for lat in latencies if lat]) if any(latencies) else np.zeros(1)
    result = {
        "backend": f.backend, "threads": threads, "seconds": round(elapsed, 1), "max_batch": max_batch,
        "width": width, "dynamic": dynamic, "calls": int(sum(len(lat) for lat in latencies)),
        "calls_per_s": sum(len(lat) for lat in latencies) / elapsed, "p50_ms": float(np.percentile(all_lat, 50) * 1e3),
        "p99_ms": float(np.percentile(all_lat, 99) * 1e3), "errors": len(errors), "first_errors": errors[:5],
        "signatures": len(f.signatures), "rss_start_mib": rss_start, "rss_end_mib": rss_mib(), "timeline": timeline,
        "cpu": _cpu(), "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"total: {result['calls']} calls in {elapsed:.1f} s = {result['calls_per_s']:.0f} calls/s; p50 "
          f"{result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms; errors {result['errors']}; rss "
          f"{rss_start:.0f} -> {result['rss_end_mib']:.0f} MiB; {result['signatures']} signatures compiled",
          file=out, flush=True)
    for e in errors[:5]:
        print(f"  error: {e}", file=out)
    return result


def _cpu() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def main(argv: Sequence[str]) -> int:
    """Entry point of `nir soak`."""
    p = argparse.ArgumentParser(prog="nir soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="auto", help="reference, tvm, xla or auto (default: auto)")
    p.add_argument("--threads", type=int, default=4, help="threads calling at once (default: 4)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default: 1 minute)")
    length.add_argument("--seconds", type=float, help="how long to run, in seconds")
    p.add_argument("--max-batch", type=int, default=64, help="batch sizes are drawn from 1..MAX (default: 64)")
    p.add_argument("--width", type=int, default=256, help="the model's width (default: 256)")
    p.add_argument("--exact", action="store_true",
                   help="compile one signature per batch size instead of dynamic=('N',) buckets")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between progress lines (default: 10)")
    p.add_argument("--json", type=pathlib.Path, help="also write the figures to this JSON file")
    a = p.parse_args(list(argv))
    seconds = a.seconds if a.seconds is not None else 60.0 * (a.minutes if a.minutes is not None else 1.0)
    if a.threads < 1 or a.max_batch < 1 or seconds <= 0:
        p.error("--threads, --max-batch and the duration must be positive")
    result = soak(a.backend, a.threads, seconds, a.max_batch, a.width, not a.exact, a.interval)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0
