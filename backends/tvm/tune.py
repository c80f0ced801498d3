"""Schedule search for the tvm backend with TVM's MetaSchedule, driven by `nir tune`.

    tune(program, target, work_dir="db/tvm/ab12", trials=256)     # MetaSchedule's JSON database there
    build(program, target, tuning_db="db/tvm/ab12")                # applies it (no re-tuning)
    measure_remote(exe, inputs, "127.0.0.1:9190:cpu")              # time on a device of an RPC tracker

The traps measured on these machines (see shared/notes/tvm-0.27-probe.md) shape it:
- tasks exist only on the legalized, fused module (`relax.get_pipeline("zero")`);
- the budget goes to the heavy tasks first (by estimated FLOPs), each with its own share, instead of
  MetaSchedule's global budget being spent on tiny elementwise tasks;
- on CPU fp32 the builder skips `import tvm.s_tir.tensor_intrin` (30-40 s per popen batch here, which
  made builds time out); CUDA keeps TVM's default builder, which tensor-core schedules need.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import uuid
from typing import Any, Callable, Sequence

import numpy as np
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from nir.backends import BackendError
from nir.ir import Program
from nir.target import Target, parse_target

from .build import _to_tvm, relax_module, tvm_target

__all__ = ["tune", "measure_remote", "heavy_tasks", "parse_rpc"]

MIN_TRIALS_PER_TASK = 8
MAX_TASKS = 6


def fast_build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """MetaSchedule's default build minus the tensor-intrinsics import (CPU fp32 never uses them)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def parse_rpc(rpc: str) -> tuple[str, int, str]:
    """``HOST:PORT:KEY`` -> (host, port, key)."""
    parts = rpc.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        raise BackendError(f"--rpc {rpc!r} should look like HOST:PORT:KEY (a TVM RPC tracker and a device key)")
    return parts[0], int(parts[1]), parts[2]


def heavy_tasks(tasks: Sequence[Any]) -> list[Any]:
    """Tasks worth tuning, heaviest first: by estimated FLOPs times how often each runs, keeping tasks
    until 99% of the work is covered (at most MAX_TASKS)."""
    from tvm.s_tir.analysis import estimate_tir_flops
    work = []
    for t in tasks:
        try:
            flops = float(estimate_tir_flops(t.dispatched[0]))
        except Exception:  # noqa: BLE001 - an unanalysable task counts as light
            flops = 0.0
        work.append((flops * t.weight, t))
    work.sort(key=lambda w: -w[0])
    total = sum(w for w, _ in work) or 1.0
    chosen, covered = [], 0.0
    for w, t in work:
        if len(chosen) >= MAX_TASKS or (covered >= 0.99 * total and chosen):
            break
        chosen.append(t)
        covered += w
    return chosen


def _runner(rpc: str | None) -> Any:
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1))
    host, port, key = parse_rpc(rpc)
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                       session_timeout_sec=120),
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1), max_workers=1)


def tune(program: Program, target: Target | str, *, work_dir: str | os.PathLike, trials: int,
         rpc: str | None = None, seed: int = 0, log: Callable[[str], None] = lambda msg: None) -> int:
    """Search schedules for ``program``'s heavy PrimFuncs with MetaSchedule, storing the results in the
    JSON database in ``work_dir``; returns how many tasks were tuned. ``trials`` is the total budget,
    split over the heavy tasks (at least MIN_TRIALS_PER_TASK each)."""
    import logging
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    if not os.environ.get("NIR_DEBUG"):  # MetaSchedule's per-round tables go to work_dir/logs, not the console
        ms_logger.setLevel(logging.WARNING)
    for h in list(ms_logger.handlers):  # MetaSchedule re-lists its logger's handlers by name when it
        if h.get_name() is None:        # configures logging again, and crashes on an unnamed one
            ms_logger.removeHandler(h)
    target = parse_target(target)
    ttarget = tvm_target(target)
    with ttarget:
        legal = relax.get_pipeline("zero")(relax_module(program, target))
    tasks = heavy_tasks(ms.relax_integration.extract_tasks(legal, ttarget))
    if not tasks:
        log("[tvm] no tunable tasks")
        return 0
    per_task = max(trials // len(tasks), MIN_TRIALS_PER_TASK)
    log(f"[tvm] tuning {len(tasks)} tasks ({', '.join(t.task_name for t in tasks)}), {per_task} trials each")
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(work_dir), seed=seed)
    builder = ms.builder.LocalBuilder(f_build=fast_build if target.kind == "llvm" else "s_tir.meta_schedule"
                                      ".builder.default_build", timeout_sec=120)
    ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                       max_trials_global=per_task * len(tasks), max_trials_per_task=per_task,
                       num_trials_per_iter=min(32, per_task), builder=builder, runner=_runner(rpc))
    return len(tasks)


def measure_remote(executable: Any, inputs: Sequence[np.ndarray], rpc: str, number: int = 10,
                   repeat: int = 5) -> Any:
    """Time ``executable`` on a device of the RPC tracker ``HOST:PORT:KEY``: the library is exported
    here, uploaded, and timed there by TVM's time_evaluator."""
    from tvm import rpc as tvm_rpc

    from nir.tune.measure import Timing
    host, port, key = parse_rpc(rpc)
    remote = tvm_rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=120)
    with tempfile.TemporaryDirectory() as d:
        name = f"nir-{uuid.uuid4().hex[:8]}.so"
        executable.library.export_library(str(pathlib.Path(d) / name))
        remote.upload(str(pathlib.Path(d) / name))
    dev = remote.cuda() if executable.target.kind == "cuda" else remote.cpu()
    vm = relax.VirtualMachine(remote.load_module(name), dev)
    args = [_to_tvm(a, s, i, tvm.cpu()) for i, (a, s) in enumerate(zip(inputs, executable.inputs))]
    args = [tvm.runtime.tensor(a.numpy(), dev) for a in args]
    res = vm.time_evaluator("main", dev, number=number, repeat=repeat)(*args)
    times = sorted(float(r) * 1e3 for r in res.results)
    q = np.percentile(times, [25, 75])
    return Timing(float(np.median(times)), times[0], float(q[0]), float(q[1]), len(times))
