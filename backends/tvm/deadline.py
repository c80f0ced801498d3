"""A hard deadline for one MetaSchedule task: wrappers of the cost model, builder and runner that stop
working once the task's time is up, and the repair of a database that a killed run left half-written.

MetaSchedule's task scheduler can only be asked between batches of candidates whether to go on
(`tune._DeadlineScheduler`), and one batch (candidate generation scored by the cost model, building,
running, training the cost model) can take minutes on a large task. Past the deadline:
- `DeadlineCostModel.predict` raises `DeadlineReached`, which ends the candidate generation in
  progress and, through the scheduler, the task (`tune._run_task` catches it);
  `DeadlineCostModel.update` (XGBoost training) is skipped;
- `tune.PoolBuilder` (given the deadline) returns "deadline" failures for the candidates not built yet;
- `DeadlineRunner` returns "deadline" failures for the candidates not run yet, and stops waiting for
  one that is still running remotely.
MetaSchedule records failed candidates as failed (their run time is unknown), so nothing wrong is
learnt from them; what was measured before the deadline stays in the database.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import time
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

__all__ = ["DeadlineReached", "Deadline", "DeadlineCostModel", "DeadlineRunner",
           "repair_database", "is_deadline_error", "DEADLINE_MESSAGE"]

DEADLINE_MESSAGE = "nir: the task's tuning time is up"

_log = logging.getLogger("nir.tune.tvm")


class DeadlineReached(RuntimeError):
    """Raised inside MetaSchedule's search once a task's time is up, to end it at once."""

    def __init__(self) -> None:
        super().__init__(DEADLINE_MESSAGE)


def is_deadline_error(e: BaseException) -> bool:
    """Whether ``e`` (as it comes back through TVM's FFI, possibly re-typed) is a `DeadlineReached`."""
    return isinstance(e, DeadlineReached) or DEADLINE_MESSAGE in str(e)


class Deadline:
    """A point in ``time.monotonic()`` (None: never), settable per task."""

    def __init__(self, at: float | None = None) -> None:
        self.at = at

    def passed(self) -> bool:
        """Whether the deadline is set and past."""
        return self.at is not None and time.monotonic() >= self.at

    def left(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())


@derived_object
class DeadlineCostModel(ms.cost_model.PyCostModel):
    """``inner`` (e.g. an XGBModel) that stops training and raises `DeadlineReached` from `predict`
    once ``deadline`` has passed. Training that would not end before the deadline (judged by the last
    training's duration, which grows with the data) is skipped too: it cannot be interrupted."""

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        super().__init__()
        self.inner, self.deadline = inner, deadline
        self.last_update_s = 0.0

    def load(self, path: str) -> None:
        """Load the inner model."""
        self.inner.load(path)

    def save(self, path: str) -> None:
        """Save the inner model."""
        self.inner.save(path)

    def update(self, context: Any, candidates: list[Any], results: list[Any]) -> None:
        """Train the inner model, unless the time is up or would be before the training ends."""
        left = self.deadline.left()
        if left is not None and left <= 1.5 * self.last_update_s:
            return
        t0 = time.monotonic()
        self.inner.update(context, candidates, results)
        self.last_update_s = time.monotonic() - t0

    def predict(self, context: Any, candidates: list[Any]) -> Any:
        """The inner model's scores; raises `DeadlineReached` once the time is up."""
        if self.deadline.passed():
            raise DeadlineReached()
        return self.inner.predict(context, candidates)


def _failed_build(n: int) -> list[Any]:
    return [ms.builder.BuilderResult(None, DEADLINE_MESSAGE) for _ in range(n)]


@derived_object
class DeadlineRunnerFuture(ms.runner.PyRunnerFuture):
    """A runner future that gives up (a "deadline" failure) once the deadline has passed."""

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        super().__init__()
        self.inner, self.deadline = inner, deadline

    def done(self) -> bool:
        """Done when the inner future is, or when the time is up."""
        return bool(self.inner.done()) or self.deadline.passed()

    def result(self) -> Any:
        """The inner result, or a failure if it is not there when the time is up."""
        if not self.inner.done() and self.deadline.passed():
            return ms.runner.RunnerResult(None, DEADLINE_MESSAGE)
        return self.inner.result()


@derived_object
class DeadlineRunner(ms.runner.PyRunner):
    """``inner`` runner, given one candidate at a time, that fails the candidates left once ``deadline``
    has passed (a local runner measures synchronously, so a batch is checked per candidate)."""

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        super().__init__()
        self.inner, self.deadline = inner, deadline
        self.last_run_s = 0.0

    def run(self, runner_inputs: list[Any]) -> list[Any]:
        """Futures of ``runner_inputs``; failed ones past the deadline (or so close to it that the last
        candidate's time would not fit)."""
        out = []
        for inp in runner_inputs:
            left = self.deadline.left()
            if left is not None and left <= self.last_run_s:
                out.append(LocalRunnerFuture(res=None, error_message=DEADLINE_MESSAGE))
                continue
            t0 = time.monotonic()
            (fut,) = self.inner.run([inp])
            self.last_run_s = time.monotonic() - t0
            out.append(DeadlineRunnerFuture(fut, self.deadline))
        return out


def repair_database(work_dir: str | os.PathLike) -> list[str]:
    """Drop the lines of MetaSchedule's JSON database files in ``work_dir`` that do not parse (a run
    killed while appending leaves its last line half-written, and a later append would glue onto it);
    returns a line per repaired file. Workload lines are only dropped from the end, since tuning records
    refer to workloads by line number; a broken workload line elsewhere is left for MetaSchedule to
    report."""
    from nir.tune.database import write_atomic
    notes = []
    for name in ("database_workload.json", "database_tuning_record.json"):
        path = pathlib.Path(work_dir) / name
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        ok = [_parses(line) for line in lines]
        if all(ok) and (not text or text.endswith("\n")):
            continue
        if name == "database_workload.json":
            keep = lines[:]
            while keep and not _parses(keep[-1]):
                keep.pop()
        else:
            keep = [line for line, good in zip(lines, ok) if good]
        dropped = len(lines) - len(keep)
        write_atomic(path, "".join(line + "\n" for line in keep))
        notes.append(f"{path}: dropped {dropped} unreadable line(s) (a run was interrupted while writing)")
    return notes


def _parses(line: str) -> bool:
    if not line.strip():
        return True
    try:
        json.loads(line)
        return True
    except ValueError:
        return False
