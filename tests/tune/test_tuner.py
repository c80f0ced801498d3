"""The tuner with tiny budgets: records written, applied by nir.compile without re-tuning, `auto`
choosing by record, layouts changing the lowered program but not its results, and the CLI."""

from __future__ import annotations

import json

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
