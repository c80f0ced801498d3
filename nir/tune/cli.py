"""`nir tune`: tune a function (``MODULE:FUNCTION``) or a benchmark workload for a target and store the
winners in a tuning database that `nir.compile(..., tuning=DIR)` reads.

    nir tune mymodel:forward --input x=N:32,C:3,H:56,W:56 --target llvm --minutes 5 --db tuning/
    nir tune conv3x3 --target llvm --db tuning/ --backends tvm --trials 64   # a `nir bench` workload
    nir tune conv3x3 --db tuning/ --replay                                   # re-measure the stored winners

Every time is the per-call time of the `nir.compile`d program (outputs complete), candidates measured
round-robin; decisions and the tables use the median, the minimum is shown beside it. With
``--minutes`` the budget is wall-clock time for the whole program (TVM's search gets what the other
backends leave), counted from the start of the command. A TVM search interrupted (killed) and started
again with the same --db skips the tasks it finished and continues from MetaSchedule's database.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
from typing import Any, Callable, Sequence

from ..frontends.python import Spec, spec, trace
from ..ir import Program
from ..target import parse_target
from .database import TuningDatabase
from .measure import busy, measure_interleaved, others_cores, user_call
from .search import TuneReport, TuningError, backend_version, tune_program
from .space import apply_layouts


def parse_input(text: str, dtype: str) -> tuple[str, Spec]:
    """``x=N:32,C:3`` -> ("x", spec(N=32, C=3)); a dim written ``_:8`` is unnamed."""
    name, sep, dims = text.partition("=")
    if not sep or not dims:
        raise argparse.ArgumentTypeError(f"--input {text!r} should look like x=N:32,C:3,H:56,W:56")
    names, shape = [], []
    for part in dims.split(","):
        d, colon, size = part.partition(":")
        if not colon or not size.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--input {text!r}: {part!r} should look like N:32")
        names.append(None if d.strip() in ("_", "") else d.strip())
        shape.append(int(size))
    return name.strip(), spec(names=names, shape=shape, dtype=dtype)


def _load_function(ref: str) -> Callable[..., Any]:
    mod, _, fn = ref.partition(":")
    import os
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"nir tune: cannot load {ref!r}: {e}") from None


def program_for(what: str, inputs: Sequence[str], dtype: str, size: str) -> tuple[str, Program]:
    """The program to tune: ``MODULE:FUNCTION`` traced on ``--input`` specs, ``MODULE:NAME`` of a traced
    program (`nir.trace` or `nir.from_torch` result, or a Program), or a workload name."""
    if ":" in what:
        fn = _load_function(what)
        found = getattr(fn, "program", fn)
        if isinstance(found, Program):
            return what, found
        try:
            parsed = dict(parse_input(i, dtype) for i in inputs)
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"nir tune: {e}") from None
        params = [p for p in inspect.signature(fn).parameters]
        missing = [p for p in params if p not in parsed]
        if missing:
            raise SystemExit(f"nir tune: give --input for {missing} (e.g. --input {missing[0]}=N:32,C:3)")
        return what, trace(fn, *(parsed[p] for p in params)).program
    try:
        from nir.bench.workloads import WORKLOADS
    except ImportError:
        raise SystemExit(f"nir tune: {what!r} is not MODULE:FUNCTION and the benchmark workloads are not "
                         "installed") from None
    if what not in WORKLOADS:
        raise SystemExit(f"nir tune: unknown workload {what!r}; known: {', '.join(sorted(WORKLOADS))}")
    w = WORKLOADS[what]
    return what, trace(w.fn, *w.make_inputs(size, 0)).program


def _logger(enabled: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    """Progress: a rich spinner with the latest step on a terminal; plain timestamped lines on stderr
    when it is not one (CI logs, pipes), or when rich is missing."""
    if not enabled:
        return (lambda msg: None), (lambda: None)
    start = time.monotonic()

    def plain(msg: str) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)
    if not sys.stderr.isatty():
        return plain, (lambda: None)
    try:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return plain, (lambda: None)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("tuning", total=None)
    progress.start()

    def show(msg: str) -> None:
        if msg.startswith("[tvm] task ") and " trials in " in msg:  # a finished task stays on screen
            progress.console.print(msg, highlight=False)
        progress.update(task, description=msg)
    return show, progress.stop


def _ms(median: float | None, low: float | None) -> str:
    if median is None:
        return "-"
    return f"{median:.3f}" + (f" (min {low:.3f})" if low is not None else "")


def print_report(report: TuneReport) -> None:
    """A table per program: each backend, untuned vs tuned (median, min), speedup, layout, options and
    the record file; options are printed whole, on a line of their own when long."""
    print(f"\n{report.name}  (fingerprint {report.fingerprint}, target {report.target!r}, "
          f"{report.seconds:.0f} s; times: {report.statistic} ms per call, min in parentheses)")
    head = f"{'backend':<8} {'untuned ms':>22} {'tuned ms':>22} {'speedup':>8}  {'layout':<15} options"
    print(head)
    print("-" * len(head))
    for r in report.results:
        if r.error:
            print(f"{r.backend:<8} error: {r.error}")
            continue
        opts = json.dumps(r.options, sort_keys=True) if r.options else "-"
        row = (f"{r.backend:<8} {_ms(r.untuned_ms, r.untuned_min_ms):>22} {_ms(r.tuned_ms, r.tuned_min_ms):>22} "
               f"{r.speedup or 0:>7.2f}x  {r.layout:<15} ")
        print(row + opts if len(opts) <= 40 else row + "\n" + " " * 10 + "options: " + opts)
        if r.search:
            s = r.search
            print(" " * 10 + f"schedule search: {s.get('tuned', 0)} of {s.get('tasks', 0)} tasks tuned, "
                  f"{s.get('skipped', 0)} already done, {s.get('trials', 0)} trials, {s.get('seconds', 0):.0f} s")
        print(" " * 10 + f"record: {r.record_path}")
        if busy(r.others_cores):
            print(" " * 10 + f"warning: other processes used {r.others_cores:.2f} cores while this was timed; "
                  "the figures may be several times the quiet machine's: tune again when it is quiet")
    w = report.winner
    if w is not None:
        print(f"winner: {w.backend} ({w.tuned_ms:.3f} ms); nir.compile(..., backend='auto', tuning=DB) will use it")


def replay(program: Program, name: str, target: str, db_path: str, min_time_s: float = 0.5) -> int:
    """Re-measure every stored winner for ``program`` (the nir.compile call, all of them round-robin)
    and print the drift from the recorded time."""
    from .. import backends as _backends
    from ..testing import random_inputs
    db = TuningDatabase(db_path)
    tgt = parse_target(target)
    records = db.lookup(program, str(tgt))
    if not records:
        print(f"nir tune --replay: no records for {name} on {target!r} in {db_path}")
        return 1
    inputs = random_inputs(program)
    calls, usable = {}, []
    for rec in records:
        if not _backends.installed(rec.backend) or rec.backend_version != backend_version(rec.backend):
            print(f"{rec.backend:<8} skipped: recorded with version {rec.backend_version}, installed "
                  f"{backend_version(rec.backend)}")
            continue
        options = dict(rec.config.get("options", {}))
        if rec.config.get("backend_state"):
            options["tuning_db"] = str(db.path / rec.config["backend_state"])
        calls[rec.backend] = user_call(apply_layouts(program, rec.config.get("layouts", {})), tgt, rec.backend,
                                       inputs, **options)
        usable.append(rec)
    times = measure_interleaved(calls, min_time_s=min_time_s)
    print(f"{'backend':<8} {'recorded ms':>12} {'now ms':>9} {'now min':>9} {'drift':>8}  layout")
    for rec in usable:
        t, was = times[rec.backend], rec.times_ms["tuned"]
        print(f"{rec.backend:<8} {was:>12.3f} {t.median_ms:>9.3f} {t.min_ms:>9.3f} "
              f"{100 * (t.median_ms - was) / was:>+7.1f}%  {rec.config.get('layout', 'logical')}")
    load = others_cores(times)
    if busy(load):
        print(f"warning: other processes used {load:.2f} cores during this timing; the drift may be theirs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nir tune`."""
    started = time.monotonic()  # --minutes counts from here: tracing or converting the model is part of the run
    p = argparse.ArgumentParser(prog="nir tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", help="MODULE:FUNCTION (with --input), MODULE:NAME of a traced program (e.g. "
                                "nir.from_torch's result), or a `nir bench` workload name")
    p.add_argument("--input", action="append", default=[], metavar="NAME=N:32,C:3",
                   help="an input's named shape (one per function parameter)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--size", default="full", choices=("small", "full"),
                   help="workload size (workloads only; default: full)")
    p.add_argument("--target", default="llvm", help="target (default: llvm, this CPU)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget for the whole program, split over backends and TVM's tasks "
                        "(instead of --trials)")
    p.add_argument("--trials", type=int, default=64,
                   help="schedule-search trials per backend (TVM MetaSchedule; default: 64), when no --minutes")
    p.add_argument("--db", required=True, help="tuning database directory")
    p.add_argument("--backends", default=None, help="comma-separated (default: every installed one serving the target)")
    p.add_argument("--rpc", default=None, metavar="HOST:PORT:KEY", help="measure on devices of a TVM RPC tracker")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--replay", action="store_true", help="re-measure the stored winners and report drift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--mesh", default=None, metavar="AXIS:SIZE,...",
                   help="measure shard maps on this mesh instead (XLA; see nir.tune.shard), e.g. data:2,model:2")
    p.add_argument("--batch", default=None, help="with --mesh: the batch dim (default: N, or the most common dim)")
    args = p.parse_args(list(argv or []))
    name, program = program_for(args.what, args.input, args.dtype, args.size)
    if args.mesh:
        from .shard import main_mesh
        return main_mesh(program, name, args)
    if args.replay:
        return replay(program, name, args.target, args.db)
    log, stop = _logger(not args.quiet)
    minutes = None if args.minutes is None else max(0.0, args.minutes - (time.monotonic() - started) / 60)
    try:
        report = tune_program(program, args.target, args.db, name=name, trials=args.trials, minutes=minutes,
                              rpc=args.rpc, seed=args.seed,
                              backends=args.backends.split(",") if args.backends else None, log=log)
    except TuningError as e:
        stop()
        print(f"nir tune: {e}", file=sys.stderr)
        return 2
    stop()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    return 0 if report.winner is not None else 1
