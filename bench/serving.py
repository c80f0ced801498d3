"""Serving figures: the per-call cost of `nir.compile` against bare backend calls, and throughput from
1, 2 and 4 threads calling one compiled function.

    python -m nir.bench.serving              # about two minutes on 2 cores
    python -m nir.bench.serving --quick

Per call (a one-input program, ``x * 2`` on {N: 4, C: 4}), timed round-robin so that a busy machine
slows every variant alike; medians of the rounds, in microseconds:
* xla: bare ``jax.jit(f)(x)`` (asynchronous: returns before the result exists), ``np.asarray`` of it
  (waits, numpy out: what nir hands back), the backend executable alone, and the nir call
  (NamedTensor in, NamedTensor out).
* tvm: TVM's own ``time_evaluator`` (inputs already TVM tensors, no Python in the loop), the backend
  executable (numpy in, numpy out), and the nir call.
Throughput: an MLP (``softmax(relu(x @ w1) @ w2)``, batch 8, width 128) called from 1, 2 and 4 threads for
a few seconds each per backend; calls/s summed over the threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

import nir

__all__ = ["per_call", "throughput", "main"]


def _per_call_us(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    """Wall-clock and calling-thread CPU microseconds per call. On a busy machine the wall clock counts
    the time the process waits for a core; the thread's CPU time does not (but misses work done on
    other threads, e.g. a backend's thread pool), so both are reported."""
    t, c = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number * 1e6, (time.thread_time() - c) / number * 1e6


def _round_robin(variants: dict[str, Callable[[], Any]], rounds: int, number: int) -> dict[str, tuple[float, float]]:
    for fn in variants.values():
        for _ in range(100):
            fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            times[k].append(_per_call_us(fn, number))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def per_call(rounds: int = 15, number: int = 2000) -> dict[str, dict[str, tuple[float, float]]]:
    """Median (wall, thread CPU) microseconds per call of each variant, per installed backend."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    x = nir.tensor(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), names=("N", "C"))
    arr = x.numpy()
    if nir.backends.installed("xla"):
        import jax
        jitted = jax.jit(lambda a: a * 2.0)
        f = nir.compile(lambda t: t * 2.0, backend="xla")
        f(x)
        exe = f._last.executable
        out["xla"] = _round_robin({
            "jax.jit(f)(x)": lambda: jitted(arr),
            "np.asarray(jax.jit(f)(x))": lambda: np.asarray(jitted(arr)),
            "executable(x)": lambda: exe(arr),
            "nir f(x)": lambda: f(x),
        }, rounds, number)
    if nir.backends.installed("tvm"):
        import tvm
        f = nir.compile(lambda t: t * 2.0, backend="tvm")
        f(x)
        exe = f._last.executable
        exe.vm_function()
        timer = exe._vm.time_evaluator("main", exe.device, number=number, repeat=1)
        targ = tvm.runtime.tensor(arr, exe.device)
        res = _round_robin({"executable(x)": lambda: exe(arr), "nir f(x)": lambda: f(x)}, rounds, number)
        evaluated = statistics.median(float(timer(targ).mean) * 1e6 for _ in range(rounds))
        res["time_evaluator"] = (evaluated, evaluated)  # timed inside TVM, in C++: no Python in the loop
        out["tvm"] = res
    return out


def _mlp(width: int) -> Callable[..., Any]:
    rng = np.random.default_rng(0)
    w1 = nir.tensor(rng.standard_normal((width, width)).astype(np.float32), names=("C", "H"))
    w2 = nir.tensor(rng.standard_normal((width, width)).astype(np.float32), names=("H", "O"))
    return lambda x: ((x @ w1).relu() @ w2).softmax("O")


def throughput(backend: str, threads: int, seconds: float, batch: int = 8, width: int = 128) -> float:
    """Calls per second (all threads together) of one compiled MLP called from ``threads`` threads."""
    f = nir.compile(_mlp(width), backend=backend)
    x = nir.tensor(np.random.default_rng(1).standard_normal((batch, width)).astype(np.float32), names=("N", "C"))
    f(x)
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            f(x)
            n += 1
        counts[k] = n

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables with the machine and the load."""
    p = argparse.ArgumentParser(prog="python -m nir.bench.serving", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, shorter throughput runs")
    a = p.parse_args(argv)
    from .machine import machine_info
    info = machine_info()
    print(f"machine: {info.get('cpu_model')}, {info.get('cpus_usable')} usable cores; load average {os.getloadavg()[0]:.2f}; "
          f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '(unset)')}")
    print("\nper call, median us (one-input program x * 2 on {N: 4, C: 4}); wall clock / calling thread's CPU:")
    for backend, res in per_call(rounds=7 if a.quick else 15, number=1000 if a.quick else 2000).items():
        base = res.get("np.asarray(jax.jit(f)(x))") or res["time_evaluator"]
        for k, (wall, cpu) in res.items():
            if backend == "xla":
                asy = res["jax.jit(f)(x)"]
                extra = (f"  x{wall / base[0]:.2f} / x{cpu / base[1]:.2f} of np.asarray(jit);  "
                         f"x{wall / asy[0]:.2f} / x{cpu / asy[1]:.2f} of async jit")
            else:
                extra = f"  +{wall - base[0]:.1f} / +{cpu - base[1]:.1f} us over time_evaluator"
            print(f"  {backend:<4} {k:<28} {wall:8.2f} / {cpu:6.2f}{extra}")
    print("\nthroughput, calls/s of an MLP (batch 8, width 128) from 1, 2, 4 threads:")
    for backend in [b for b in ("reference", "xla", "tvm") if nir.backends.installed(b)]:
        figures = [throughput(backend, n, 1.5 if a.quick else 4.0) for n in (1, 2, 4)]
        print(f"  {backend:<10} " + "  ".join(f"{n} thr {v:9.0f}" for n, v in zip((1, 2, 4), figures)))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
