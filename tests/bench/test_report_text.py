"""The bench report's plain forms: the fixed-width text table (printed where rich is not installed) and
markdown, from one set of rows."""

from __future__ import annotations

from nir.bench.report import BenchResult, VariantResult, WorkloadResult, markdown_table, text_table


def _result() -> BenchResult:
    ok = VariantResult("numpy", "peer", median_s=2e-3, p25_s=1e-3, p75_s=3e-3, compile_s=0.5, ratio=1.0, agrees=True,
                       output_bytes=4096)
    failed = VariantResult("nir-tvm", "nir", "tvm", status="failed", note="BackendError: no lowering")
    w = WorkloadResult("softmax", "norm", "small", "", [], variants=[ok, failed])
    return BenchResult({}, {}, {"size": "small", "threads": 1, "rounds": 5}, workloads=[w])


def test_text_table_aligns_columns_and_keeps_failures():
    lines = text_table(_result()).splitlines()
    assert lines[0] == "nir bench (small size, 1 thread, 5 rounds)"
    head, ok, failed = lines[1], lines[3], lines[4]
    assert head.index("median") == ok.index("2 ms") and head.index("check") == ok.index("ok")
    assert failed.split() == ["softmax", "nir-tvm", "failed:", "BackendError:", "no", "lowering"]


def test_markdown_table_has_one_cell_per_column():
    rows = markdown_table(_result()).splitlines()
    assert all(r.count("|") == rows[0].count("|") for r in rows)
    assert "| softmax | nir-tvm | failed: BackendError: no lowering |" in rows[3]
