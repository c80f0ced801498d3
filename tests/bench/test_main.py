"""`nir bench` end to end, in process, at the small size: table, JSON and PNG. No timing is asserted."""

import importlib.util
import json

import numpy as np
import pytest

from nir.bench.main import main
from nir.bench.measure import measure_memory
from nir.bench.workloads import WORKLOADS

# one small workload per family of a default run (the zoo's run is in tests/zoo)
DEFAULT_FAMILIES = dict.fromkeys(w.family for w in WORKLOADS.values() if w.default)
ONE_PER_FAMILY = [next(w.name for w in WORKLOADS.values() if w.family == f) for f in DEFAULT_FAMILIES]
NO_NUMPY = {w.name for w in WORKLOADS.values() if "numpy" not in w.peers}
# torch.compile is left out: its cold compile takes seconds per workload
PEERS = ",".join(p for p, pkg in (("numpy", "numpy"), ("torch", "torch"), ("jax", "jax"))
                 if importlib.util.find_spec(pkg) is not None)


def test_quick_run_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    status = main(["--quick", "--workloads", ",".join(ONE_PER_FAMILY), "--peers", PEERS,
                   "--json", str(out), "--plot", str(png)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["schema"] == "nir-bench/1"
    assert result["settings"]["size"] == "small" and result["settings"]["threads"] >= 1
    assert result["machine"]["cpu_model"] and result["versions"]["numpy"]
    assert [w["name"] for w in result["workloads"]] == ONE_PER_FAMILY
    for w in result["workloads"]:
        names = [v["name"] for v in w["variants"]]
        assert "nir-reference" in names and "numpy" in names
        assert w["oracle"] == "nir-reference" and w["best_peer"] in PEERS.split(",")
        for v in w["variants"]:
            if w["name"] in NO_NUMPY and v["name"] == "numpy":  # numpy has no autodiff: no training program
                assert v["status"] == "skipped" and "no numpy program" in v["note"]
                continue
            assert v["status"] == "ok", (w["name"], v["name"], v["note"])
            assert v["agrees"] is True
            assert len(v["samples_s"]) == result["settings"]["rounds"]
            assert v["p25_s"] <= v["median_s"] <= v["p75_s"] and v["compile_s"] > 0 and v["ratio"] > 0
            assert v["output_bytes"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "x best peer" in capsys.readouterr().out


def test_memory_of_each_variant_is_measured_in_its_own_process(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--workloads", "softmax", "--peers", "numpy", "--backends", "reference",
                 "--memory", "process", "--rounds", "2", "--json", str(out)]) == 0
    for v in json.loads(out.read_text())["workloads"][0]["variants"]:
        assert v["peak_rss"] >= v["baseline_rss"] > 0, v


def test_memory_child_does_not_report_the_parent_peak():
    ballast = np.ones(50_000_000)  # 400 MB resident in this process
    m = measure_memory("softmax", {"name": "numpy", "kind": "peer"}, "small", 0, 1)
    assert 0 < m.baseline_rss <= m.peak_rss < ballast.nbytes


def test_nir_variants_report_ir_intermediates(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--workloads", "attention", "--peers", "numpy", "--backends", "reference",
                 "--rounds", "2", "--json", str(out)]) == 0
    (ref,) = [v for v in json.loads(out.read_text())["workloads"][0]["variants"] if v["name"] == "nir-reference"]
    assert ref["intermediate_bytes"] > ref["output_bytes"] and ref["intermediates_from"] == "nir IR values"


def test_tuning_flag_adds_tuned_variants_that_say_when_no_record_applies(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "bench.json"
    assert main(["--quick", "--workloads", "softmax", "--peers", "numpy", "--backends", "xla",
                 "--tuning", str(tmp_path / "db"), "--rounds", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (tuned,) = [v for v in result["workloads"][0]["variants"] if v["name"] == "nir-xla-tuned"]
    assert tuned["status"] == "ok" and tuned["agrees"] is True
    assert tuned["note"].startswith("no tuning record for this program"), tuned["note"]  # the database is empty


@pytest.mark.parametrize("flag, value, message", [
    ("--workloads", "resnet", "unknown workload or family 'resnet'"),
    ("--peers", "tensorflow", "unknown peer 'tensorflow'"),
    ("--backends", "onnx", "unknown backend 'onnx'"),
])
def test_unknown_names_are_refused_with_the_choices(flag, value, message, capsys):
    assert main(["--quick", flag, value]) == 2
    assert message in capsys.readouterr().err
