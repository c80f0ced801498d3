"""Timings that say how much CPU other processes took while they ran (`OtherLoad`), and a tuner that
times again when that was more than `BUSY_CORES` and warns when it stayed so."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import nir
import nir.tune.search as search
from nir.tune.measure import BUSY_CORES, OtherLoad, Timing, measure_interleaved

needs_proc_stat = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def busy_process():
    """Another process spinning on a CPU for the length of the test."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)  # started and spinning
    yield proc
    proc.kill()
    proc.wait()


@needs_proc_stat
def test_other_load_counts_a_busy_process(busy_process) -> None:
    with OtherLoad() as load:
        time.sleep(1.0)
    assert load.cores is not None and load.cores > 0.6, load.cores


@needs_proc_stat
def test_other_load_leaves_out_this_processs_own_cpu() -> None:
    with OtherLoad() as load:
        _spin(1.0)  # one core busy, all of it this process's
    assert load.cores is not None and load.cores < 0.8, load.cores


@needs_proc_stat
def test_an_interleaved_timing_carries_the_load_beside_it(busy_process) -> None:
    times = measure_interleaved({"a": lambda: _spin(1e-3), "b": lambda: _spin(2e-3)}, min_time_s=0.5)
    assert {t.others_cores for t in times.values()} == {times["a"].others_cores}
    assert times["a"].contended and times["a"].others_cores > BUSY_CORES


def _timing(ms: float, others: float) -> Timing:
    return Timing(ms, ms, ms, ms, 7, others)


def test_the_tuner_times_again_while_others_take_cpu_and_keeps_the_least_disturbed(monkeypatch) -> None:
    loads = iter([1.5, 0.9, 1.2])  # disturbed, less, more: the second is kept after two retimes
    calls, logged = [], []

    def fake(built, **kw):
        others = next(loads)
        calls.append(others)
        return {k: _timing(1.0 + others, others) for k in built}
    monkeypatch.setattr(search, "measure_interleaved", fake)
    monkeypatch.setattr(search, "RETIME_PAUSE_S", 0.0)
    bench = search._Bench(None, "tvm", None, [], None, 0.1, logged.append)
    times = bench.time({"untuned": None, "searched": None})
    assert calls == [1.5, 0.9, 1.2] and times["untuned"].others_cores == 0.9
    assert sum("timing again" in m for m in logged) == 2


def test_the_tuner_times_once_on_a_quiet_machine(monkeypatch) -> None:
    calls = []

    def fake(built, **kw):
        calls.append(1)
        return {k: _timing(1.0, 0.05) for k in built}
    monkeypatch.setattr(search, "measure_interleaved", fake)
    search._Bench(None, "xla", None, [], None, 0.1).time({"untuned": None})
    assert calls == [1]


def scale(x):
    return (x * 2.0 + 1.0).relu()


@needs_proc_stat
def test_a_tuning_report_says_when_other_processes_disturbed_it(tmp_path, monkeypatch, busy_process) -> None:
    monkeypatch.setattr(search, "RETIME_PAUSE_S", 0.0)
    logged: list[str] = []
    report = search.tune_program(nir.trace(scale, nir.spec(N=64, C=64)).program, "llvm", tmp_path,
                                 backends=["reference"], trials=0, min_time_s=0.3, log=logged.append)
    (res,) = report.results
    assert res.error is None and res.others_cores is not None and res.others_cores > BUSY_CORES
    assert report.to_json()["backends"][0]["others_cores"] == res.others_cores
    assert any("timing again" in m for m in logged)


def test_timings_without_the_machines_counters_are_not_called_disturbed() -> None:
    t = Timing.of(list(np.linspace(1.0, 2.0, 7)))
    assert t.others_cores is None and not t.contended


def test_a_timing_reports_its_median_min_and_load_as_json() -> None:
    t = Timing.of([3.0, 1.0, 2.0], others_cores=0.5)
    assert t.to_json() == {"ms": 2.0, "min_ms": 1.0, "others_cores": 0.5}


def test_the_backends_winners_are_compared_in_a_longer_timing_than_each_candidate(tmp_path, monkeypatch) -> None:
    seen = []

    def spy(built, **kw):
        seen.append((tuple(built), kw["min_time_s"], kw["rounds"]))
        return {k: _timing(1.0, 0.0) for k in built}
    monkeypatch.setattr(search, "measure_interleaved", spy)
    program = nir.trace(scale, nir.spec(N=64)).program
    search.tune_program(program, "llvm", tmp_path, backends=["xla", "reference"], min_time_s=0.1)
    final = [s for s in seen if set(s[0]) == {"xla", "reference"}]
    assert final == [(("xla", "reference"), search.FINAL_TIME * 0.1, search.FINAL_ROUNDS)]
    assert all(r < search.FINAL_ROUNDS for names, _, r in seen if set(names) != {"xla", "reference"})
