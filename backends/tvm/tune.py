"""Schedule search for the tvm backend with TVM's MetaSchedule, driven by `nir tune`.

    tune(program, target, work_dir="db/tvm/ab12", seconds=300)    # a wall-clock budget, or trials=256
    build(program, target, tuning_db="db/tvm/ab12")                # applies it (no re-tuning)
    measure_remote(exe, inputs, "127.0.0.1:9190:cpu")              # time on a device of an RPC tracker

How the budget is spent: the program's tasks (its distinct fused PrimFuncs) are ranked by their share
of the run time, measured by profiling the default-scheduled build per PrimFunc (estimated FLOPs when
no profile is possible), and tuned one at a time, heaviest first, each with its share of the budget
(time left over by a task that finishes early goes to the ones after it). A task that is done is
written to ``work_dir/nir_tasks.json``, so a run that is interrupted and started again skips it.

What made 64 trials take minutes here, and what this module does instead (measured in
docs/tuning.md):
- `TuneContext` imports ``tvm.s_tir.tensor_intrin``, which parses every tensor intrinsic of every
  target with TVMScript; each parse walks the Python stack with `inspect.stack()`, slow with torch and
  jax loaded (35 s alone, minutes under load). Only the host architecture's intrinsics are registered
  for llvm (`register_tensor_intrinsics`); cuda registers them all.
- `LocalBuilder` starts a new process pool for every batch of candidates (each worker imports tvm)
  and runs ``import tvm.s_tir.tensor_intrin`` per build: `PoolBuilder` keeps one pool for the whole
  run and builds with `fast_build` on CPUs.
- MetaSchedule's ``work_dir/logs`` loggers are configured with `logging.config.dictConfig` for every
  tuning call, which replaces the handlers of ``tvm.s_tir.meta_schedule`` by name and so fails on a
  handler without one (issue 13, item 6): contexts here get nir's own logger instead, and nothing
  reconfigures logging.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import pathlib
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import tvm
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm_ffi.structural import structural_hash

from nir.backends import BackendError
from nir.ir import Program
from nir.target import Target, parse_target

from .build import _BUILD_LOCK, relax_module, to_tvm, tvm_target
from .deadline import (DEADLINE_MESSAGE, Deadline, DeadlineCostModel, DeadlineRunner, is_deadline_error,
                       repair_database)
from .intrinsics import register_tensor_intrinsics

__all__ = ["tune", "measure_remote", "task_shares", "plan_tasks", "parse_rpc", "register_tensor_intrinsics",
           "TaskPlan", "profile_primfuncs"]

MIN_TRIALS_PER_TASK = 8
MIN_TASK_SECONDS = 20.0  # a task is worth tuning only with time for at least one batch of candidates
COVERAGE = 0.99          # tune the heaviest tasks until they cover this share of the run time
PROGRESS_FILE = "nir_tasks.json"

_log = logging.getLogger("nir.tune.tvm")


# ---------------------------------------------------------------------------------------------
# start-up costs
# ---------------------------------------------------------------------------------------------

def fast_build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """MetaSchedule's default build minus the tensor-intrinsics import (CPU fp32 never uses them)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


@derived_object
class PoolBuilder(ms.builder.PyBuilder):
    """MetaSchedule's local builder with one process pool for many batches (`LocalBuilder` starts a
    pool per batch, and each worker imports tvm, seconds per batch here). The pool is restarted every
    ``restart_every`` batches, since TVM reports that its workers leak memory over many uses. Candidates
    still building when ``deadline`` passes fail with "time is up"."""

    def __init__(self, f_build: Any, timeout_sec: float = 120.0, max_workers: int | None = None,
                 restart_every: int = 20, deadline: Deadline | None = None) -> None:
        super().__init__()
        self.deadline = deadline or Deadline()
        from tvm.support.popen_pool import PopenPoolExecutor
        self._executor = PopenPoolExecutor
        self.f_build, self.timeout_sec, self.restart_every = f_build, timeout_sec, restart_every
        self.max_workers = max_workers or max(1, len(os.sched_getaffinity(0)))
        self._pool: Any = None
        self._batches = 0

    def start(self) -> None:
        """Start the worker processes now, in the background (each imports tvm: seconds, more under load),
        so that the first batch does not wait for them."""
        if self._pool is None:
            self._pool = self._executor(max_workers=self.max_workers, timeout=self.timeout_sec)
            self._batches = 0
            for _ in range(self.max_workers):  # each of the pool's threads starts its own worker process
                self._pool.submit(time.sleep, 0.5)

    def _get_pool(self) -> Any:
        if self._pool is not None and self._batches >= self.restart_every:
            self.close()
        self.start()
        self._batches += 1
        return self._pool

    def close(self) -> None:
        """Stop the worker processes, also those still building. (TVM's `PopenPoolExecutor.shutdown`
        closes a worker's pipe before killing it, which blocks until a build under way ends, and races
        with the thread reading that pipe, which kills the worker too when it sees it die. Here the
        builds not started are dropped first, since a pool thread that finds its worker dead starts a new
        one for its next build, and that process would build on in the background, taking the CPU from
        whatever is timed next; then the processes are killed, and the reading threads clean up after
        them.)"""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        pool._threadpool.shutdown(wait=False, cancel_futures=True)
        for worker in list(pool._worker_map.values()):
            proc = getattr(worker, "_proc", None)
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
        pool._shutdown = True  # its __del__ would otherwise shut it down again, waiting on the threads

    def build(self, build_inputs: list[Any]) -> list[Any]:
        """Build ``build_inputs`` in the pool; those not built when the deadline passes fail with "time is
        up" (their builds finish in the background: a build takes seconds, a new pool longer)."""
        import concurrent.futures

        from tvm.s_tir.meta_schedule.builder.local_builder import _worker_func
        if self.deadline.passed():
            return [ms.builder.BuilderResult(None, DEADLINE_MESSAGE) for _ in build_inputs]
        pool = self._get_pool()
        futures = [pool.submit(_worker_func, self.f_build, None, b.mod, b.target, None) for b in build_inputs]
        concurrent.futures.wait(futures, timeout=self.deadline.left())
        results = []
        for f in futures:
            if not f.done():
                results.append(ms.builder.BuilderResult(None, DEADLINE_MESSAGE))
            elif isinstance(f.exception(), TimeoutError):
                results.append(ms.builder.BuilderResult(None, f"build timed out after {self.timeout_sec} s"))
            elif f.exception() is not None:
                results.append(ms.builder.BuilderResult(None, f"build failed: {f.exception()}"))
            else:
                results.append(ms.builder.BuilderResult(f.result(), None))
        return results


# ---------------------------------------------------------------------------------------------
# where the run time goes
# ---------------------------------------------------------------------------------------------

def profile_primfuncs(executable: Any, inputs: Sequence[np.ndarray], runs: int = 3) -> dict[str, tuple[float, int]]:
    """``{PrimFunc name: (seconds per run, calls per run)}`` of a built `TVMExecutable`, timed by the
    Relax VM's instrumentation hook around each call."""
    vm = relax.VirtualMachine(executable.library, executable.device)
    args = [to_tvm(a, s, i, executable.device) for i, (a, s) in enumerate(zip(inputs, executable.inputs))]
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    started: list[float] = []

    def instrument(func: Any, symbol: str, before: bool, ret: Any, *a: Any) -> int:
        if before:
            started.append(time.perf_counter())
        else:
            total[str(symbol)] += time.perf_counter() - started.pop()
            calls[str(symbol)] += 1
        return 0

    vm["main"](*args)  # warm-up, uninstrumented
    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](*args)
    return {k: (v / runs, calls[k] // runs) for k, v in total.items()}


def task_shares(tasks: Sequence[Any], profile: dict[str, tuple[float, int]] | None = None) -> tuple[list[float], str]:
    """Each task's estimated share of the program's run time, and how it was estimated: from a
    `profile_primfuncs` profile (time per call x how many PrimFuncs the task stands for), or, when
    there is none or it misses tasks holding most of the work, from estimated FLOPs x weight."""
    from tvm.s_tir.analysis import estimate_tir_flops
    flops = []
    for t in tasks:
        try:
            flops.append(float(estimate_tir_flops(t.dispatched[0])) * t.weight)
        except Exception:  # noqa: BLE001 - an unanalysable task counts as light
            flops.append(0.0)
    if profile:
        times = []
        for t in tasks:
            secs, n = profile.get(t.task_name, (0.0, 0))
            times.append(secs / max(n, 1) * t.weight)
        covered = sum(f for f, s in zip(flops, times) if s > 0)
        if sum(times) > 0 and covered >= 0.5 * sum(flops):
            total = sum(times)
            return [s / total for s in times], "profile"
    total = sum(flops) or 1.0
    return [f / total for f in flops], "flops"


@dataclass(frozen=True)
class TaskPlan:
    """Which tasks to tune (indices, heaviest first) and each one's share of the budget."""

    order: tuple[int, ...]
    fractions: tuple[float, ...]


def plan_tasks(shares: Sequence[float], *, trials: int | None = None, seconds: float | None = None) -> TaskPlan:
    """The heaviest tasks covering `COVERAGE` of the run time, as many as the budget gives a useful
    amount to (`MIN_TASK_SECONDS` or `MIN_TRIALS_PER_TASK` each), with budget fractions proportional to
    their shares."""
    ranked = sorted(range(len(shares)), key=lambda i: -shares[i])
    limit = len(ranked)
    if seconds is not None:
        limit = max(1, int(seconds // MIN_TASK_SECONDS))
    elif trials is not None:
        limit = max(1, trials // MIN_TRIALS_PER_TASK)
    chosen, covered = [], 0.0
    total = sum(shares) or 1.0
    for i in ranked:
        if len(chosen) >= limit or (chosen and covered >= COVERAGE * total):
            break
        chosen.append(i)
        covered += shares[i]
    weight = sum(shares[i] for i in chosen) or 1.0
    return TaskPlan(tuple(chosen), tuple((shares[i] / weight if weight else 1 / len(chosen)) for i in chosen))


# ---------------------------------------------------------------------------------------------
# one task at a time, under a deadline
# ---------------------------------------------------------------------------------------------

@derived_object
class _DeadlineScheduler(ms.task_scheduler.PyTaskScheduler):
    """Runs the single task it is given until its search ends, its trial cap is reached, the deadline
    has passed, or the next batch would end well after it. (A batch under way when the deadline passes
    is cut short by the `deadline` wrappers of the cost model, builder and runner.)"""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline
        self._sent_at: float | None = None
        self._batch_s = 0.0

    def next_task_id(self) -> int:
        sched = self._outer()  # type: ignore[attr-defined]
        task = sched.tasks_[0]
        if self._sent_at is not None and not task.is_terminated and task.runner_futures is not None:
            sched.join_running_task(0)
            self._batch_s = time.monotonic() - self._sent_at
        self._sent_at = None
        if task.is_terminated:
            return -1
        if self.deadline.at is not None and time.monotonic() + 0.5 * self._batch_s > self.deadline.at:
            return -1
        self._sent_at = time.monotonic()
        return 0


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Counts trials (candidates measured, or failed for a reason of their own: not those failed because
    the time was up) and keeps the best measured time of the task being tuned."""

    def __init__(self) -> None:
        super().__init__()
        self.trials, self.errors, self.best_s = 0, 0, float("inf")

    def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any, builder_results: Any,
              runner_results: Any) -> None:
        for build, res in zip(builder_results, runner_results):
            if DEADLINE_MESSAGE in str(res.error_msg) or DEADLINE_MESSAGE in str(build.error_msg):
                continue
            self.trials += 1
            if res.error_msg is not None or not res.run_secs:
                self.errors += 1
                continue
            self.best_s = min(self.best_s, float(np.median([float(s) for s in res.run_secs])))


def _task_logger(work_dir: pathlib.Path, name: str) -> logging.Logger:
    """A logger for one task's MetaSchedule messages: warnings to the console; everything to
    ``work_dir/logs/<task>.log`` when NIR_DEBUG is set."""
    logger = logging.getLogger(f"nir.tune.tvm.task.{name[:100]}")
    if os.environ.get("NIR_DEBUG") and not logger.handlers:
        (work_dir / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(work_dir / "logs" / f"{name[:100]}.log")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    elif not os.environ.get("NIR_DEBUG"):
        logger.setLevel(logging.WARNING)
    return logger


class _Done:
    """``work_dir/nir_tasks.json``: the tasks finished so far, by workload hash, with what they got."""

    def __init__(self, work_dir: pathlib.Path) -> None:
        self.path = work_dir / PROGRESS_FILE

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def mark(self, key: str, entry: dict[str, Any]) -> None:
        from nir.tune.database import write_atomic
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                data[key] = entry
                write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _runner(rpc: str | None) -> Any:
    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50)
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=config)
    host, port, key = parse_rpc(rpc)
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                       session_timeout_sec=120),
        evaluator_config=config, max_workers=1)


def parse_rpc(rpc: str) -> tuple[str, int, str]:
    """``HOST:PORT:KEY`` -> (host, port, key)."""
    parts = rpc.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        raise BackendError(f"--rpc {rpc!r} should look like HOST:PORT:KEY (a TVM RPC tracker and a device key)")
    return parts[0], int(parts[1]), parts[2]


@contextlib.contextmanager
def _quiet_metaschedule() -> Any:
    """MetaSchedule's scheduler prints a table per batch at INFO: keep it to warnings unless NIR_DEBUG."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    old = logger.level
    if not os.environ.get("NIR_DEBUG"):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def tune(program: Program, target: Target | str, *, work_dir: str | os.PathLike, trials: int | None = 64,
         seconds: float | None = None, rpc: str | None = None, seed: int = 0,
         inputs: Sequence[np.ndarray] | None = None, executable: Any = None,
         log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Search schedules for ``program``'s tasks with MetaSchedule into the JSON database in ``work_dir``.

    Budget: ``seconds`` of wall-clock time, or ``trials`` measured candidates in all (``seconds`` wins
    when both are given), split over the tasks by their share of the run time. ``executable`` (a
    default-scheduled build of ``program``) and ``inputs`` let the shares come from a profile; without
    them they come from estimated FLOPs. Tasks finished by an earlier run with at least this run's share
    are skipped. Returns a summary: tasks tuned and skipped, trials, seconds.

    The budget counts from this call (task extraction and profiling included) and is hard: a task's
    search is cut at its deadline even in the middle of a batch (`deadline`), so the call returns within
    about one candidate's build or run time of ``seconds``. A killed run leaves MetaSchedule's database
    in ``work_dir`` (a half-written last line is dropped on the next start) and the finished tasks in
    ``nir_tasks.json``; the next run skips those and starts the interrupted one again."""
    start = time.monotonic()
    work_dir = pathlib.Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    target = parse_target(target)
    task_deadline = Deadline()  # set per task; the cost model, builder and runner stop working past it
    builder = PoolBuilder(fast_build if target.kind == "llvm" else "s_tir.meta_schedule.builder.default_build",
                          deadline=task_deadline)
    builder.start()  # its workers and the runner's start while the tasks are extracted and profiled
    background = concurrent.futures.ThreadPoolExecutor(1)
    runner = background.submit(_runner, rpc)
    try:
        return _tune(program, target, work_dir, trials, seconds, seed, inputs, executable, log, start,
                     builder, runner, task_deadline)
    finally:
        builder.close()
        background.shutdown(wait=False)  # a runner still starting when the budget ran out is not waited for


def _tune(program: Program, target: Target, work_dir: pathlib.Path, trials: int | None, seconds: float | None,
          seed: int, inputs: Sequence[np.ndarray] | None, executable: Any, log: Callable[[str], None],
          start: float, builder: PoolBuilder, runner_started: Any, task_deadline: Deadline) -> dict[str, Any]:
    ttarget = tvm_target(target)
    register_tensor_intrinsics(target.kind)
    with _BUILD_LOCK, ttarget:  # lowering uses TVM's process-global BlockBuilder stack, as build() does
        legal = relax.get_pipeline("zero")(relax_module(program, target))  # as build() lowers it
    tasks = [t for t in ms.relax_integration.extract_tasks(legal, ttarget)
             if not t.mod.attrs.get("tirx.is_scheduled", False)]
    unsearchable = [t.task_name for t in tasks if not _searchable(t)]
    if unsearchable:
        log(f"[tvm] {len(unsearchable)} task(s) take scalar arguments, which MetaSchedule cannot measure "
            f"(a scan's per-step slice); they keep nir's schedule: {', '.join(unsearchable)}")
        tasks = [t for t in tasks if _searchable(t)]
    summary: dict[str, Any] = {"tasks": len(tasks), "tuned": 0, "skipped": 0, "failed": 0, "trials": 0,
                               "estimate": None}
    if not tasks:
        log("[tvm] no tunable tasks")
        return summary
    profile = None
    if executable is not None and inputs is not None:
        try:
            profile = profile_primfuncs(executable, inputs)
        except Exception as e:  # noqa: BLE001 - the FLOPs estimate still works
            log(f"[tvm] profiling failed ({type(e).__name__}: {e}); estimating the tasks' shares from FLOPs")
    shares, summary["estimate"] = task_shares(tasks, profile)
    budget_s = None if seconds is None else max(0.0, seconds - (time.monotonic() - start))
    plan = plan_tasks(shares, trials=None if budget_s is not None else trials, seconds=budget_s)
    covered = sum(shares[i] for i in plan.order)
    log(f"[tvm] {len(tasks)} tasks; tuning {len(plan.order)} covering {covered:.0%} of the run time "
        f"(shares from {summary['estimate']}); budget "
        + (f"{budget_s:.0f} s" if budget_s is not None else f"{trials} trials"))
    done = _Done(work_dir)
    finished = done.read()
    for note in repair_database(work_dir):
        log(f"[tvm] {note}")
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    cost_model = DeadlineCostModel(ms.cost_model.XGBModel(num_tuning_cores=max(1, len(os.sched_getaffinity(0)))),
                                   task_deadline)
    runner = None
    deadline = None if budget_s is None else start + seconds
    with _quiet_metaschedule():
        for n, (i, frac) in enumerate(zip(plan.order, plan.fractions), 1):
            task = tasks[i]
            key = str(structural_hash(task.dispatched[0]))
            cap = 10_000 if budget_s is not None else max(MIN_TRIALS_PER_TASK, round((trials or 0) * frac))
            head = f"[tvm] task {n}/{len(plan.order)} {task.task_name} ({shares[i]:.1%} of run time)"
            if _finished(finished.get(key), None if budget_s is None else budget_s * frac, cap):
                log(f"{head}: done in an earlier run ({finished[key].get('trials')} trials), skipped")
                summary["skipped"] += 1
                continue
            if runner is None:
                try:
                    runner = DeadlineRunner(runner_started.result(timeout=None if deadline is None else
                                                                  max(0.0, deadline - time.monotonic())),
                                            task_deadline)
                except concurrent.futures.TimeoutError:
                    log(f"{head}: out of time (the measuring process is still starting), not tuned")
                    break
            task_s = None
            if deadline is not None:  # this task's share of what is left (early finishers leave more)
                left = deadline - time.monotonic()
                task_s = left * frac / (sum(plan.fractions[n - 1:]) or 1.0)
                if task_s < MIN_TASK_SECONDS / 2:
                    log(f"{head}: out of time, not tuned")
                    continue
            log(f"{head}: " + (f"{task_s:.0f} s" if task_s is not None else f"{cap} trials"))
            t0 = time.monotonic()
            task_deadline.at = None if task_s is None else min(t0 + task_s, deadline or float("inf"))
            try:
                progress, cut = _run_task(task, work_dir, seed + i, cap, task_s, builder, runner, database,
                                          cost_model, task_deadline, log)
            except Exception as e:  # noqa: BLE001 - one task MetaSchedule cannot search must not lose the rest
                log(f"{head}: MetaSchedule failed on it ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                    "it keeps nir's schedule")
                summary["failed"] += 1
                continue
            used = time.monotonic() - t0
            exhausted = not cut and progress.trials < cap and (task_s is None or used < 0.8 * task_s)
            done.mark(key, {"name": task.task_name, "trials": progress.trials, "seconds": round(used, 1),
                            "best_us": None if progress.best_s == float("inf") else progress.best_s * 1e6,
                            "exhausted": exhausted})
            summary["tuned"] += 1
            summary["trials"] += progress.trials
            best = ("no valid candidate" if progress.best_s == float("inf")
                    else f"best {progress.best_s * 1e6:.1f} us")
            log(f"{head}: {progress.trials} trials in {used:.0f} s, {best}" + (", cut at its deadline" if cut else ""))
    summary["seconds"] = round(time.monotonic() - start, 1)
    return summary


def _searchable(task: Any) -> bool:
    """Whether MetaSchedule can measure ``task``: every parameter of its PrimFunc is a buffer. Its
    argument builder (``ArgInfo``) refuses scalar parameters, as in the dynamic slice of a scan's step
    (``x[t]`` with the loop counter ``t`` passed in)."""
    return all(isinstance(p.ty, tvm.tirx.BufferType) for f in task.dispatched[0].functions.values()
               if isinstance(f, tvm.tirx.PrimFunc) for p in f.params)


def _finished(old: dict[str, Any] | None, planned_s: float | None, cap: int) -> bool:
    """Whether an earlier run's entry for a task covers this run's budget for it."""
    if old is None:
        return False
    if old.get("exhausted"):
        return True
    if planned_s is not None:
        return old.get("seconds", 0) >= 0.8 * planned_s
    return old.get("trials", 0) >= cap


SHORT_TASK_S = 600.0  # below this budget a task searches with a smaller population (see _search_strategy)


def _search_strategy(seconds: float | None) -> Any:
    """MetaSchedule's evolutionary search, sized to the task's time budget. The scheduler can only stop
    between batches, and one batch's candidate generation (a population of 512 sampled and mutated 4
    times, each scored by the cost model) took over 10 minutes on a large fused task of a train step
    (lenet5_train), far past a 2-minute budget. A short budget gets a population of 64 evolved twice:
    batches of seconds, so the deadline holds, and more of them."""
    if seconds is None or seconds >= SHORT_TASK_S:
        return "evolutionary"
    return ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=2)


def _space_without_epilogue_fusion() -> Any:
    """MetaSchedule's LLVM design space with its tiling rule's write reuse off: a matmul's or conv's
    elementwise consumer is not moved into its tiles. The default rule moves the consumer in with
    ``reverse_compute_at``, which fails (a ScheduleError that ends the whole search) when that consumer also
    reads blocks computed outside those tiles: in a train step, the gradient of gelu is fused into a
    matmul's function beside its own erf and exp blocks."""
    rules = [ms.schedule_rule.MultiLevelTiling(structure="SSRSRS", max_innermost_factor=64)
             if isinstance(r, ms.schedule_rule.MultiLevelTiling) else r for r in ms.ScheduleRule.create("llvm")]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="llvm", mutator_probs="llvm")


def _is_schedule_error(e: BaseException) -> bool:
    """Whether ``e`` is a schedule primitive's refusal (it may come back through TVM's FFI re-typed)."""
    return "ScheduleError" in f"{type(e).__name__}: {e}"


def _run_task(task: Any, work_dir: pathlib.Path, seed: int, cap: int, seconds: float | None,
              builder: Any, runner: Any, database: Any, cost_model: Any, deadline: Deadline,
              log: Callable[[str], None] = lambda m: None) -> tuple[_Progress, bool]:
    """Search one task until ``deadline`` (which the builder, runner and cost model share); returns its
    progress and whether the deadline cut a batch short. Where MetaSchedule's default design space cannot
    be built for the task (`_space_without_epilogue_fusion`), the search runs in the space without
    epilogue fusion."""
    try:
        return _search(task, "post-order-apply", work_dir, seed, cap, seconds, builder, runner, database,
                       cost_model, deadline)
    except Exception as e:  # noqa: BLE001 - TVM's FFI re-types what a schedule rule raised
        if not _is_schedule_error(e):
            raise
        log(f"[tvm]   MetaSchedule's default space fails on this task ({str(e).splitlines()[0][:120]}); "
            "searching without fusing its epilogue into the tiles")
    return _search(task, _space_without_epilogue_fusion(), work_dir, seed, cap, seconds, builder, runner,
                   database, cost_model, deadline)


def _search(task: Any, space: Any, work_dir: pathlib.Path, seed: int, cap: int, seconds: float | None,
            builder: Any, runner: Any, database: Any, cost_model: Any, deadline: Deadline) -> tuple[_Progress, bool]:
    """One MetaSchedule search of ``task`` in design space ``space`` (see `_run_task`)."""
    context = ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator=space,
                             search_strategy=_search_strategy(seconds), task_name=task.task_name,
                             logger=_task_logger(work_dir, task.task_name), rand_state=seed,
                             num_threads="physical").clone()
    progress = _Progress()
    per_iter = min(32, cap) if seconds is None or seconds >= 60 else 16
    try:
        _DeadlineScheduler(deadline).tune(
            tasks=[context], task_weights=[float(task.weight)], max_trials_global=cap, max_trials_per_task=cap,
            num_trials_per_iter=per_iter, builder=builder, runner=runner,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress],
            database=database, cost_model=cost_model)
    except Exception as e:  # noqa: BLE001 - DeadlineReached comes back through TVM's FFI, maybe re-typed
        if not is_deadline_error(e):
            raise
        return progress, True
    return progress, deadline.passed()


def measure_remote(executable: Any, inputs: Sequence[np.ndarray], rpc: str, number: int = 10,
                   repeat: int = 5) -> Any:
    """Time ``executable`` on a device of the RPC tracker ``HOST:PORT:KEY``: the library is exported
    here, uploaded, and timed there by TVM's time_evaluator (synchronous: the device is waited for)."""
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
    args = [to_tvm(a, s, i, tvm.cpu()) for i, (a, s) in enumerate(zip(inputs, executable.inputs))]
    args = [tvm.runtime.tensor(a.numpy(), dev) for a in args]
    res = vm.time_evaluator("main", dev, number=number, repeat=repeat)(*args)
    return Timing.of([float(r) * 1e3 for r in res.results])
