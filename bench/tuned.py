"""Untuned vs tuned, per backend and with ``backend="auto"``, against numpy and torch in the same run:

    python -m nir.bench.tuned [--trials 256 | --minutes 5] [--workloads matmul,conv3x3,mlp,attention] [--db DIR]

For each workload `nir tune`'s search runs (layouts, XLA options, TVM MetaSchedule with ``--trials`` or a
``--minutes`` wall-clock budget), then the untuned and the tuned programs are compiled the way a user
compiles them (``nir.compile(..., tuning=DB)``) and timed round-robin with the numpy and torch peers
(`nir.tune.measure.measure_interleaved`: outputs complete, the order rotating each round). Prints per
variant the median and minimum ms, the ratio of medians to the best peer, the chosen layout, and the
tuning wall time. Not a test: timings on shared machines vary.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

import nir
from nir.bench.workloads import WORKLOADS
from nir.extras import exit_unless_installed
from nir.tune.measure import Timing, measure_interleaved
from nir.tune.search import tune_program


def matmul(a: nir.NamedTensor, b: nir.NamedTensor) -> nir.NamedTensor:
    """512^3 fp32 matmul, by name."""
    return nir.contract(a, b, over="K")


def _matmul_inputs() -> list[nir.NamedTensor]:
    rng = np.random.default_rng(0)
    return [nir.tensor(rng.standard_normal((512, 512), dtype=np.float32), names=n) for n in (("M", "K"), ("K", "N"))]


def _peers(name: str) -> dict[str, Callable[..., Any]]:
    if name == "matmul":
        import torch
        return {"numpy": lambda a, b: a @ b, "torch": lambda a, b: torch.from_numpy(a) @ torch.from_numpy(b)}
    w = WORKLOADS[name]
    out = {}
    for peer in ("numpy", "torch"):
        fn = w.peers[peer]()
        if peer == "torch":
            import torch
            out[peer] = (lambda f: lambda *xs: f(*(torch.from_numpy(x) for x in xs)))(fn)
        else:
            out[peer] = fn
    return out


def run(names: Sequence[str], trials: int, minutes: float | None, db: str, backends: Sequence[str]) -> None:
    """Tune and time each workload; print one table per workload."""
    import torch
    torch.set_num_threads(int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1)))
    for name in names:
        fn, inputs = (matmul, _matmul_inputs()) if name == "matmul" else (
            WORKLOADS[name].fn, WORKLOADS[name].make_inputs("full", 0))
        program = nir.trace(fn, *inputs).program
        t0 = time.perf_counter()
        report = tune_program(program, "llvm", db, name=name, backends=backends, trials=trials, minutes=minutes)
        search_s = time.perf_counter() - t0
        arrays = [x.numpy() for x in inputs]
        thunks: dict[str, Callable[[], Any]] = {k: (lambda p: lambda: p(*arrays))(p) for k, p in _peers(name).items()}
        for r in report.results:
            if r.error:
                print(f"{name}: {r.backend} failed to tune: {r.error}")
                continue
            for label, tuning in (("untuned", None), ("tuned", db)):
                c = nir.compile(fn, backend=r.backend, tuning=tuning).lower(*inputs)
                thunks[f"nir-{r.backend}-{label}"] = (lambda c: lambda: c(*inputs))(c)
        auto = nir.compile(fn, backend="auto", tuning=db).lower(*inputs)
        thunks[f"nir-auto-tuned ({auto.backend})"] = lambda: auto(*inputs)
        times: dict[str, Timing] = measure_interleaved(thunks, min_time_s=1.0, rounds=15)
        best_peer = min(times[k].median_ms for k in ("numpy", "torch"))
        budget = f"{minutes:g} min" if minutes is not None else f"{trials} trials per backend"
        print(f"\n{name}  (tuning: {search_s:.0f} s for {', '.join(backends)}, {budget})")
        print(f"  {'variant':<26} {'median ms':>10} {'min ms':>10} {'x best peer':>11}  layout")
        for k, t in times.items():
            layout = next((r.layout for r in report.results if k == f"nir-{r.backend}-tuned"), "")
            print(f"  {k:<26} {t.median_ms:10.3f} {t.min_ms:10.3f} {t.median_ms / best_peer:11.2f}  {layout}")
        w = report.winner
        print(f"  winner by the tuner's side-by-side medians: {w.backend if w else '-'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m nir.bench.tuned``."""
    exit_unless_installed("python -m nir.bench.tuned", "torch")
    p = argparse.ArgumentParser(prog="python -m nir.bench.tuned", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="matmul,conv3x3,mlp,attention")
    p.add_argument("--trials", type=int, default=256)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock tuning budget per workload")
    p.add_argument("--backends", default=",".join(b for b in ("tvm", "xla") if nir.backends.installed(b)))
    p.add_argument("--db", default=None, help="tuning database (default: a temporary directory)")
    args = p.parse_args(list(argv) if argv is not None else None)
    db = args.db or tempfile.mkdtemp(prefix="nir-tuned-")
    run(args.workloads.split(","), args.trials, args.minutes, db, args.backends.split(","))
    print(f"\ntuning database: {db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
