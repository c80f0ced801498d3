"""python -m nir.bench.scaling: every configuration runs (1 and 2 processes, 1 to 4 host devices) and reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("jax")


def test_scaling_reports_every_configuration_against_one_device():
    r = subprocess.run([sys.executable, "-m", "nir.bench.scaling", "--size", "small", "--rounds", "1", "--calls", "3",
                        "--timeout", "240", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(r.stdout)
    got = [(row["processes"], row["devices_per_process"], row["devices"]) for row in report["rows"]]
    assert got == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 1, 2), (2, 2, 4)]
    assert report["rows"][0]["vs_1x1"] == 1.0
    assert all(row["ms"] > 0 for row in report["rows"])
    assert report["machine"]["cpu_model"] and len(report["machine"]["load_average"]) == 3
