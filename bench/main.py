"""`nir bench`: every workload, run by every installed nir backend and by its peers (numpy, torch eager,
torch.compile, jax.jit), timed in one process with the same thread count, memory measured in a process
per variant; a table in the terminal, and optionally JSON and a PNG.

    nir bench --quick                                   # small sizes, few rounds: a smoke test
    nir bench --json out/bench.json --plot out/bench.png
    nir bench --workloads attention,cnn --backends xla --peers torch,jax --threads 1
    nir bench --tuning tuning_db/                        # adds nir-<backend>-tuned variants
    nir bench --precision                                # int8 and bf16 against float32 and torch's own

See bench/measure.py for the method, bench/variants.py for thread control.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from nir.extras import install_hint, installed
from nir.tune.measure import OtherLoad

from .machine import library_versions, machine_info
from .measure import calibrate, first_call, measure_memory, round_robin, stats
from .report import (BenchResult, VariantResult, WorkloadResult, markdown_table, ratio_fields, summary, table,
                     text_table, write_json, write_plot)
from .variants import (PEERS, TuningUnsupported, Variant, build, default_threads, nir_variants, peer_variants,
                       set_threads, to_numpy)
from .workloads import FAMILIES, WORKLOADS, Workload, select

__all__ = ["main", "run", "parse_args", "Plan", "plan_of"]


@dataclass(frozen=True)
class Plan:
    """What one run measures and how: input size, threads, timing rounds, seconds per sample, warm-up
    calls, memory mode ("process" or "cheap") and the input seed."""

    size: str
    threads: int
    rounds: int
    sample_s: float
    warmup: int
    memory: str
    seed: int


QUICK = dict(rounds=5, sample_s=0.002, warmup=2, memory="cheap")
FULL = dict(rounds=25, sample_s=0.02, warmup=5, memory="process")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of `nir bench`."""
    p = argparse.ArgumentParser(prog="nir bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, few rounds, memory from the cheap in-process figures only (smoke test)")
    p.add_argument("--size", choices=("small", "full"), default=None, help="input size (default: full; small with --quick)")
    p.add_argument("--workloads", default=None,
                   help=f"comma-separated workloads or families (default: every family but zoo; 'all': every "
                        f"one): {', '.join(WORKLOADS)}; "
                        f"families: {', '.join(FAMILIES)}")
    p.add_argument("--backends", default=None,
                   help="comma-separated nir backends (default: every installed one; 'reference' only at the small "
                        "size or with --reference, it is slow)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated peers (default: {','.join(PEERS)})")
    p.add_argument("--reference", action="store_true", help="also run the (slow) reference backend at the full size")
    p.add_argument("--tuning", metavar="DIR", default=None,
                   help="a tuning database: adds a tuned variant per backend (nir.compile(..., tuning=DIR))")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every variant (default: the CPUs this process may use)")
    p.add_argument("--rounds", type=int, default=None, help="timed samples per variant (default 25; 5 with --quick)")
    p.add_argument("--sample-ms", type=float, default=None,
                   help="minimum length of one sample in ms (default 20; 2 with --quick)")
    p.add_argument("--memory", choices=("process", "cheap"), default=None,
                   help="process: peak RSS of each variant in a process of its own (default); cheap: output and "
                        "intermediate sizes only (default with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and weights")
    p.add_argument("--json", metavar="FILE", default=None, help="write every figure as JSON")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write a plot of time relative to the best peer")
    p.add_argument("--markdown", metavar="FILE", default=None, help="write the table as markdown")
    p.add_argument("--precision", action="store_true",
                   help="the reduced-precision table instead (bench/reduced.py): nir int8 (nir.quantize) and bf16 "
                        "against nir float32, with torch.ao int8 (x86) and torch bf16 autocast as peers")
    return p.parse_args(list(argv))


def _split(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    return text[:limit]


def _oracle(results: dict[str, VariantResult], outputs: dict[str, list[np.ndarray]]) -> str | None:
    """The variant every other is checked against: nir's reference backend, else the numpy peer, else torch
    eager (the zoo's models have no numpy program and are too big for the reference at the full size)."""
    return next((n for n in ("nir-reference", "numpy", "torch") if n in outputs and results[n].ok), None)


def _check(w: WorkloadResult, results: dict[str, VariantResult], outputs: dict[str, list[np.ndarray]],
           workload: Workload) -> None:
    w.oracle = _oracle(results, outputs)
    if w.oracle is None:
        return
    want = outputs[w.oracle]
    for name, got in outputs.items():
        v = results[name]
        same_shape = len(got) == len(want) and all(g.shape == r.shape for g, r in zip(got, want))
        if not same_shape:
            v.agrees, v.note = False, f"output shapes {[g.shape for g in got]} != {[r.shape for r in want]}"
            continue
        v.max_abs_err = max((float(np.max(np.abs(g.astype(np.float64) - r))) if g.size else 0.0)
                            for g, r in zip(got, want))
        v.agrees = all(np.allclose(g, r, rtol=workload.rtol, atol=workload.atol) for g, r in zip(got, want))


def run_workload(workload: Workload, variants: list[Variant], plan: Plan, notes: list[str],
                 progress: "Progress") -> WorkloadResult:
    """Build, check and time every variant of ``workload``; memory comes later, in other processes.
    A tuned variant that cannot compile because nir.compile lacks tuning support is dropped from
    ``variants`` (so later workloads skip it) with a note."""
    inputs = workload.make_inputs(plan.size, plan.seed)
    w = WorkloadResult(workload.name, workload.family, plan.size, workload.description,
                       [{"names": list(x.names), "shape": list(x.shape), "dtype": x.dtype} for x in inputs],
                       rtol=workload.rtol, atol=workload.atol)
    results: dict[str, VariantResult] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    calls, counts = {}, {}
    for v in list(variants):
        r = results[v.name] = VariantResult(v.name, v.kind, v.backend, v.tuning)
        w.variants.append(r)
        if v.kind == "peer" and PEERS[v.name][0] not in workload.peers:
            r.status, r.note = "skipped", f"no {PEERS[v.name][0]} program for this workload"
            continue
        progress.step(f"{workload.name}: building {v.name}")
        if v.kind == "peer" and PEERS[v.name][0] not in workload.peers:
            r.status, r.note = "skipped", f"no {PEERS[v.name][0]} program for this workload"
            continue
        try:
            built = build(v, workload, inputs, plan.threads)
            out, r.first_call_s = first_call(built.call)
            outputs[v.name] = to_numpy(out)
            counts[v.name] = calibrate(built.call, plan.warmup, plan.sample_s)
        except TuningUnsupported as e:
            notes.append(f"{e}; tuned variants skipped")
            variants[:] = [x for x in variants if x.tuning is None]
            r.status, r.note = "skipped", "tuning support not installed"
            continue
        except Exception as e:  # noqa: BLE001 - a backend that cannot run a workload is reported, not fatal
            r.status, r.note = "failed", _first_line(e)
            continue
        calls[v.name] = built.call
        r.build_s = built.build_s
        r.compile_s = built.build_s + r.first_call_s
        r.calls_per_sample = counts[v.name]
        r.output_bytes = sum(a.nbytes for a in outputs[v.name])
        r.intermediate_bytes, r.intermediates_from = built.intermediate_bytes, built.intermediates_from
        r.note = built.note
    _check(w, results, outputs, workload)
    with OtherLoad() as load:
        samples = round_robin(calls, counts, plan.rounds,
                              on_round=lambda: progress.step(f"{workload.name}: timing"))
    w.others_cores = load.cores
    if not calls:
        progress.step(f"{workload.name}: nothing to time", advance=plan.rounds)
    for name, s in samples.items():
        st, r = stats(s), results[name]
        r.samples_s, r.median_s, r.p25_s, r.p75_s, r.min_s = s, st.median, st.p25, st.p75, st.min
    peers = [r for r in w.variants if r.kind == "peer" and r.median_s is not None]
    if peers:
        best = min(peers, key=lambda r: r.median_s)  # type: ignore[arg-type, return-value]
        w.best_peer = best.name
        for r in w.variants:
            ratio_fields(r, best.median_s)  # type: ignore[arg-type]
    return w


def warm_start(variants: list[Variant], plan: Plan, progress: "Progress") -> None:
    """Build and run every variant once on a tiny program, untimed, so that one-time costs (imports,
    runtime start-up, compiler caches) are not charged to the first workload's compile time."""
    tiny = WORKLOADS["softmax"]
    inputs = tiny.make_inputs("small", plan.seed)
    for v in variants:
        progress.step(f"starting {v.name}")
        try:
            build(v, tiny, inputs, plan.threads, intermediates=False).call()
        except Exception:  # noqa: BLE001 - the real build reports the failure
            pass


def measure_memories(result: BenchResult, plan: Plan, progress: "Progress") -> None:
    """Fill in each measured variant's baseline and peak RSS, each from a process of its own."""
    for w in result.workloads:
        for r in w.variants:
            progress.step(f"{w.name}: memory of {r.name}")
            if not r.ok:
                continue
            variant = {"name": r.name, "kind": r.kind, "backend": r.backend, "tuning": r.tuning}
            try:
                m = measure_memory(w.name, variant, plan.size, plan.seed, plan.threads)
                r.baseline_rss, r.peak_rss = m.baseline_rss, m.peak_rss
            except Exception as e:  # noqa: BLE001 - report it, keep the timings
                r.note = "; ".join(filter(None, [r.note, f"memory: {_first_line(e)}"]))


class Progress:
    """A rich progress bar over build steps, timing rounds and memory runs; where rich is not installed
    or stderr is not a terminal, one plain line on stderr per new step instead."""

    def __init__(self, total: int) -> None:
        self._bar: Any = None
        if installed("rich"):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress
            console = Console(stderr=True)
            if console.is_terminal:
                self._bar = RichProgress(TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=console)
                self._task = self._bar.add_task("starting", total=total)
        self._last = ""

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def step(self, description: str, advance: int = 1) -> None:
        """Show ``description`` and count ``advance`` steps done."""
        if self._bar is not None:
            self._bar.update(self._task, description=description, advance=advance)
        elif description != self._last:
            print(description, file=sys.stderr, flush=True)
        self._last = description


def plan_of(args: argparse.Namespace) -> Plan:
    """The Plan the command line asks for: --quick defaults, overridden by explicit flags."""
    base = QUICK if args.quick else FULL
    return Plan(size=args.size or ("small" if args.quick else "full"), threads=args.threads or default_threads(),
                rounds=args.rounds or base["rounds"],
                sample_s=args.sample_ms / 1e3 if args.sample_ms else base["sample_s"],
                warmup=base["warmup"], memory=args.memory or base["memory"], seed=args.seed)


def run(args: argparse.Namespace) -> BenchResult:
    """Run the benchmark the parsed ``args`` describe."""
    import nir
    plan = plan_of(args)
    notes = set_threads(plan.threads)  # before any framework starts its thread pool
    workloads = select(args.workloads)
    peers, more = peer_variants(_split(args.peers))
    notes += more
    backends = _split(args.backends) or nir.backends.available()
    if not args.backends and plan.size == "full" and not args.reference and "reference" in backends:
        backends.remove("reference")
        notes.append("nir-reference skipped at the full size (slow); add --reference to include it")
    nirs, more = nir_variants(backends, args.tuning)
    notes += more
    variants = nirs + peers
    result = BenchResult(machine_info(), library_versions(),
                         {**asdict(plan), "quick": args.quick, "tuning": args.tuning,
                          "variants": [v.to_json() for v in variants], "argv": getattr(args, "argv", None)},
                         notes)
    total = len(variants) + len(workloads) * (len(variants) + plan.rounds)
    total += len(workloads) * len(variants) if plan.memory == "process" else 0
    if args.plot and not installed("matplotlib"):
        notes.append(f"--plot skipped: it needs matplotlib ({install_hint('matplotlib')})")
    with Progress(total) as progress:
        warm_start(variants, plan, progress)
        for workload in workloads:
            result.workloads.append(run_workload(workload, variants, plan, notes, progress))
        if plan.memory == "process":
            measure_memories(result, plan, progress)
    result.machine["load_average_end"] = machine_info()["load_average"]
    return result


def _output() -> tuple[Callable[[Any], None], Callable[[BenchResult], Any]]:
    """How the report is printed: rich's console and table where rich is installed, else plain print
    (rich's colour tags removed) and a fixed-width text table."""
    if not installed("rich"):
        return (lambda x: print(_MARKUP.sub("", x))), text_table
    from rich.console import Console
    console = Console()
    if not console.is_terminal:  # a pipe or a file: do not squeeze the table into 80 columns
        console = Console(width=170)
    return console.print, table


_MARKUP = re.compile(r"\[/?(yellow|red|bold|dim)\]")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nir bench`; returns the exit status (1 if a variant disagrees with the oracle)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    if args.precision:
        from .reduced import main as reduced_main
        size = args.size or ("small" if args.quick else "full")
        forwarded = [f"--{k}={v}" for k, v in (("workloads", args.workloads), ("backends", args.backends),
                                                ("threads", args.threads), ("rounds", args.rounds)) if v is not None]
        return reduced_main([*forwarded, f"--size={size}"])
    try:
        result = run(args)
    except ValueError as e:  # unknown workload, peer or backend names
        print(f"nir bench: {e}", file=sys.stderr)
        return 2
    say, table_ = _output()
    say(table_(result))
    say(summary(result))
    for note in result.notes:
        say(f"[yellow]note:[/yellow] {note}")
    for w in result.workloads:
        for v in w.variants:
            if v.ok and v.note:
                say(f"[yellow]note:[/yellow] {w.name}/{v.name}: {v.note}")
    if args.json:
        say(f"wrote {write_json(result, args.json)}")
    if args.plot and installed("matplotlib"):
        say(f"wrote {write_plot(result, args.plot)}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(result) + "\n")
        say(f"wrote {args.markdown}")
    bad = [f"{w.name}/{v.name}" for w in result.workloads for v in w.variants if v.agrees is False]
    if bad:
        say(f"[red]outputs differ from each workload's oracle (nir-reference, else numpy, else torch):[/red] "
            f"{', '.join(bad)}")
    return 1 if bad else 0
