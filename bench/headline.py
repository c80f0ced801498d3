"""The headline comparison in one command: tune every `nir bench` workload with a wall-clock budget into
a tuning database, then run `nir bench --tuning DB`, where ``nir-auto-tuned`` (``backend="auto"`` with
the database: the backend, layout, options and schedules the tuner measured fastest) is compared with
numpy, torch, torch.compile and jax.jit. Once per thread count, each in a process of its own (thread
pools are sized when a library starts).

    python -m nir.bench.headline --minutes 5 --threads 1,2 --out headline/
    python -m nir.bench.headline --minutes 0.5 --size small --workloads softmax --threads 1 --out /tmp/h

For each thread count N it writes into ``--out``: ``tuning-N/`` (the database; a second run reuses
it and resumes an interrupted TVM search), ``tune-N.json`` (every tuning report), ``bench-N.json``,
``bench-N.md``, ``bench-N.png``, and prints the bench table and a headline table: per workload,
``nir-auto-tuned``'s median over the best peer's, with the backend it chose.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Sequence

__all__ = ["main", "tune_all", "headline_rows"]


def tune_all(names: Sequence[str], size: str, minutes: float, db: pathlib.Path, backends: Sequence[str] | None,
             seed: int = 0, log: Any = print) -> list[dict[str, Any]]:
    """Tune each workload in ``names`` (its program at ``size``, inputs from ``seed``, as `nir bench`
    makes them) with ``minutes`` of wall-clock each into ``db``; returns the reports as JSON."""
    import nir
    from nir.tune.search import tune_program

    from .workloads import WORKLOADS
    reports = []
    for i, name in enumerate(names, 1):
        w = WORKLOADS[name]
        program = nir.trace(w.fn, *w.make_inputs(size, seed)).program
        log(f"== tuning {name} ({i}/{len(names)}), {minutes:g} min")
        t0 = time.monotonic()
        report = tune_program(program, "llvm", db, name=name, minutes=minutes, backends=backends, seed=seed,
                              log=lambda m, t0=t0: log(f"   [{time.monotonic() - t0:6.1f}s] {m}"))
        winner = report.winner
        log(f"== {name}: winner {winner.backend if winner else '-'} "
            f"({winner.tuned_ms:.3f} ms)" if winner else f"== {name}: nothing tuned")
        reports.append(report.to_json())
    return reports


def headline_rows(bench: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(workload, nir-auto-tuned / best peer, best peer and its time, note) from a bench JSON result."""
    rows = []
    for w in bench["workloads"]:
        auto = next((v for v in w["variants"] if v["name"] == "nir-auto-tuned"), None)
        peer = next((v for v in w["variants"] if v["name"] == w.get("best_peer")), None)
        ratio = "-" if auto is None or auto.get("ratio") is None else f"{auto['ratio']:.2f}"
        best = "-" if peer is None or peer.get("median_s") is None else f"{w['best_peer']} {peer['median_s'] * 1e3:.3f} ms"
        note = "" if auto is None else (auto.get("note") or ("" if auto.get("status") == "ok" else auto["status"]))
        rows.append((w["name"], ratio, best, note))
    return rows


def _worker(args: argparse.Namespace) -> int:
    """One thread count, in this process: pin threads, tune, bench."""
    from .variants import set_threads
    set_threads(args.threads_one)  # before torch, jax or TVM start a thread pool
    from . import main as bench_main
    from .workloads import select
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = args.threads_one
    db = out / f"tuning-{n}"
    names = [w.name for w in select(args.workloads)]
    backends = [b.strip() for b in args.backends.split(",")] if args.backends else None
    if args.minutes > 0:
        t0 = time.monotonic()
        reports = tune_all(names, args.size, args.minutes, db, backends, args.seed,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
        (out / f"tune-{n}.json").write_text(json.dumps({"minutes_per_workload": args.minutes, "threads": n,
                                                        "seconds": round(time.monotonic() - t0, 1),
                                                        "reports": reports}, indent=1, default=str))
    argv = ["--threads", str(n), "--size", args.size, "--workloads", ",".join(names), "--tuning", str(db),
            "--json", str(out / f"bench-{n}.json"), "--plot", str(out / f"bench-{n}.png"),
            "--markdown", str(out / f"bench-{n}.md"), "--seed", str(args.seed)]
    if args.backends:
        argv += ["--backends", args.backends]
    if args.peers:
        argv += ["--peers", args.peers]
    if args.rounds:
        argv += ["--rounds", str(args.rounds)]
    if args.memory:
        argv += ["--memory", args.memory]
    code = bench_main.main(argv)
    bench = json.loads((out / f"bench-{n}.json").read_text())
    print(f"\nheadline, {n} thread(s): nir-auto-tuned (backend='auto' with {db}) over the best peer")
    print(f"{'workload':<16} {'auto/peer':>9}  {'best peer':<28} note")
    for name, ratio, best, note in headline_rows(bench):
        print(f"{name:<16} {ratio:>9}  {best:<28} {note}")
    return code


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m nir.bench.headline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0,
                   help="tuning budget per workload, wall-clock (default: 5; 0 reuses the database as it is)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, one run each (default: 1,2)")
    p.add_argument("--workloads", default=None, help="comma-separated workloads or families (default: all)")
    p.add_argument("--size", choices=("small", "full"), default="full", help="input size (default: full)")
    p.add_argument("--backends", default=None, help="nir backends to tune and bench (default: every installed one)")
    p.add_argument("--peers", default=None, help="comma-separated peers (default: nir bench's, all of them)")
    p.add_argument("--rounds", type=int, default=None, help="bench timing rounds (default: nir bench's)")
    p.add_argument("--memory", choices=("process", "cheap"), default=None, help="bench memory mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="headline", help="output directory (default: ./headline)")
    p.add_argument("--threads-one", type=int, default=None, help=argparse.SUPPRESS)  # a worker's thread count
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m nir.bench.headline``; one worker process per thread count."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads_one is not None:
        return _worker(args)
    status = 0
    for n in (int(t) for t in args.threads.split(",") if t.strip()):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n),
                   TVM_NUM_THREADS=str(n))
        cmd = [sys.executable, "-m", "nir.bench.headline", *(argv if argv is not None else sys.argv[1:]),
               "--threads-one", str(n)]
        status = max(status, subprocess.run(cmd, env=env).returncode)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
