"""The tuner: for one program and target, per installed backend, measure the untuned build, the layout
strategies, the backend's compile options and its own schedule search (TVM's MetaSchedule), keep the
fastest configuration in the tuning database, and report.

A backend module may provide (all optional):
    tuning_options(target) -> list[dict]            # compile-option candidates (XLA)
    tune(program, target, work_dir, trials, rpc, seed, log) -> None
                                                     # schedule search into work_dir (TVM); build(...,
                                                     #   tuning_db=work_dir) then applies it
    measure_remote(executable, inputs, rpc) -> Timing  # measure on a remote device (TVM RPC)
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import backends as _backends
from ..ir import Program, verify
from ..target import Target, parse_target
from ..testing import random_inputs
from .database import TuningDatabase, TuningRecord, signature_of
from .measure import Timing, measure
from .space import apply_layouts, layout_candidates

__all__ = ["tune_program", "TuneReport", "BackendResult", "TuningError", "backend_version", "config_for"]


class TuningError(RuntimeError):
    """Tuning cannot run as asked (no device to measure on, nothing installed that serves the target)."""


def backend_version(name: str) -> str:
    """The version that keys records for backend ``name`` (the compiler package's version)."""
    from importlib.metadata import PackageNotFoundError, version
    package = {"tvm": "apache-tvm", "xla": "jaxlib"}.get(name)
    if package is None:
        from .. import __version__
        return f"nir-{__version__}"
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@dataclass
class BackendResult:
    """What tuning found for one backend."""

    backend: str
    untuned_ms: float | None = None
    tuned_ms: float | None = None
    layout: str = "logical"
    options: dict[str, Any] = field(default_factory=dict)
    record_path: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.untuned_ms and self.tuned_ms:
            return self.untuned_ms / self.tuned_ms
        return None


@dataclass
class TuneReport:
    """The outcome of tuning one program on one target."""

    name: str
    fingerprint: str
    target: str
    results: list[BackendResult]

    @property
    def winner(self) -> BackendResult | None:
        ok = [r for r in self.results if r.tuned_ms is not None]
        return min(ok, key=lambda r: r.tuned_ms) if ok else None  # type: ignore[arg-type,return-value]

    def to_json(self) -> dict[str, Any]:
        w = self.winner
        return {"name": self.name, "fingerprint": self.fingerprint, "target": self.target,
                "winner": w.backend if w else None,
                "backends": [{**r.__dict__, "speedup": r.speedup} for r in self.results]}


def _measure(mod: Any, exe: Any, inputs: Sequence[np.ndarray], rpc: str | None, min_time_s: float) -> Timing:
    if rpc is not None and hasattr(mod, "measure_remote"):
        return mod.measure_remote(exe, inputs, rpc)
    return measure(exe, inputs, min_time_s=min_time_s)


def tune_program(program: Program, target: str | Target, db: TuningDatabase | str | os.PathLike, *,
                 name: str = "program", backends: Sequence[str] | None = None, trials: int = 64,
                 rpc: str | None = None, seed: int = 0, min_time_s: float = 0.2,
                 log: Callable[[str], None] = lambda msg: None) -> TuneReport:
    """Tune ``program`` for ``target`` on each backend, store the winners in ``db``, return a report.

    ``trials`` is the schedule-search budget per backend (MetaSchedule trials for TVM). ``rpc`` is
    ``HOST:PORT:KEY`` of a TVM RPC tracker whose devices measure the candidates.
    """
    target = parse_target(target)
    db = db if isinstance(db, TuningDatabase) else TuningDatabase(db)
    verify(program)
    names = list(backends) if backends is not None else [b for b in _backends.for_target(target)
                                                         if b != "reference"]
    if not names:
        raise TuningError(f"no installed backend serves target {str(target)!r}; install "
                          f"{' or '.join(_backends.INSTALL_HINT.values())}")
    if target.kind != "llvm" and rpc is None:
        raise TuningError(f"tuning for {str(target)!r} measures on that device, and this machine runs only "
                          "llvm here; pass --rpc HOST:PORT:KEY of a TVM RPC tracker that has the device")
    inputs = random_inputs(program, seed=seed)
    results = []
    for b in names:
        res = BackendResult(b)
        results.append(res)
        try:
            mod = _backends.get(b)
            if not mod.serves(target):
                raise TuningError(f"backend {b!r} cannot serve target {str(target)!r}")
            _tune_backend(mod, b, program, target, db, res, inputs, trials, rpc, seed, min_time_s, log)
        except Exception as e:  # noqa: BLE001 - one backend failing must not lose the others' results
            where = traceback.extract_tb(e.__traceback__)[-1]
            res.error = f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:{where.lineno})"
            log(f"[{b}] failed: {res.error}")
            if os.environ.get("NIR_DEBUG"):
                traceback.print_exc()
    return TuneReport(name, program.fingerprint(), str(target), results)


def _tune_backend(mod: Any, b: str, program: Program, target: Target, db: TuningDatabase, res: BackendResult,
                  inputs: Sequence[np.ndarray], trials: int, rpc: str | None, seed: int, min_time_s: float,
                  log: Callable[[str], None]) -> None:
    def timed(p: Program, **options: Any) -> float:
        exe = mod.build(p, target, **options)
        return _measure(mod, exe, inputs, rpc, min_time_s).median_ms

    log(f"[{b}] measuring the untuned build")
    res.untuned_ms = timed(program)
    best = {"ms": res.untuned_ms, "layout": "logical", "layouts": {}, "options": {}, "state": None}
    res.candidates.append({"layout": "logical", "options": {}, "ms": res.untuned_ms})
    for cand in layout_candidates(program)[1:]:
        log(f"[{b}] layout {cand.name}")
        try:
            ms = timed(apply_layouts(program, cand.layouts))
        except Exception as e:  # noqa: BLE001 - a candidate that fails to build is recorded, not fatal
            res.candidates.append({"layout": cand.name, "options": {}, "error": f"{type(e).__name__}: {e}"})
            continue
        res.candidates.append({"layout": cand.name, "options": {}, "ms": ms})
        if ms < best["ms"]:
            best.update(ms=ms, layout=cand.name, layouts={str(k): list(v) for k, v in cand.layouts.items()})
    laid_out = apply_layouts(program, best["layouts"])
    for opts in getattr(mod, "tuning_options", lambda t: [])(target):
        log(f"[{b}] options {json.dumps(opts, sort_keys=True)}")
        try:
            ms = timed(laid_out, **opts)
        except Exception as e:  # noqa: BLE001
            res.candidates.append({"layout": best["layout"], "options": opts, "error": f"{type(e).__name__}: {e}"})
            continue
        res.candidates.append({"layout": best["layout"], "options": opts, "ms": ms})
        if ms < best["ms"]:
            best.update(ms=ms, options=opts)
    if hasattr(mod, "tune") and trials > 0:
        work_dir = db.backend_dir(b, str(target))
        log(f"[{b}] schedule search: {trials} trials in {work_dir}")
        t0 = time.perf_counter()
        mod.tune(laid_out, target, work_dir=work_dir, trials=trials, rpc=rpc, seed=seed, log=log)
        ms = timed(laid_out, tuning_db=str(work_dir), **best["options"])
        res.candidates.append({"layout": best["layout"], "options": best["options"], "schedules": "searched",
                               "ms": ms, "search_s": round(time.perf_counter() - t0, 1)})
        if ms < best["ms"]:
            best.update(ms=ms, state=os.path.relpath(work_dir, db.path))
    res.tuned_ms, res.layout, res.options = best["ms"], best["layout"], best["options"]
    record = TuningRecord(
        fingerprint=program.fingerprint(), signature=signature_of(program), target=str(target), backend=b,
        backend_version=backend_version(b),
        config={"layout": best["layout"], "layouts": best["layouts"], "options": best["options"],
                "backend_state": best["state"]},
        times_ms={"untuned": res.untuned_ms, "tuned": best["ms"]}, candidates=res.candidates,
        nir_version=backend_version("reference"))
    res.record_path = str(db.put(record))
    log(f"[{b}] {res.untuned_ms:.3f} ms -> {best['ms']:.3f} ms ({best['layout']}); record {res.record_path}")


def config_for(program: Program, target: Target, db_path: str | os.PathLike, backend: str | None
               ) -> tuple[str, Program, dict[str, Any]] | None:
    """What ``nir.compile(..., tuning=db_path)`` applies: (backend, program with layouts, build options),
    or None when there is no usable record. ``backend=None`` picks the fastest recorded backend that is
    installed; records of another backend version are ignored (re-tune after upgrading)."""
    db = TuningDatabase(db_path)
    for rec in db.lookup(program, str(target), backend):
        if not _backends.installed(rec.backend) or rec.backend_version != backend_version(rec.backend):
            continue
        options = dict(rec.config.get("options", {}))
        state = rec.config.get("backend_state")
        if state:
            options["tuning_db"] = str(db.path / state)
        return rec.backend, apply_layouts(program, rec.config.get("layouts", {})), options
    return None
