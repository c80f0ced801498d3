"""Serving figures: the per-call cost of `nir.compile` against bare backend calls, and throughput from
1, 2 and 4 threads calling one compiled function.

    python -m nir.bench.serving              # about two minutes on 2 cores
    python -m nir.bench.serving --quick
    TVM_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python -m nir.bench.serving --per-call   # the per-call table alone, one thread

Per call, two one-input programs: ``x * 2`` on {N: 64, C: 64} (tiny: the call is all overhead) and
``x @ w`` on {M: 256, K: 256} with a constant {K: 256, N: 256} (mid). The variants are timed round-robin,
so that a busy machine slows every variant alike; each round gives microseconds per call, and the table
shows the minimum and the median over the rounds, by wall clock and by the calling thread's CPU time:
* xla: bare ``jax.jit(f)(x).block_until_ready()`` and ``np.asarray(jax.jit(f)(x))`` (both wait for the
  result; the second hands back numpy, as nir does), the backend executable alone (waited for), and the
  nir call (NamedTensor in, NamedTensor out, the result complete).
* tvm: TVM's own ``time_evaluator`` (inputs already TVM tensors, the loop in C++), the VM's ``main``
  called from Python on TVM tensors, the backend executable (aligned numpy in, numpy out), and the nir call.
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

__all__ = ["per_call", "per_call_table", "throughput", "main"]


Times = dict[str, tuple[float, float, float, float]]  # variant -> (wall min, wall median, cpu min, cpu median)


def _per_call_us(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    """Wall-clock and calling-thread CPU microseconds per call. On a busy machine the wall clock counts
    the time the process waits for a core; the thread's CPU time does not (but misses work done on
    other threads, e.g. a backend's thread pool), so both are reported."""
    t, c = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number * 1e6, (time.thread_time() - c) / number * 1e6


def _round_robin(variants: dict[str, Callable[[int], tuple[float, float]]], rounds: int, number: int) -> Times:
    """Each variant times ``number`` calls (returning wall and CPU us per call), all variants in turn,
    ``rounds`` times; min and median of each."""
    for timed in variants.values():
        timed(max(number // 10, 10))
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, timed in variants.items():
            times[k].append(timed(number))
    return {k: (min(w for w, _ in v), statistics.median(w for w, _ in v),
                min(c for _, c in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def _loop(fn: Callable[[], Any]) -> Callable[[int], tuple[float, float]]:
    return lambda number: _per_call_us(fn, number)


def _programs() -> dict[str, tuple[Callable[..., Any], Callable[..., Any], np.ndarray, tuple[str, ...], int]]:
    """name -> (nir function, the same on plain arrays, input, its names, calls per round)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    wt = nir.tensor(w, names=("K", "N"))
    return {
        "x * 2, {N: 64, C: 64}": (lambda t: t * 2.0, lambda a: a * 2.0,
                                  rng.standard_normal((64, 64)).astype(np.float32), ("N", "C"), 2000),
        "x @ w, {M: 256, K: 256} @ {K: 256, N: 256}": (lambda t: t @ wt, lambda a: a @ w,
                                                      rng.standard_normal((256, 256)).astype(np.float32),
                                                      ("M", "K"), 200),
    }


def per_call(rounds: int = 15, scale: float = 1.0) -> dict[tuple[str, str], Times]:
    """Per (backend, program): min and median (wall, thread CPU) microseconds per call of each variant."""
    out: dict[tuple[str, str], Times] = {}
    for name, (fn, plain, arr, names, number) in _programs().items():
        number = max(int(number * scale), 20)
        x = nir.tensor(arr, names=names)
        arr = x.numpy()  # 64-byte aligned, as nir.tensor makes it: what TVM can share without a copy
        if nir.backends.installed("xla"):
            import jax
            jitted = jax.jit(plain)
            f = nir.compile(fn, backend="xla")
            f(x)
            exe = f._last.executable
            out["xla", name] = _round_robin({
                "jax.jit(f)(x).block_until_ready()": _loop(lambda: jitted(arr).block_until_ready()),
                "np.asarray(jax.jit(f)(x))": _loop(lambda: np.asarray(jitted(arr))),
                "executable(x), waited": _loop(lambda: exe(arr)[0].block_until_ready()),
                "nir f(x)": _loop(lambda: f(x)),
            }, rounds, number)
        if nir.backends.installed("tvm"):
            import tvm
            f = nir.compile(fn, backend="tvm")
            f(x)
            exe = f._last.executable
            main = exe.vm_function()
            targ = tvm.runtime.tensor(arr, exe.device)

            def evaluated(n: int) -> tuple[float, float]:  # timed inside TVM, in C++: no Python in the loop
                us = float(exe._vm.time_evaluator("main", exe.device, number=n, repeat=1)(targ).mean) * 1e6
                return us, us

            out["tvm", name] = _round_robin({
                "time_evaluator": evaluated,
                "vm main(tvm tensor)": _loop(lambda: main(targ)),
                "executable(x)": _loop(lambda: exe(arr)),
                "nir f(x)": _loop(lambda: f(x)),
            }, rounds, number)
    return out


def per_call_table(res: dict[tuple[str, str], Times]) -> str:
    """The per-call figures as text: each variant's times, and nir's against the bare call (xla: ratios to
    both waiting jax calls; tvm: microseconds over time_evaluator)."""
    lines = ["per call, us: wall min / median, thread CPU min / median"]
    for (backend, program), times in res.items():
        lines.append(f"  {backend} {program}")
        for k, (wmin, wmed, cmin, cmed) in times.items():
            lines.append(f"    {k:<36} {wmin:9.2f} / {wmed:9.2f}   {cmin:9.2f} / {cmed:9.2f}")
        n = times["nir f(x)"]
        if backend == "xla":
            for base in ("jax.jit(f)(x).block_until_ready()", "np.asarray(jax.jit(f)(x))"):
                b = times[base]
                lines.append(f"    nir / {base:<30} x{n[0] / b[0]:.2f} / x{n[1] / b[1]:.2f}   "
                             f"x{n[2] / b[2]:.2f} / x{n[3] / b[3]:.2f}")
        else:
            b = times["time_evaluator"]
            lines.append(f"    nir - time_evaluator                 +{n[0] - b[0]:.2f} / +{n[1] - b[1]:.2f}   "
                         f"+{n[2] - b[2]:.2f} / +{n[3] - b[3]:.2f}")
    return "\n".join(lines)


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
    p.add_argument("--per-call", action="store_true", help="the per-call table only (no throughput)")
    a = p.parse_args(argv)
    from .machine import machine_info
    info = machine_info()
    print(f"machine: {info.get('cpu_model')}, {info.get('cpus_usable')} usable cores; "
          f"load average {os.getloadavg()[0]:.2f}; TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '(unset)')}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print()
    print(per_call_table(per_call(rounds=7 if a.quick else 15, scale=0.25 if a.quick else 1.0)))
    if not a.per_call:
        print("\nthroughput, calls/s of an MLP (batch 8, width 128) from 1, 2, 4 threads:")
        for backend in [b for b in ("reference", "xla", "tvm") if nir.backends.installed(b)]:
            figures = [throughput(backend, n, 1.5 if a.quick else 4.0) for n in (1, 2, 4)]
            print(f"  {backend:<10} " + "  ".join(f"{n} thr {v:9.0f}" for n, v in zip((1, 2, 4), figures)))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
