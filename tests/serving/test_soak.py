"""`nir soak` runs, checks every result, and reports calls/s, latency, errors and memory."""

from __future__ import annotations

import json

import nir
from nir.soak import main, soak


def test_soak_reports_its_figures_and_no_errors(capsys) -> None:
    result = soak(backend="reference", threads=2, seconds=1.0, max_batch=4, width=8, interval=0.5)
    assert result["errors"] == 0 and result["calls"] > 0 and result["p99_ms"] >= result["p50_ms"] > 0
    assert result["signatures"] == 3  # buckets 1, 2, 4
    assert len(result["timeline"]) == 2 and all(p["errors"] == 0 for p in result["timeline"])
    out = capsys.readouterr().out
    assert "calls/s" in out and "p99" in out and "errors 0" in out and "rss" in out


def test_soak_command_writes_json_and_exits_0(tmp_path) -> None:
    path = tmp_path / "soak.json"
    assert main(["--backend", "reference", "--threads", "2", "--seconds", "0.5", "--max-batch", "3", "--width",
                 "8", "--exact", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["errors"] == 0 and data["signatures"] == 3 and not data["dynamic"]


def test_soak_is_a_nir_subcommand() -> None:
    from nir.cli import SUBCOMMANDS
    assert SUBCOMMANDS["soak"][1] == "nir.soak:main" and nir.backends.installed("reference")
