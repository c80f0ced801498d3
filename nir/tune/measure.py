"""Measuring candidates the way users run them, interleaved.

What is timed is the call a user makes: `nir.compile` of the candidate program with the candidate's
options, called with NamedTensors, returning NamedTensors whose data is complete (numpy arrays, so an
asynchronous backend such as XLA has finished; `wait` blocks on anything else that is still running).
Candidates are measured round-robin, the order rotating every round, so that drift on a shared machine
(other load, frequency changes) hits every candidate alike. Each sample is the mean of enough
back-to-back calls to last ``min_time_s / rounds``, after a short idle time and one untimed call of
its own (`round_robin`: other runtimes' threads spin for milliseconds after they ran).

The statistic that decides is the **median** per-call time of the samples (`STATISTIC`); the minimum
is reported beside it. Each timing also says how much CPU other processes took while it ran
(`OtherLoad`): a kernel that runs one thread per core waits at every barrier for the threads another
process pushed off their cores, so on a busy machine its figure is several times its quiet one
(a 2-thread TVM layer_norm on 2 cores: 0.3 ms alone, 1-4 ms beside one busy process).
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Timing", "STATISTIC", "measure", "measure_interleaved", "round_robin", "wait", "user_call", "UserCall",
           "OtherLoad", "BUSY_CORES", "SETTLE_S", "busy", "others_cores"]

STATISTIC = "median"
MAX_CALLS_PER_SAMPLE = 10_000
BUSY_CORES = 0.25  # other processes using more than this many cores during a timing make it suspect
SETTLE_S = 0.02  # idle time before each interleaved sample, longer than other runtimes' spin-waits (`round_robin`)


@dataclass(frozen=True)
class Timing:
    """Per-call times in milliseconds over ``runs`` samples."""

    median_ms: float
    min_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    others_cores: float | None = None  # CPU other processes used meanwhile (`OtherLoad`), None if unknown

    @staticmethod
    def of(samples_ms: Sequence[float], others_cores: float | None = None) -> "Timing":
        """Summary of per-call sample times in milliseconds."""
        a = np.asarray(samples_ms, dtype=np.float64)
        p25, med, p75 = np.percentile(a, [25, 50, 75])
        return Timing(float(med), float(a.min()), float(p25), float(p75), len(a), others_cores)

    @property
    def contended(self) -> bool:
        """Whether other processes took more than `BUSY_CORES` cores while this was timed."""
        return busy(self.others_cores)

    def to_json(self) -> dict[str, float | None]:
        """The median (``ms``, what decides), the min and the other processes' load, for JSON reports."""
        return {"ms": self.median_ms, "min_ms": self.min_ms, "others_cores": self.others_cores}


def busy(cores: float | None) -> bool:
    """Whether ``cores`` (what other processes took during a timing, `OtherLoad`) is more than
    `BUSY_CORES`; None (not known) counts as quiet."""
    return cores is not None and cores > BUSY_CORES


def others_cores(times: Mapping[str, Timing]) -> float | None:
    """What other processes took during a side-by-side timing (`measure_interleaved`: the same for
    every entry), or None when not known."""
    return max((t.others_cores for t in times.values() if t.others_cores is not None), default=None)


def _machine_busy_s() -> float | None:
    """CPU seconds every process on this machine has used since boot, the hypervisor's steal included
    (Linux ``/proc/stat``), or None where that cannot be read."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 5:
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait; the rest (user, nice, system, irq, softirq, steal) is busy
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """A context manager measuring the CPU that *other* processes (and the hypervisor, as steal) used
    while its block ran, in cores: ``with OtherLoad() as load: ...`` then ``load.cores`` (None where the
    machine's counters cannot be read). The clock ticks are 10 ms, so blocks shorter than ~0.2 s read
    coarsely."""

    cores: float | None = None

    def __enter__(self) -> "OtherLoad":
        self._busy, self._own, self._wall = _machine_busy_s(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        busy, wall = _machine_busy_s(), time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (time.process_time() - self._own)
        self.cores = round(max(0.0, others / wall), 2)


def wait(out: Any) -> Any:
    """``out`` once every array in it is complete: calls ``block_until_ready()`` on anything that has it
    (JAX dispatches asynchronously, on the CPU too), through lists, tuples and NamedTensors."""
    if isinstance(out, (list, tuple)):
        for o in out:
            wait(o)
        return out
    data = getattr(out, "_data", None)  # a NamedTensor
    if data is not None and data is not out:
        wait(data)
    block = getattr(out, "block_until_ready", None)
    if callable(block):
        block()
    return out


class UserCall:
    """A zero-argument call of a program compiled by `nir.compile`, on fixed NamedTensors: exactly what a
    user of the compiled program runs (see `user_call`)."""

    def __init__(self, compiled: Any, tensors: Sequence[Any]) -> None:
        self.compiled, self.tensors = compiled, list(tensors)

    def __call__(self) -> Any:
        return self.compiled(*self.tensors)

    @property
    def executable(self) -> Any:
        """The backend executable behind the call (e.g. for profiling it)."""
        return self.compiled._entry().executable


def user_call(program: Any, target: Any, backend: str, inputs: Sequence[np.ndarray], **options: Any) -> UserCall:
    """``program`` compiled by `nir.compile` for ``target`` with ``backend`` and build ``options``, ready
    to be called on NamedTensors holding ``inputs`` (each in its logical order). Compiling happens here,
    not in the call."""
    from ..compile import Compiled
    from ..tensor import from_array
    compiled = Compiled(program, target, backend, **options)
    return UserCall(compiled, [from_array(a, names=v.type.user_names) for a, v in zip(inputs, program.inputs)])


def _per_call_s(call: Callable[[], Any], warmup: int) -> float:
    for _ in range(warmup):
        wait(call())
    t0 = time.perf_counter()
    wait(call())
    return time.perf_counter() - t0


def measure_interleaved(calls: Mapping[str, Callable[[], Any]], *, min_time_s: float = 0.2, rounds: int = 7,
                        warmup: int = 1,
                        agree: Callable[[list[float]], list[float]] | None = None) -> dict[str, Timing]:
    """Time every zero-argument call in ``calls`` round-robin: ``warmup`` calls each (excluded), then
    ``rounds`` samples each, interleaved, each sample lasting about ``min_time_s / rounds``. Outputs are
    waited for. Returns a `Timing` per name.

    ``agree`` maps the probed seconds per call (in the order of ``calls``) to the ones that set the
    number of calls per sample: processes whose calls wait for each other in collectives must make the
    same number (the shard-map tuner passes process 0's probes to every process)."""
    names = list(calls)
    probes = [_per_call_s(calls[n], warmup) for n in names]
    if agree is not None:
        probes = list(agree(probes))
    counts = {n: max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(min_time_s / rounds / max(per, 1e-9))))
              for n, per in zip(names, probes)}
    waited = {n: (lambda call=calls[n]: wait(call())) for n in names}
    with OtherLoad() as load:
        samples = round_robin(waited, counts, rounds)
    return {n: Timing.of([x * 1e3 for x in s], load.cores) for n, s in samples.items()}


def round_robin(calls: Mapping[str, Callable[[], Any]], counts: Mapping[str, int], rounds: int,
                on_round: Callable[[], None] | None = None, settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """``rounds`` samples per variant, interleaved; each sample is the mean time of ``counts[name]``
    back-to-back calls. ``on_round`` is called after each round (for a progress bar).

    When more than one variant is timed, each sample *settles* first: ``settle_s`` seconds idle, then one
    untimed call of the variant, so that it is timed in its steady state rather than in the wake of the
    variant before it. Parallel runtimes keep their worker threads spinning for a few milliseconds after
    a parallel region (libgomp's default, which torch and torch.compile's kernels use; TVM's thread pool
    and XLA's too): on a machine with as many cores as threads, the next variant's threads wait for those
    cores. Measured on 2 vCPUs at 2 threads (docs/performance.md): a TVM MobileNetV3 call took 15 ms
    right after torch.compile's and 8 ms for the calls after it, against 5 ms alone; after 10 ms idle,
    5 ms. ``settle_s=0`` turns settling off (one variant never settles: nothing runs between its
    samples)."""
    names = list(calls)
    settle = settle_s > 0 and len(names) > 1
    samples: dict[str, list[float]] = {n: [] for n in names}
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(names) if names else 0
            for name in names[k:] + names[:k]:
                call, n = calls[name], counts[name]
                if settle:
                    time.sleep(settle_s)
                    call()
                t0 = time.perf_counter()
                for _ in range(n):
                    call()
                samples[name].append((time.perf_counter() - t0) / n)
            if on_round is not None:
                on_round()
    finally:
        if enabled:
            gc.enable()
    return samples


def measure(run: Callable[..., Any], inputs: Sequence[Any], *, min_time_s: float = 0.2, rounds: int = 7,
            warmup: int = 1) -> Timing:
    """Time ``run(*inputs)`` alone (outputs waited for); see `measure_interleaved`."""
    return measure_interleaved({"run": lambda: run(*inputs)}, min_time_s=min_time_s, rounds=rounds,
                               warmup=warmup)["run"]
