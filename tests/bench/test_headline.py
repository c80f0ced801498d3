"""`python -m nir.bench.headline` at a tiny budget: it tunes, benches with the database, and reports
nir-auto-tuned against the peers. No timing is asserted."""

import json

import pytest

import nir
from nir.bench.headline import main


def test_headline_tunes_then_benches_auto_against_the_peers(tmp_path, capsys) -> None:
    if not nir.backends.installed("xla"):
        pytest.skip("needs xla")
    status = main(["--minutes", "0.1", "--size", "small", "--workloads", "softmax", "--threads", "1",
                   "--backends", "xla", "--peers", "numpy", "--memory", "cheap", "--rounds", "2",
                   "--out", str(tmp_path)])
    assert status == 0
    tuned = json.loads((tmp_path / "tune-1.json").read_text())
    assert [r["name"] for r in tuned["reports"]] == ["softmax"] and tuned["reports"][0]["winner"] == "xla"
    bench = json.loads((tmp_path / "bench-1.json").read_text())
    (w,) = bench["workloads"]
    auto = next(v for v in w["variants"] if v["name"] == "nir-auto-tuned")
    assert auto["status"] == "ok" and auto["agrees"] and auto["note"] == "backend chosen: xla"
    assert bench["settings"]["tuning"] == str(tmp_path / "tuning-1")
    assert (tmp_path / "bench-1.png").is_file() and (tmp_path / "bench-1.md").is_file()
