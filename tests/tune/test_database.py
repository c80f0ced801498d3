"""The tuning database: round trip, merging, concurrency, kills mid-run, and bad files."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nir
from nir.tune.database import TuningDatabase, TuningDatabaseWarning, TuningRecord, signature_of


def program(n: int = 4):
    return nir.trace(lambda a: a.exp().sum("C"), nir.spec(N=n, C=3)).program


def record(p, backend="reference", tuned=1.0, **kw) -> TuningRecord:
    return TuningRecord(fingerprint=p.fingerprint(), signature=signature_of(p), target="llvm", backend=backend,
                        backend_version="v1", config={"layout": "logical", "layouts": {}, "options": {}},
                        times_ms={"untuned": 2.0, "tuned": tuned}, candidates=[{"layout": "logical", "ms": tuned}], **kw)


def test_round_trip(tmp_path) -> None:
    db = TuningDatabase(tmp_path)
    p = program()
    path = db.put(record(p))
    assert path.is_file() and json.loads(path.read_text())["format"] == "nir-tuning-record"
    (got,) = db.lookup(p, "llvm")
    assert got == record(p, created=got.created)


def test_lookup_is_keyed_by_program_and_target(tmp_path) -> None:
    db = TuningDatabase(tmp_path)
    db.put(record(program(4)))
    assert db.lookup(program(5), "llvm") == []
    assert db.lookup(program(4), "cuda") == []


def test_faster_record_wins_and_candidates_merge(tmp_path) -> None:
    db = TuningDatabase(tmp_path)
    p = program()
    db.put(record(p, tuned=1.0))
    slow = record(p, tuned=3.0)
    slow.candidates = [{"layout": "channels_last", "ms": 3.0}]
    db.put(slow)
    (got,) = db.lookup(p, "llvm")
    assert got.times_ms["tuned"] == 1.0
    assert {c["layout"] for c in got.candidates} == {"logical", "channels_last"}


def test_lookup_sorts_backends_fastest_first(tmp_path) -> None:
    db = TuningDatabase(tmp_path)
    p = program()
    db.put(record(p, backend="tvm", tuned=2.0))
    db.put(record(p, backend="xla", tuned=1.0))
    assert [r.backend for r in db.lookup(p, "llvm")] == ["xla", "tvm"]


@pytest.mark.parametrize("content,reason", [
    ("{not json", "Expecting property name"),
    ('{"format": "something-else"}', "not a nir tuning record"),
    ('{"format": "nir-tuning-record", "version": 1}', "format version 1"),
    ('{"format": "nir-tuning-record", "version": 2, "backend": "x"}', "missing fields"),
])
def test_bad_files_are_reported_and_skipped(tmp_path, content, reason) -> None:
    db = TuningDatabase(tmp_path)
    p = program()
    db.put(record(p))
    (tmp_path / "records" / "bad.json").write_text(content)
    with pytest.warns(TuningDatabaseWarning, match=reason):
        found = db.lookup(p, "llvm")
    assert len(found) == 1


def test_truncated_record_is_skipped(tmp_path) -> None:
    db = TuningDatabase(tmp_path)
    p = program()
    path = db.put(record(p))
    path.write_text(path.read_text()[:40])
    with pytest.warns(TuningDatabaseWarning, match="skipping"):
        assert db.lookup(p, "llvm") == []


def _writer(path: str, backend: str, n: int) -> None:
    db = TuningDatabase(path)
    for i in range(n):
        db.put(record(program(i + 2), backend=backend, tuned=float(i + 1)))


def test_two_concurrent_runs_keep_all_records(tmp_path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), b, 15)) for b in ("tvm", "xla")]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    recs = TuningDatabase(tmp_path).records()
    assert len(recs) == 30 and {r.backend for r in recs} == {"tvm", "xla"}


def test_a_run_killed_at_any_moment_leaves_every_complete_record(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_database import _writer
        _writer({str(tmp_path)!r}, "xla", 10_000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    def complete() -> int:  # records renamed into place (temporary files start with .tmp-)
        return sum(1 for p in (tmp_path / "records").glob("*.json") if not p.name.startswith(".tmp-"))
    while time.time() < deadline and complete() < 20:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not a single unreadable file
        recs = TuningDatabase(tmp_path).records()
    assert len(recs) >= 20
