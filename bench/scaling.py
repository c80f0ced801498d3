"""Data-parallel scaling of one workload from 1 to 4 host devices, in 1 and in 2 processes.

    python -m nir.bench.scaling                  # the MLP workload (full size), 3 rounds
    python -m nir.bench.scaling --size small --rounds 1 --calls 10

Each configuration (processes x host devices per process) runs in fresh processes started by `nir launch`
(JAX fixes its device count when it starts): every process calls `nir.distributed.initialize()`, compiles
the workload with ``mesh={"data": devices in all}, shard={"N": "data"}, local_inputs=True`` and times the
call a user makes (its rows of the batch in, its rows of the result out as numpy) for ``--seconds``;
process 0 reports the median per-call time. Configurations are run round-robin, ``--rounds`` times, and the
table shows the median over rounds and the ratio to 1 process x 1 device (above 1: slower).

XLA:CPU runs one thread per device here (``--xla_cpu_multi_thread_eigen=false``), so the work is split, not
multiplied, as devices are added. **Host devices are slices of one CPU**: on a machine with fewer cores than
devices (the 2-core machines this project is measured on), more devices add partitioning and collective
(gloo, over loopback TCP between processes) costs without adding compute, so the figures measure that
overhead, not a speedup. On real multi-host hardware each device brings its own compute.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from typing import Any, Sequence

from nir.extras import exit_unless_installed

CONFIGS = ((1, 1), (1, 2), (1, 4), (2, 1), (2, 2))  # (processes, host devices per process)
MARK = "SCALING "
THREADS_FLAG = "--xla_cpu_multi_thread_eigen=false"


def worker(workload: str, size: str, calls: int) -> None:
    """One process of one configuration: time the sharded workload; process 0 prints the result."""
    import numpy as np

    import nir
    from nir.bench.workloads import WORKLOADS

    info = nir.distributed.initialize()
    w = WORKLOADS[workload]
    inputs = w.make_inputs(size, 0)
    x, params = inputs[0], inputs[1:]
    rows = x.shape[x.names.index("N")] // info.num_processes
    mine = nir.tensor(np.ascontiguousarray(x.numpy()[info.process_id * rows:(info.process_id + 1) * rows]),
                      names=x.names)
    f = nir.compile(w.fn, backend="xla", mesh={"data": info.global_devices}, shard={"N": "data"}, local_inputs=True)
    t0 = time.perf_counter()
    f(mine, *params)
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        f(mine, *params)
    times: list[float] = []
    for _ in range(calls):  # the same count in every process: each call's collectives wait for all of them
        t0 = time.perf_counter()
        f(mine, *params)
        times.append(time.perf_counter() - t0)
    if info.is_main:
        print(MARK + json.dumps({"ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "calls": calls,
                                 "compile_s": compile_s, "devices": info.global_devices,
                                 "processes": info.num_processes}), flush=True)


def run_config(processes: int, devices: int, workload: str, size: str, calls: int,
               timeout_s: float) -> dict[str, Any]:
    """Start one configuration with `nir launch`; the measurement process 0 reported."""
    from nir.launch import launch
    out = io.StringIO()
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {THREADS_FLAG}".strip()
    try:
        status = launch(["-m", "nir.bench.scaling", "--worker", workload, size, str(calls)], processes,
                        devices=devices, timeout_s=timeout_s, out=out)
    finally:
        os.environ["XLA_FLAGS"] = flags
    for line in out.getvalue().splitlines():
        if MARK in line:
            return json.loads(line.split(MARK, 1)[1])
    raise RuntimeError(f"{processes} x {devices} failed (status {status}):\n{out.getvalue()[-3000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m nir.bench.scaling``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2], int(argv[3]))
        return 0
    p = argparse.ArgumentParser(prog="python -m nir.bench.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="mlp", help="a nir bench workload whose first input has dim N (default: mlp)")
    p.add_argument("--size", default="full", choices=("small", "full"))
    p.add_argument("--rounds", type=int, default=3, help="round-robin passes over the configurations")
    p.add_argument("--calls", type=int, default=30, help="timed calls per configuration and round")
    p.add_argument("--timeout", type=float, default=300.0, help="limit for one configuration's processes")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    from nir.bench.machine import machine_info
    results: dict[tuple[int, int], list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
        for procs, devs in order:
            print(f"round {r + 1}/{args.rounds}: {procs} process(es) x {devs} device(s)", file=sys.stderr, flush=True)
            results[(procs, devs)].append(run_config(procs, devs, args.workload, args.size, args.calls,
                                                     args.timeout))
    base = statistics.median(m["ms"] for m in results[(1, 1)])
    rows = [{"processes": p_, "devices_per_process": d, "devices": p_ * d,
             "ms": statistics.median(m["ms"] for m in ms), "min_ms": min(m["min_ms"] for m in ms),
             "compile_s": statistics.median(m["compile_s"] for m in ms)} for (p_, d), ms in results.items()]
    for row in rows:
        row["vs_1x1"] = row["ms"] / base
    machine = machine_info()
    if args.json:
        print(json.dumps({"workload": args.workload, "size": args.size, "machine": machine, "rows": rows}, indent=1))
        return 0
    print(f"{args.workload} ({args.size}), data parallel over N; medians of {args.rounds} round(s); "
          f"{machine['cpu_model']}, {machine['cpus']} CPUs, load average {machine['load_average']}")
    head = ("processes", "dev/proc", "devices", "ms/call", "min ms", "vs 1x1", "compile s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (9, 8, 7, 9, 8, 7, 9))))
    for row in rows:
        print(f"{row['processes']:>9} {row['devices_per_process']:>8} {row['devices']:>7} {row['ms']:>9.3f} "
              f"{row['min_ms']:>8.3f} {row['vs_1x1']:>6.2f}x {row['compile_s']:>9.2f}")
    print("Host devices share this machine's cores: on fewer cores than devices these figures measure the overhead "
          "of partitioning and collectives, not a speedup.")
    return 0


if __name__ == "__main__":
    exit_unless_installed("python -m nir.bench.scaling", "jax")
    sys.exit(main())
