"""How a TVM schedule-search budget is split over a program's tasks, and how a second run resumes: pure
planning on made-up shares, and one real search of a two-task program with a tiny budget."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tvm")

import nir  # noqa: E402
from nir.backends.tvm.tune import (MIN_TASK_SECONDS, MIN_TRIALS_PER_TASK, PROGRESS_FILE, plan_tasks,  # noqa: E402
                                   task_shares)


def test_plan_takes_the_heaviest_tasks_first_until_most_of_the_run_time_is_covered() -> None:
    plan = plan_tasks([0.05, 0.6, 0.004, 0.3, 0.046], seconds=1000)
    assert plan.order == (1, 3, 0, 4)  # the 0.4% task is left out: the others cover 99.6%
    assert plan.fractions == pytest.approx([0.6 / 0.996, 0.3 / 0.996, 0.05 / 0.996, 0.046 / 0.996])


def test_plan_gives_each_task_at_least_a_useful_amount_of_time() -> None:
    plan = plan_tasks([0.25] * 4, seconds=2.5 * MIN_TASK_SECONDS)
    assert len(plan.order) == 2 and sum(plan.fractions) == pytest.approx(1.0)


def test_plan_gives_each_task_at_least_a_few_trials() -> None:
    assert len(plan_tasks([0.25] * 4, trials=2 * MIN_TRIALS_PER_TASK).order) == 2


class _Task:
    def __init__(self, name: str, weight: int) -> None:
        self.task_name, self.weight, self.dispatched = name, weight, [None]


def test_shares_come_from_the_profile_per_call_times_weight() -> None:
    tasks = [_Task("conv", 2), _Task("add", 1)]
    profile = {"conv": (0.006, 2), "add": (0.002, 1), "vm.builtin.alloc": (0.001, 5)}
    shares, source = task_shares(tasks, profile)
    assert source == "profile" and shares == pytest.approx([0.75, 0.25])


def mlp(x, w1, w2):
    return nir.contract(nir.contract(x, w1, over="D").relu(), w2, over="H")


SPECS = (nir.spec(N=32, D=64), nir.spec(D=64, H=128), nir.spec(H=128, O=16))


def test_a_second_run_skips_finished_tasks_and_tunes_the_interrupted_one(tmp_path) -> None:
    from nir.backends.tvm.tune import tune
    program = nir.trace(mlp, *SPECS).program
    lines: list[str] = []
    first = tune(program, "llvm", work_dir=tmp_path, trials=2 * MIN_TRIALS_PER_TASK, log=lines.append)
    assert first["tuned"] == 2 and first["skipped"] == 0
    assert sum("trials in" in line for line in lines) == 2  # a progress line per finished task
    done = json.loads((tmp_path / PROGRESS_FILE).read_text())
    del done[next(iter(done))]  # as if the run had been killed during that task
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(done))
    second = tune(program, "llvm", work_dir=tmp_path, trials=2 * MIN_TRIALS_PER_TASK)
    assert second["tuned"] == 1 and second["skipped"] == 1


def test_a_seconds_budget_holds_whatever_the_tasks(tmp_path, monkeypatch) -> None:
    """A budget of a few seconds (every task admitted to the plan): tune() returns within it plus a
    small margin, whether the deadline falls while the worker processes start, in a batch or between."""
    import importlib
    import time

    tune_mod = importlib.import_module("nir.backends.tvm.tune")
    monkeypatch.setattr(tune_mod, "MIN_TASK_SECONDS", 1.0)
    program = nir.trace(mlp, *SPECS).program
    budget, margin = 8.0, 5.0
    t0 = time.monotonic()
    summary = tune_mod.tune(program, "llvm", work_dir=tmp_path, seconds=budget)
    assert time.monotonic() - t0 < budget + margin, summary
