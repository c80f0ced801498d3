"""The hard deadline of a TVM schedule search (backends/tvm/deadline.py) and the repair of a database
left half-written by a killed run. Fast: the wrappers alone, and one search cut before its first batch."""

from __future__ import annotations

import importlib
import json
import time

import numpy as np
import pytest

pytest.importorskip("tvm")

import nir  # noqa: E402
from nir.backends.tvm.deadline import (DEADLINE_MESSAGE, Deadline, DeadlineCostModel, DeadlineReached,  # noqa: E402
                                       DeadlineRunner, repair_database)

tune_mod = importlib.import_module("nir.backends.tvm.tune")


class _Inner:
    """A stand-in cost model / runner that records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def update(self, context, candidates, results) -> None:
        self.calls.append("update")

    def predict(self, context, candidates):
        self.calls.append("predict")
        return np.zeros(len(candidates))

    def run(self, inputs):
        self.calls.append("run")
        raise AssertionError("not reached in these tests")


def test_past_the_deadline_the_cost_model_raises_and_stops_training() -> None:
    inner = _Inner()
    model = DeadlineCostModel(inner, Deadline(time.monotonic() - 1))._inst  # the Python side, called directly
    model.update(None, [], [])
    with pytest.raises(Exception, match=DEADLINE_MESSAGE):
        model.predict(None, [])
    assert inner.calls == []


def test_before_the_deadline_the_cost_model_is_the_inner_one() -> None:
    inner = _Inner()
    model = DeadlineCostModel(inner, Deadline(time.monotonic() + 60))._inst
    model.update(None, [], [])
    assert len(model.predict(None, [])) == 0 and inner.calls == ["update", "predict"]


def test_past_the_deadline_the_runner_fails_candidates_without_running_them() -> None:
    inner = _Inner()
    (future,) = DeadlineRunner(inner, Deadline(time.monotonic() - 1))._inst.run([object()])
    assert future.done() and DEADLINE_MESSAGE in str(future.result().error_msg) and inner.calls == []


def test_past_the_deadline_the_builder_fails_candidates_without_building_them() -> None:
    builder = tune_mod.PoolBuilder(tune_mod.fast_build, deadline=Deadline(time.monotonic() - 1))
    try:
        (res,) = builder._inst.build([object()])
        assert DEADLINE_MESSAGE in str(res.error_msg) and builder._pool is None  # no worker was started
    finally:
        builder.close()


def test_a_search_past_its_deadline_ends_at_its_first_batch(tmp_path) -> None:
    """DeadlineReached, raised inside MetaSchedule's candidate generation, comes back through TVM's FFI
    and ends the task; nothing is built or run."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from nir.backends.tvm.build import _BUILD_LOCK, relax_module, tvm_target
    from nir.target import parse_target
    program = nir.trace(lambda a, b: nir.contract(a, b, over="K"), nir.spec(M=16, K=16), nir.spec(K=16, N=16)).program
    target = parse_target("llvm")
    tune_mod.register_tensor_intrinsics("llvm")
    with _BUILD_LOCK, tvm_target(target):
        legal = relax.get_pipeline("zero")(relax_module(program, target))
    (task,) = ms.relax_integration.extract_tasks(legal, tvm_target(target))
    deadline = Deadline(time.monotonic() - 1)
    inner = _Inner()
    builder = tune_mod.PoolBuilder(tune_mod.fast_build, deadline=deadline)
    t0 = time.monotonic()
    progress, cut = tune_mod._run_task(task, tmp_path, 0, 64, 30.0, builder, DeadlineRunner(inner, deadline),
                                       ms.database.JSONDatabase(work_dir=str(tmp_path)),
                                       DeadlineCostModel(_Inner(), deadline), deadline)
    builder.close()
    assert cut and progress.trials == 0 and inner.calls == [] and builder._pool is None
    assert time.monotonic() - t0 < 20  # no batch was built or measured (a generous bound for a loaded CI box)


def test_deadline_reached_is_recognised_after_the_ffi_retypes_it() -> None:
    from nir.backends.tvm.deadline import is_deadline_error
    assert is_deadline_error(DeadlineReached()) and is_deadline_error(RuntimeError(f"x {DEADLINE_MESSAGE} y"))
    assert not is_deadline_error(RuntimeError("build failed"))


RECORD = {"some": "record", "run_secs": [1e-5]}


def test_a_half_written_last_line_is_dropped_on_resume(tmp_path) -> None:
    good = json.dumps(RECORD)
    (tmp_path / "database_tuning_record.json").write_text(good + "\n" + good[:17])
    (tmp_path / "database_workload.json").write_text('["a", "b"]\n["c", ')
    notes = repair_database(tmp_path)
    assert len(notes) == 2
    assert (tmp_path / "database_tuning_record.json").read_text() == good + "\n"
    assert (tmp_path / "database_workload.json").read_text() == '["a", "b"]\n'


def test_a_half_written_line_that_later_lines_were_glued_onto_is_dropped(tmp_path) -> None:
    good = json.dumps(RECORD)
    (tmp_path / "database_tuning_record.json").write_text(good[:10] + good + "\n" + good + "\n")
    repair_database(tmp_path)
    assert (tmp_path / "database_tuning_record.json").read_text() == good + "\n"


def test_an_intact_database_is_left_alone(tmp_path) -> None:
    text = json.dumps(RECORD) + "\n"
    (tmp_path / "database_tuning_record.json").write_text(text)
    before = (tmp_path / "database_tuning_record.json").stat().st_mtime_ns
    assert repair_database(tmp_path) == []
    assert (tmp_path / "database_tuning_record.json").stat().st_mtime_ns == before


def test_a_repaired_database_is_read_by_metaschedule(tmp_path) -> None:
    from tvm.s_tir import meta_schedule as ms
    ms.database.JSONDatabase(work_dir=str(tmp_path))  # creates the (empty) files
    with open(tmp_path / "database_workload.json", "a") as f:
        f.write('["0x1234", ')  # killed while writing
    repair_database(tmp_path)
    assert len(ms.database.JSONDatabase(work_dir=str(tmp_path))) == 0
