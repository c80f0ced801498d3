"""Results of a benchmark run and their forms: a rich table (plain text without rich), markdown, a JSON file
and a PNG plot (which needs matplotlib)."""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any

from nir.extras import require
from nir.tune.measure import busy

__all__ = ["VariantResult", "WorkloadResult", "BenchResult", "table", "markdown_table", "text_table", "summary",
           "write_json", "write_plot", "SCHEMA"]

SCHEMA = "nir-bench/1"


@dataclass
class VariantResult:
    """Every figure measured for one variant of one workload (times in seconds, memory in bytes).

    ``compile_s`` is the time to the first result: ``build_s`` (nir: trace + compile ahead of time;
    peers: making the function) plus ``first_call_s`` (where jax.jit and torch.compile compile).
    ``median_s``/``p25_s``/``p75_s``/``min_s`` summarize ``samples_s``, each the mean time per call of
    ``calls_per_sample`` back-to-back calls, warm-ups excluded. ``ratio`` is ``median_s`` over the best
    peer's median (``ratio_p25``/``ratio_p75`` the same for the quartiles). ``peak_rss``/``baseline_rss``
    come from a process of the variant's own (None when memory was not measured)."""

    name: str
    kind: str
    backend: str | None = None
    tuning: str | None = None
    status: str = "ok"          # ok | failed | skipped
    note: str = ""
    build_s: float | None = None
    first_call_s: float | None = None
    compile_s: float | None = None
    calls_per_sample: int | None = None
    samples_s: list[float] = field(default_factory=list)
    median_s: float | None = None
    p25_s: float | None = None
    p75_s: float | None = None
    min_s: float | None = None
    ratio: float | None = None
    ratio_p25: float | None = None
    ratio_p75: float | None = None
    max_abs_err: float | None = None
    agrees: bool | None = None
    output_bytes: int | None = None
    intermediate_bytes: int | None = None
    intermediates_from: str = ""
    baseline_rss: int | None = None
    peak_rss: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class WorkloadResult:
    """One workload: its inputs, the peer the ratios refer to, the checking oracle, and its variants."""

    name: str
    family: str
    size: str
    description: str
    inputs: list[dict[str, Any]]
    variants: list[VariantResult] = field(default_factory=list)
    best_peer: str | None = None
    oracle: str | None = None
    rtol: float = 0.0
    atol: float = 0.0
    others_cores: float | None = None  # CPU other processes took while this workload was timed


@dataclass
class BenchResult:
    """A whole run: machine, library versions, settings, notes (skipped variants...) and workloads."""

    machine: dict[str, Any]
    versions: dict[str, str | None]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    workloads: list[WorkloadResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}


def threads_label(result: BenchResult) -> str:
    """``"2 threads"`` / ``"1 thread"``."""
    n = result.settings["threads"]
    return f"{n} thread" + ("s" if n != 1 else "")


def summary(result: BenchResult) -> str:
    """One line: machine, threads, load average at start and end, date."""
    m = result.machine
    end = m.get("load_average_end", m["load_average"])
    disturbed = [f"{w.name} ({w.others_cores:.2f})" for w in result.workloads if busy(w.others_cores)]
    return (f"{m['cpu_model']}, {m['cpus']} CPUs, {threads_label(result)}; load average {m['load_average'][0]:.2f} "
            f"at start, {end[0]:.2f} at end; {m['date']}"
            + (f"; other processes took CPU (cores) while timing {', '.join(disturbed)}: those figures are "
               "suspect" if disturbed else ""))


def _time(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def table(result: BenchResult) -> Any:
    """A rich Table: one row per variant, grouped by workload."""
    from rich.table import Table
    t = Table(title=f"nir bench ({result.settings['size']} size, {threads_label(result)}, "
                    f"{result.settings['rounds']} rounds)", show_lines=False)
    for col, just in (("workload", "left"), ("variant", "left"), ("compile+1st", "right"), ("median", "right"),
                      ("p25-p75", "right"), ("x best peer", "right"), ("peak RSS MiB", "right"),
                      ("run +MiB", "right"), ("out", "right"), ("interm.", "right"), ("check", "center")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for w in result.workloads:
        for i, v in enumerate(w.variants):
            name = w.name if i == 0 else ""
            if not v.ok:
                t.add_row(name, v.name, f"[dim]{v.status}: {v.note[:60]}[/dim]", *[""] * 8)
                continue
            ratio = "-" if v.ratio is None else f"{v.ratio:.2f}"
            if v.name == w.best_peer:
                ratio = f"[bold]{ratio}[/bold]"
            run = None if v.peak_rss is None or v.baseline_rss is None else v.peak_rss - v.baseline_rss
            check = "-" if v.agrees is None else ("ok" if v.agrees else "[red]DIFFERS[/red]")
            t.add_row(name, v.name, _time(v.compile_s), _time(v.median_s), f"{_time(v.p25_s)}-{_time(v.p75_s)}",
                      ratio, _mib(v.peak_rss), _mib(run), _bytes(v.output_bytes), _bytes(v.intermediate_bytes),
                      check)
        t.add_section()
    return t


def _plain_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as plain strings (no markup); a variant that did not run has three
    cells: workload, variant, and what happened."""
    head = ["workload", "variant", "compile+1st", "median", "p25-p75", "x best peer", "peak RSS MiB", "run +MiB",
            "out", "interm.", "check"]
    rows = []
    for w in result.workloads:
        for v in w.variants:
            if not v.ok:
                rows.append([w.name, v.name, f"{v.status}: {v.note[:80]}"])
                continue
            run = None if v.peak_rss is None or v.baseline_rss is None else v.peak_rss - v.baseline_rss
            ratio = "-" if v.ratio is None else f"{v.ratio:.2f}"
            check = "-" if v.agrees is None else ("ok" if v.agrees else "DIFFERS")
            rows.append([w.name, v.name, _time(v.compile_s), _time(v.median_s), f"{_time(v.p25_s)}-{_time(v.p75_s)}",
                         ratio, _mib(v.peak_rss), _mib(run), _bytes(v.output_bytes), _bytes(v.intermediate_bytes),
                         check])
    return head, rows


def markdown_table(result: BenchResult) -> str:
    """The table as GitHub markdown (for docs/bench_results.md)."""
    head, rows = _plain_rows(result)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" + " |" * (len(head) - len(r)) for r in rows]
    return "\n".join(lines)


def text_table(result: BenchResult) -> str:
    """The table as plain fixed-width text: what `nir bench` prints where rich is not installed."""
    head, rows = _plain_rows(result)
    width = [max([len(head[i])] + [len(r[i]) for r in rows if len(r) == len(head)]) for i in range(len(head))]
    title = f"nir bench ({result.settings['size']} size, {threads_label(result)}, {result.settings['rounds']} rounds)"
    header = "  ".join(h.ljust(n) for h, n in zip(head, width))
    lines = [title, header, "-" * len(header)]
    lines += ["  ".join(c.ljust(n) for c, n in zip(r, width)).rstrip() for r in rows]  # short rows run on
    return "\n".join(lines)


def write_json(result: BenchResult, path: str | pathlib.Path) -> pathlib.Path:
    """Write every figure of ``result`` as JSON (NaN-free: unmeasured figures are null)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n")
    return path


def write_plot(result: BenchResult, path: str | pathlib.Path) -> pathlib.Path:
    """A PNG: per workload, each variant's median time relative to the best peer (log scale), with
    the p25-p75 range as error bars."""
    matplotlib = require("matplotlib", "nir bench --plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(v.name for w in result.workloads for v in w.variants
                               if v.ok and v.ratio is not None))
    workloads = [w for w in result.workloads if any(v.ok and v.ratio is not None for v in w.variants)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(workloads) + 3), 4.5))
    width = 0.8 / max(len(names), 1)
    cmap = plt.get_cmap("tab10")
    for j, name in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for i, w in enumerate(workloads):
            v = next((v for v in w.variants if v.name == name and v.ok and v.ratio is not None), None)
            if v is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(v.ratio)
            lo.append(max(v.ratio - (v.ratio_p25 or v.ratio), 0.0))
            hi.append(max((v.ratio_p75 or v.ratio) - v.ratio, 0.0))
        ax.bar(xs, ys, width, yerr=[lo, hi], label=name, color=cmap(j % 10), capsize=2,
               hatch="//" if name.startswith("nir") else None, edgecolor="black", linewidth=0.4)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), [w.name for w in workloads], rotation=20, ha="right")
    ax.set_ylabel("median time / best peer's (log)")
    m = result.machine
    ax.set_title(f"nir bench, {result.settings['size']} size: {m['cpu_model']}, {threads_label(result)}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ratio_fields(v: VariantResult, best: float) -> None:
    """Fill ``v``'s ratios to a best-peer median ``best``."""
    if v.median_s is None or not best or math.isnan(best):
        return
    v.ratio, v.ratio_p25, v.ratio_p75 = v.median_s / best, (v.p25_s or 0) / best, (v.p75_s or 0) / best
