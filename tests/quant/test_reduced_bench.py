"""`nir bench --precision` (bench/reduced.py): nir int8 and bf16 variants next to nir float32, torch.ao int8
(x86) and torch bf16 autocast; every variant computes what float32 does, within its precision."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from nir.bench import reduced  # noqa: E402
from nir.bench.main import main as bench_main  # noqa: E402
from nir.bench.workloads import WORKLOADS  # noqa: E402


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_every_variant_is_within_its_precision_of_float32(name):
    calls, notes = reduced.variants(WORKLOADS[name], "small", ["reference"], threads=1)
    assert {"nir-reference-int8", "nir-reference-bf16", "torch-int8", "torch-bf16"} <= set(calls), notes
    outs = {k: np.asarray(c(), dtype=np.float32) for k, c in calls.items()}
    scale = np.abs(outs["nir-reference-fp32"]).max()
    for k, out in outs.items():
        base = outs[k.rsplit("-", 1)[0] + "-fp32"]
        allowed = 0.05 if k.endswith("int8") else 0.02 if k.endswith("bf16") else 1e-6
        assert np.abs(out - base).max() <= allowed * scale, k


def test_nir_bench_precision_prints_a_row_per_variant(capsys):
    assert bench_main(["--precision", "--workloads", "mlp", "--backends", "reference", "--quick", "--rounds", "2",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for variant in ("nir-reference-fp32", "nir-reference-int8", "nir-reference-bf16", "torch-int8", "torch-bf16"):
        assert variant in out
