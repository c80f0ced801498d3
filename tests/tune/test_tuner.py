"""The tuner with tiny budgets: records written, applied by nir.compile without re-tuning, `auto`
choosing by record, layouts changing the lowered program but not its results, and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nir
from nir.tune.cli import main as tune_main
from nir.tune.search import TuningError, tune_program
from nir.tune.space import apply_layouts, layout_candidates
from nir.tune.database import TuningDatabase


def conv(x, w):
    return nir.conv2d(x, w, padding=1).relu().sum(("H", "W"))


SPECS = (nir.spec(N=1, C=4, H=8, W=8), nir.spec(O=4, C=4, H=3, W=3))


def conv_program():
    return nir.trace(conv, *SPECS).program


def inputs():
    rng = np.random.default_rng(0)
    return [nir.tensor(rng.standard_normal(s.shape).astype(np.float32), names=s.names) for s in SPECS]


def test_layout_candidates_for_a_conv() -> None:
    names = [c.name for c in layout_candidates(conv_program())]
    assert names[0] == "logical" and "channels_last" in names


def test_layouts_change_the_program_but_not_its_results() -> None:
    p = conv_program()
    ins = [t.numpy() for t in inputs()]
    want = nir.interpret(p, *ins)
    for cand in layout_candidates(p)[1:]:
        q = nir.verify(apply_layouts(p, cand.layouts))
        assert q.text != p.text and q.fingerprint() == p.fingerprint()
        for be in [b for b in ("tvm", "xla") if nir.backends.installed(b)]:
            got = nir.backends.get(be).build(q, nir.parse_target("llvm"))(*ins)
            np.testing.assert_allclose(np.asarray(got[0]), want[0], rtol=1e-4, atol=1e-4)


def test_tune_writes_records_that_compile_applies(tmp_path) -> None:
    report = tune_program(conv_program(), "llvm", tmp_path, backends=["reference"], trials=0, min_time_s=0.01)
    (res,) = report.results
    assert res.error is None and res.tuned_ms <= res.untuned_ms and res.record_path
    f = nir.compile(conv, backend="reference", tuning=tmp_path)
    x, w = inputs()
    out = f(x, w)
    assert f.tuned
    np.testing.assert_allclose(out.numpy(), conv(x, w).numpy(), rtol=1e-5, atol=1e-5)


def test_missing_record_still_compiles(tmp_path) -> None:
    f = nir.compile(conv, backend="reference", tuning=tmp_path)
    x, w = inputs()
    f(x, w)
    assert not f.tuned


def test_auto_picks_the_backend_of_the_fastest_record(tmp_path) -> None:
    installed = [b for b in ("tvm", "xla") if nir.backends.installed(b)]
    if not installed:
        pytest.skip("needs a compiling backend")
    p = conv_program()
    db = TuningDatabase(tmp_path)
    from nir.tune.database import TuningRecord, signature_of
    from nir.tune.search import backend_version
    for b, ms in (("reference", 0.001), (installed[0], 5.0)):  # a (fake) record that says reference won
        db.put(TuningRecord(p.fingerprint(), signature_of(p), "llvm", b, backend_version(b),
                            {"layout": "logical", "layouts": {}, "options": {}}, {"untuned": 9.0, "tuned": ms}))
    f = nir.compile(conv, target="llvm", backend="auto", tuning=tmp_path)
    f(*inputs())
    assert f.backend == "reference"


def test_records_of_another_backend_version_are_ignored(tmp_path) -> None:
    p = conv_program()
    from nir.tune.database import TuningRecord, signature_of
    TuningDatabase(tmp_path).put(TuningRecord(p.fingerprint(), signature_of(p), "llvm", "reference", "nir-0.0.1",
                                              {"layouts": {}, "options": {}}, {"untuned": 1.0, "tuned": 0.5}))
    f = nir.compile(conv, backend="reference", tuning=tmp_path)
    f(*inputs())
    assert not f.tuned


def test_tuning_for_a_device_we_do_not_have_needs_rpc(tmp_path) -> None:
    with pytest.raises(TuningError, match="pass --rpc HOST:PORT:KEY"):
        tune_program(conv_program(), "cuda", tmp_path, backends=["xla"], trials=0)


def test_cli_tunes_a_function_and_prints_json(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "mymodel.py").write_text("import nir\ndef f(x):\n    return x.softmax('C').sum('N')\n")
    monkeypatch.chdir(tmp_path)
    code = tune_main(["mymodel:f", "--input", "x=N:4,C:8", "--db", str(tmp_path / "db"), "--backends",
                      "reference", "--trials", "0", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["winner"] == "reference" and out["backends"][0]["record_path"]
    assert tune_main(["mymodel:f", "--input", "x=N:4,C:8", "--db", str(tmp_path / "db"), "--replay"]) == 0
    assert "drift" in capsys.readouterr().out


def test_cli_input_syntax_errors(tmp_path, monkeypatch) -> None:
    (tmp_path / "m2.py").write_text("def f(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="should look like"):
        tune_main(["m2:f", "--input", "x=N32", "--db", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"give --input for \['x'\]"):
        tune_main(["m2:f", "--db", str(tmp_path)])


# --- honest figures -------------------------------------------------------------------------------

def mm(a, b):
    return nir.contract(a, b, over="K")


MM_SPECS = (nir.spec(M=384, K=384), nir.spec(K=384, N=384))  # ~0.1 GFLOP: milliseconds, not dispatch time


@pytest.mark.parametrize("backend", ["xla", "tvm"])
def test_the_tuners_figure_is_the_time_of_the_compiled_call(tmp_path, backend) -> None:
    if not nir.backends.installed(backend):
        pytest.skip(f"{backend} is not installed")
    from nir.tune.measure import measure
    target = "llvm -num-cores=1"  # one thread: a parallel kernel's time swings with the load of the machine
    rng = np.random.default_rng(0)
    a, b = (nir.tensor(rng.standard_normal(s.shape).astype(np.float32), names=s.names) for s in MM_SPECS)
    # minimums, and up to three tries, each tuning afresh so that both figures are taken under the same load
    # (a loaded shared machine moves single figures by more than 2x; under other jobs the call was once 3x
    # the figure tuned seconds before); a consistency check, not a speed assertion (XLA's figure used to be
    # its asynchronous dispatch, 100x too small, which no retry hides)
    ratios = []
    for attempt in range(3):
        db = tmp_path / str(attempt)
        report = tune_program(nir.trace(mm, *MM_SPECS).program, target, db, backends=[backend], trials=0,
                              min_time_s=0.1)
        (res,) = report.results
        assert res.error is None, res.error
        f = nir.compile(mm, target=target, backend=backend, tuning=db)
        f(a, b)
        assert f.tuned
        ratios.append(res.tuned_min_ms / measure(f, [a, b], min_time_s=0.5).min_ms)
        if 0.5 < ratios[-1] < 2.0:
            break
    assert 0.5 < ratios[-1] < 2.0, ratios


def test_the_tuners_two_thread_tvm_figure_after_a_search_is_the_time_of_the_compiled_call(tmp_path) -> None:
    # one thread per core: every kernel waits at its barriers for both threads, so anything else running
    # (a schedule search's measuring process, another job) shows at once; the tuner times its final
    # candidates after its MetaSchedule search, in the same process
    if not nir.backends.installed("tvm"):
        pytest.skip("tvm is not installed")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    from nir.tune.measure import measure
    target = "llvm -num-cores=2"
    rng = np.random.default_rng(0)
    a, b = (nir.tensor(rng.standard_normal(s.shape).astype(np.float32), names=s.names) for s in MM_SPECS)
    ratios = []
    for attempt in range(3):  # see the one-thread test: each try tunes afresh under the same load
        db = tmp_path / str(attempt)
        report = tune_program(nir.trace(mm, *MM_SPECS).program, target, db, backends=["tvm"], trials=8,
                              min_time_s=0.1)
        (res,) = report.results
        assert res.error is None and res.search and res.search["trials"] > 0, (res.error, res.search)
        f = nir.compile(mm, target=target, backend="tvm", tuning=db)
        f(a, b)
        ratios.append(res.tuned_min_ms / measure(f, [a, b], min_time_s=0.5).min_ms)
        if 0.5 < ratios[-1] < 2.0:
            break
    assert 0.5 < ratios[-1] < 2.0, ratios


def chain(x):
    for _ in range(30):
        x = (x * 1.01 + 0.5).relu()
    return x


def test_auto_picks_the_backend_the_tuner_measured_faster(tmp_path) -> None:
    # the reference backend interprets 90 numpy calls one by one; XLA runs one fused loop: >10x apart
    if not nir.backends.installed("xla"):
        pytest.skip("needs xla")
    report = tune_program(nir.trace(chain, nir.spec(N=16, C=16)).program, "llvm", tmp_path,
                          backends=["reference", "xla"], trials=0, min_time_s=0.05)
    times = {r.backend: r.tuned_ms for r in report.results}
    assert report.winner.backend == "xla" and times["reference"] > 3 * times["xla"], times
    f = nir.compile(chain, backend="auto", tuning=tmp_path)
    x = nir.tensor(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), names=("N", "C"))
    np.testing.assert_allclose(f(x).numpy(), chain(x).numpy(), rtol=1e-5, atol=1e-5)
    assert f.backend == "xla" and f.tuned


def test_records_keep_the_median_and_the_minimum(tmp_path) -> None:
    report = tune_program(conv_program(), "llvm", tmp_path, backends=["reference"], trials=0, min_time_s=0.01)
    (rec,) = TuningDatabase(tmp_path).records()
    assert rec.statistic == "median" and rec.times_ms["tuned"] == report.results[0].tuned_ms
    assert rec.times_ms["tuned_min"] <= rec.times_ms["tuned"]


def test_records_respect_the_umask(tmp_path) -> None:
    import os
    old = os.umask(0o022)
    try:
        tune_program(conv_program(), "llvm", tmp_path, backends=["reference"], trials=0, min_time_s=0.01)
    finally:
        os.umask(old)
    (path,) = (tmp_path / "records").glob("*.json")
    assert path.stat().st_mode & 0o777 == 0o644


# --- the command line -----------------------------------------------------------------------------

def test_cli_prints_plain_progress_lines_when_not_on_a_terminal(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "m3.py").write_text("def f(x):\n    return x.softmax('C')\n")
    monkeypatch.chdir(tmp_path)
    assert tune_main(["m3:f", "--input", "x=N:4,C:8", "--db", str(tmp_path / "db"), "--backends", "reference",
                      "--trials", "0"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any("[reference] building the untuned program" in line for line in err)
    assert all(line.startswith("[") for line in err)


def test_cli_report_prints_long_options_whole(capsys) -> None:
    from nir.tune.cli import print_report
    from nir.tune.search import BackendResult, TuneReport
    opts = {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_use_onednn": True}}
    print_report(TuneReport("p", "abc", "llvm", [BackendResult("xla", 2.0, 1.0, 1.9, 0.9, options=opts)]))
    assert json.dumps(opts, sort_keys=True) in capsys.readouterr().out


def test_cli_help_shows_the_size_default(capsys) -> None:
    with pytest.raises(SystemExit):
        tune_main(["--help"])
    assert "default: full" in capsys.readouterr().out


def test_cli_tunes_a_traced_program_by_name(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "m4.py").write_text("import nir\ntraced = nir.trace(lambda x: x.softmax('C'), nir.spec(N=4, C=8))\n")
    monkeypatch.chdir(tmp_path)
    assert tune_main(["m4:traced", "--db", str(tmp_path / "db"), "--backends", "reference", "--trials", "0",
                      "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["winner"] == "reference"


def _wrong_when(monkeypatch, wrong) -> None:
    """Make the tuner's builds of programs for which ``wrong(program)`` holds return outputs 1% off."""
    from nir.tune import search
    build = search.user_call

    def user_call(program, *args, **options):
        call = build(program, *args, **options)
        if not wrong(program):
            return call
        return lambda: [nir.tensor(t.numpy() * 1.01, names=t.names) for t in [call()]]
    monkeypatch.setattr(search, "user_call", user_call)


def test_a_layout_candidate_that_computes_a_wrong_answer_is_not_kept(tmp_path, monkeypatch) -> None:
    logical = conv_program().text
    _wrong_when(monkeypatch, lambda p: p.text != logical)
    report = tune_program(conv_program(), "llvm", tmp_path, backends=["reference"], trials=0, min_time_s=0.01)
    (res,) = report.results
    refused = [c for c in res.candidates if "wrong answer" in c.get("error", "")]
    assert res.error is None and res.layout == "logical"
    assert len(refused) == len(layout_candidates(conv_program())) - 1 and "ms" not in refused[0]


def test_a_backend_whose_untuned_build_differs_from_the_answer_is_tuned_unchecked(tmp_path, monkeypatch) -> None:
    """Its untuned build is what runs without a record anyway, and a program whose answer rounding decides
    (a long tanh recurrence) differs on every backend: the report says so, and tuning goes on."""
    _wrong_when(monkeypatch, lambda p: True)
    report = tune_program(conv_program(), "llvm", tmp_path, backends=["reference"], trials=0, min_time_s=0.01)
    (res,) = report.results
    assert res.error is None and res.record_path and "untuned build differs" in res.unchecked
    assert not any("error" in c for c in res.candidates)


def test_a_recurrence_whose_answer_rounding_decides_is_still_tuned(tmp_path) -> None:
    """The rnn_scan workload on the tuner's random inputs (weights of scale 1, not 1/sqrt(fan-in)): its
    tanh recurrence amplifies each backend's rounding until elements differ from the float64 answer by up
    to 0.7, on XLA and TVM alike (a headline run once refused both and left `auto` without records)."""
    if not nir.backends.installed("xla"):
        pytest.skip("needs xla")
    from nir.bench.workloads import WORKLOADS
    w = WORKLOADS["rnn_scan"]
    program = nir.trace(w.fn, *w.make_inputs("full", 0)).program
    report = tune_program(program, "llvm", tmp_path, backends=["xla"], trials=0, min_time_s=0.01)
    (res,) = report.results
    assert res.error is None and res.record_path, res.error
