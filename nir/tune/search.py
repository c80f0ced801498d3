"""The tuner: for one program and target, per installed backend, measure the untuned build, the layout
strategies, the backend's compile options and its own schedule search (TVM's MetaSchedule), keep the
fastest configuration in the tuning database, and report.

Every figure is the time of the call a user makes (`measure.user_call`: `nir.compile` of the candidate,
called with NamedTensors, outputs complete), candidates measured round-robin within each stage, and the
winners of all backends measured round-robin once more at the end so that `backend="auto"` compares
figures taken side by side. Decisions use the median (`measure.STATISTIC`); the minimum is kept too.
Every candidate built on this machine is run once and checked against the program's float64 answer
(`nir.precision`) before it is timed: one that computes a wrong answer where the untuned build is right
is recorded with the error and never kept (`WrongAnswer`). A timing during which other processes took
CPU (`measure.OtherLoad`: a kernel with a thread per core then runs several times slower than on a quiet
machine) is taken again, up to `RETIMES` times, and the least disturbed one kept; what other processes
used is reported per backend (``others_cores``), with a warning when it stayed above `measure.BUSY_CORES`.

Budget: ``trials`` (schedule-search trials per backend) or ``minutes`` (wall-clock for the whole program:
backends without a schedule search go first, with at most `OTHERS_SHARE` of it; a backend with one
spends at most `SETUP_SHARE` of its time on the untuned build, layouts and options, keeps what the
final build and timings need, and searches for the rest).

A backend module may provide (all optional):
    tuning_options(target) -> list[dict]            # compile-option candidates (XLA)
    tune(program, target, work_dir=, trials=, seconds=, rpc=, seed=, inputs=, executable=, log=) -> dict
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
from ..precision import Expected, expected, mismatch
from ..target import Target, parse_target
from ..testing import random_inputs
from .database import TuningDatabase, TuningRecord, signature_of
from .measure import STATISTIC, Timing, busy, measure_interleaved, others_cores, user_call, wait
from .space import apply_layouts, layout_candidates

__all__ = ["tune_program", "TuneReport", "BackendResult", "TuningError", "WrongAnswer", "backend_version",
           "config_for"]

SETUP_SHARE = 0.2   # of a searching backend's time, at most this much goes to layouts and options
OTHERS_SHARE = 0.3  # of the budget, at most this much goes to backends without a schedule search
ROUNDS = 7          # samples per candidate when timing side by side (5 for calls slower than 0.2 s)
# the backends' winners, compared for backend="auto", are timed longer and in more samples: in the
# 2026-12-03 headline one backend's median in a 0.2 s comparison came out 1.6-2.3x its own figure of a
# minute before, with no other process busy (so not OtherLoad's to see), and decided softmax (1 thread)
# and rnn_scan_512 (2 threads) for the slower backend
FINAL_TIME = 5
FINAL_ROUNDS = 15
RETIMES = 2         # times a timing disturbed by other processes is taken again
RETIME_PAUSE_S = 1.0


class TuningError(RuntimeError):
    """Tuning cannot run as asked (no device to measure on, nothing installed that serves the target)."""


class WrongAnswer(TuningError):
    """A candidate build's outputs differ from the program's answer (`nir.precision`): it is never kept."""


class _Answer:
    """The program's float64 answer on the tuner's inputs and the tolerance its conditioning allows
    (`nir.precision.expected`: its rounding noise, from the run at the program's dtype and perturbed
    float64 runs), computed on first use; `problem` says how a build's outputs differ from it.

    A schedule can compile and run fast and still be wrong: TVM 0.27's FlattenBuffer mis-flattens some
    loads under fused loops (docs/performance.md), and MetaSchedule fuses loops freely."""

    def __init__(self, program: Program, inputs: Sequence[np.ndarray]) -> None:
        self.program, self.inputs = program, inputs
        self._exp: Expected | None = None

    def problem(self, call: Callable[[], Any]) -> str | None:
        """Run ``call`` once: None when its outputs match the answer, else what differs."""
        if self._exp is None:
            self._exp = expected(self.program, self.inputs)
        outs = wait(call())
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        got = [_logical(t, v.type.user_names) for t, v in zip(outs, self.program.outputs)]
        return mismatch(got + outs[len(got):], self._exp)


def _logical(t: Any, names: Sequence[str | None]) -> np.ndarray:
    """A compiled call's output as numpy in the program's dim order ``names``."""
    data = np.asarray(t.numpy() if hasattr(t, "numpy") else t)
    have = tuple(getattr(t, "names", names))
    if have == tuple(names) or None in have:
        return data
    return data.transpose([have.index(n) for n in names])


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
    """What tuning found for one backend (times in ms per call: medians, and minimums beside them)."""

    backend: str
    untuned_ms: float | None = None
    tuned_ms: float | None = None
    untuned_min_ms: float | None = None
    tuned_min_ms: float | None = None
    layout: str = "logical"
    layouts: dict[str, list[int]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    backend_state: str | None = None
    record_path: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str | None = None
    others_cores: float | None = None  # CPU other processes used during the final timing (`OtherLoad`)
    unchecked: str | None = None  # why its candidates were not checked against the answer

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
    seconds: float = 0.0
    statistic: str = STATISTIC

    @property
    def winner(self) -> BackendResult | None:
        ok = [r for r in self.results if r.tuned_ms is not None]
        return min(ok, key=lambda r: r.tuned_ms) if ok else None  # type: ignore[arg-type,return-value]

    def to_json(self) -> dict[str, Any]:
        w = self.winner
        return {"name": self.name, "fingerprint": self.fingerprint, "target": self.target,
                "winner": w.backend if w else None, "statistic": self.statistic, "seconds": self.seconds,
                "backends": [{**r.__dict__, "speedup": r.speedup} for r in self.results]}


class _Clock:
    """A wall-clock budget (None: unlimited)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


class _Bench:
    """Builds candidates of one backend and times them the way users run them (round-robin), or on
    an RPC tracker's device when ``rpc`` is given (one at a time, by TVM's time_evaluator)."""

    def __init__(self, mod: Any, backend: str, target: Target, inputs: Sequence[np.ndarray], rpc: str | None,
                 min_time_s: float, log: Callable[[str], None] = lambda msg: None, rounds: int | None = None,
                 answer: _Answer | None = None) -> None:
        self.mod, self.backend, self.target, self.inputs = mod, backend, target, inputs
        self.answer = answer  # every local build is checked against it before it can be timed
        self.unchecked: str | None = None  # why builds are not checked (the untuned one differs)
        self._first_checked = False
        self.rpc, self.min_time_s, self.log, self._rounds = rpc, min_time_s, log, rounds
        self.build_s = 0.0  # the longest build so far
        self.call_s = 0.0   # the slowest median call so far

    def build(self, program: Program, options: dict[str, Any], what: str) -> Any:
        """``program`` built with ``options``; on this machine, also run once and checked against the
        answer. The first build (the untuned one) sets the bar: when it matches, a later build that
        differs raises `WrongAnswer`; when it differs itself (a program whose answer rounding decides,
        like a long tanh recurrence, or the backend's own bug: the untuned build is what runs without a
        record anyway), ``unchecked`` says why and later builds are not checked. ``what`` names the build."""
        t0 = time.perf_counter()
        if self.rpc is not None and hasattr(self.mod, "measure_remote"):
            built = self.mod.build(program, self.target, **options)
        else:
            built = user_call(program, self.target, self.backend, self.inputs, **options)
            if self.answer is not None and self.unchecked is None:
                problem = self.answer.problem(built)
                if problem is not None and not self._first_checked:
                    self.unchecked = f"the untuned build differs from the float64 answer: {problem}"
                    self.log(f"[{self.backend}] not checking its candidates: {self.unchecked}")
                elif problem is not None:
                    raise WrongAnswer(f"{self.backend}'s {what} build computes a wrong answer on the tuner's "
                                      f"random inputs, where the untuned build is right ({problem}); it is not "
                                      "kept. Report it with the program (`nir.text`) and the target")
                self._first_checked = True
        self.build_s = max(self.build_s, time.perf_counter() - t0)
        return built

    def time(self, built: dict[str, Any]) -> dict[str, Timing]:
        if self.rpc is not None and hasattr(self.mod, "measure_remote"):
            times = {k: self.mod.measure_remote(exe, self.inputs, self.rpc) for k, exe in built.items()}
        else:
            times = self._quietest(built)
        self.call_s = max([self.call_s, *(t.median_ms / 1e3 for t in times.values())])
        return times

    def _quietest(self, built: dict[str, Any]) -> dict[str, Timing]:
        """``built`` timed side by side; again (after a pause) while other processes took CPU meanwhile,
        up to `RETIMES` times, keeping the least disturbed timing."""
        times = measure_interleaved(built, min_time_s=self.min_time_s, rounds=self.rounds)
        for _ in range(RETIMES):
            load = others_cores(times)
            if not busy(load):
                break
            self.log(f"[{self.backend or 'all'}] other processes used {load:.2f} cores while timing "
                     f"{', '.join(built)}; timing again")
            time.sleep(RETIME_PAUSE_S)
            again = measure_interleaved(built, min_time_s=self.min_time_s, rounds=self.rounds)
            if (others_cores(again) or 0.0) < load:
                times = again
        return times

    def reserve_s(self, candidates: int) -> float:
        """Seconds to keep for one more build, timing ``candidates`` side by side, and the comparison
        across backends (two more)."""
        per_sample = max(self.call_s, self.min_time_s / self.rounds)
        return self.build_s + (candidates + 2) * (self.rounds + 1) * per_sample + 5.0

    @property
    def rounds(self) -> int:
        return self._rounds or (ROUNDS if self.call_s < 0.2 else 5)


def tune_program(program: Program, target: str | Target, db: TuningDatabase | str | os.PathLike, *,
                 name: str = "program", backends: Sequence[str] | None = None, trials: int = 64,
                 minutes: float | None = None, rpc: str | None = None, seed: int = 0, min_time_s: float = 0.2,
                 log: Callable[[str], None] = lambda msg: None) -> TuneReport:
    """Tune ``program`` for ``target`` on each backend, store the winners in ``db``, return a report.

    Budget: ``minutes`` of wall-clock time for the whole program when given, else ``trials`` schedule-
    search trials per backend (MetaSchedule trials for TVM). ``rpc`` is ``HOST:PORT:KEY`` of a TVM RPC
    tracker whose devices measure the candidates.
    """
    started = time.monotonic()
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
    names.sort(key=_searches)  # backends without a schedule search first: the searches take what is left
    clock = _Clock(None if minutes is None else minutes * 60)
    inputs = random_inputs(program, seed=seed)
    answer = _Answer(program, inputs)
    results, winners, records = [], {}, {}
    for k, b in enumerate(names):
        res = BackendResult(b)
        results.append(res)
        t0 = time.monotonic()
        try:
            mod = _backends.get(b)
            if not mod.serves(target):
                raise TuningError(f"backend {b!r} cannot serve target {str(target)!r}")
            own = _share(clock.left(), names[k:])
            bench = _Bench(mod, b, target, inputs, rpc, min_time_s, log, answer=answer)
            winners[b] = _tune_backend(mod, b, program, target, db, res, bench, trials, own, seed, log)
            res.unchecked = bench.unchecked
            records[b] = _record(program, target, b, res)
            res.record_path = str(db.put(records[b]))
        except Exception as e:  # noqa: BLE001 - one backend failing must not lose the others' results
            where = traceback.extract_tb(e.__traceback__)[-1]
            res.error = f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:{where.lineno})"
            log(f"[{b}] failed: {res.error}")
            if os.environ.get("NIR_DEBUG"):
                traceback.print_exc()
        res.seconds = round(time.monotonic() - t0, 1)
    if len(winners) > 1 and rpc is None:  # the backends' winners side by side: what backend="auto" decides by
        log(f"measuring the winners of {', '.join(winners)} side by side")
        final = _Bench(None, "", target, inputs, None, FINAL_TIME * min_time_s, log, rounds=FINAL_ROUNDS)
        for b, t in final.time(winners).items():
            res = next(r for r in results if r.backend == b)
            res.tuned_ms, res.tuned_min_ms, res.others_cores = t.median_ms, t.min_ms, t.others_cores
            records[b].times_ms.update(tuned=t.median_ms, tuned_min=t.min_ms)
            res.record_path = str(db.put(records[b], replace=True))
    for r in (r for r in results if busy(r.others_cores)):
        log(f"[{r.backend}] warning: other processes used {r.others_cores:.2f} cores while it was timed; its "
            "figures may be several times its time on a quiet machine (tune again when the machine is quiet)")
    return TuneReport(name, program.fingerprint(), str(target), results, round(time.monotonic() - started, 1))


def _share(left: float | None, names: Sequence[str]) -> float | None:
    """The seconds ``names[0]`` may use of ``left``: backends without a schedule search share
    `OTHERS_SHARE` of it while a searching one follows (their candidates only need compiling and
    timing), the searching ones split the rest."""
    if left is None:
        return None
    searchers = [n for n in names if _searches(n)]
    if not _searches(names[0]):
        others = len(names) - len(searchers)
        return left * (OTHERS_SHARE if searchers else 1.0) / others
    return left / len(searchers)


def _searches(backend: str) -> bool:
    try:
        return hasattr(_backends.get(backend), "tune")
    except Exception:  # noqa: BLE001 - unknown or not installed: reported when tuned
        return False


def _record(program: Program, target: Target, b: str, res: BackendResult) -> TuningRecord:
    return TuningRecord(
        fingerprint=program.fingerprint(), signature=signature_of(program), target=str(target), backend=b,
        backend_version=backend_version(b),
        config={"layout": res.layout, "layouts": res.layouts, "options": res.options,
                "backend_state": res.backend_state},
        times_ms={"untuned": res.untuned_ms, "tuned": res.tuned_ms, "untuned_min": res.untuned_min_ms,
                  "tuned_min": res.tuned_min_ms},
        candidates=res.candidates, nir_version=backend_version("reference"), statistic=STATISTIC)


def _entry(layout: str, options: dict[str, Any], t: Timing | None, **extra: Any) -> dict[str, Any]:
    out = {"layout": layout, "options": options, **extra}
    if t is not None:
        out.update(ms=t.median_ms, min_ms=t.min_ms, others_cores=t.others_cores)
    return out


def _tune_backend(mod: Any, b: str, program: Program, target: Target, db: TuningDatabase, res: BackendResult,
                  bench: _Bench, trials: int, seconds: float | None, seed: int,
                  log: Callable[[str], None]) -> Any:
    """Tune one backend into ``res``; returns the winner's built call (for the side-by-side timing)."""
    clock = _Clock(seconds)
    setup = _Clock(None if seconds is None else seconds * (SETUP_SHARE if hasattr(mod, "tune") else 1.0))
    log(f"[{b}] building the untuned program" + ("" if seconds is None else f" (budget {seconds:.0f} s)"))
    untuned = bench.build(program, {}, "untuned")
    best: dict[str, Any] = {"label": "logical", "layout": "logical", "layouts": {}, "options": {}, "built": untuned}

    def stage(cands: dict[str, tuple[Program, dict[str, Any], dict[str, Any]]], what: str) -> None:
        """Build and time ``cands`` ({label: (program, options, config)}) against the best so far."""
        built = {best["label"]: best["built"]}
        for label, (p, opts, _) in cands.items():
            if setup.left() is not None and setup.left() < bench.build_s:
                res.candidates.append(_entry(cands[label][2]["layout"], opts, None, skipped="out of time"))
                continue
            log(f"[{b}] {what} {label}")
            try:
                built[label] = bench.build(p, opts, f"{what} {label}")
            except Exception as e:  # noqa: BLE001 - a candidate that fails to build is recorded, not fatal
                res.candidates.append(_entry(cands[label][2]["layout"], opts, None, error=f"{type(e).__name__}: {e}"))
        if len(built) == 1:
            return
        times = bench.time(built)
        for label, t in times.items():
            layout_, opts_ = (cands[label][2]["layout"], cands[label][1]) if label in cands else (best["layout"],
                                                                                                 best["options"])
            res.candidates.append(_entry(layout_, opts_, t))
        top = min(times, key=lambda k: times[k].median_ms)
        if top != best["label"]:
            best.update(label=top, built=built[top], **cands[top][2])

    stage({c.name: (apply_layouts(program, c.layouts), {}, {"layout": c.name, "layouts":
           {str(k): list(v) for k, v in c.layouts.items()}}) for c in layout_candidates(program)[1:]}, "layout")
    layout = best["label"]
    laid_out = apply_layouts(program, best["layouts"])
    opts_cands = {json.dumps(o, sort_keys=True): (laid_out, o, {"layout": layout, "options": o})
                  for o in getattr(mod, "tuning_options", lambda t: [])(target)}
    stage(opts_cands, "options")
    final = {"untuned": untuned}
    if best["built"] is not untuned:
        final["best"] = best["built"]
    left, state, search_entry = clock.left(), None, {}
    if hasattr(mod, "tune") and (trials > 0 if left is None else left > bench.reserve_s(3) + 10):
        work_dir = db.backend_dir(b, str(target))
        search_s = None if left is None else left - bench.reserve_s(3)
        log(f"[{b}] schedule search in {work_dir}: "
            + (f"{trials} trials" if search_s is None else f"{search_s:.0f} s"))
        t0 = time.perf_counter()
        res.search = mod.tune(laid_out, target, work_dir=work_dir, trials=trials, seconds=search_s, rpc=bench.rpc,
                              seed=seed, inputs=bench.inputs, executable=getattr(best["built"], "executable", None),
                              log=log)
        search_entry = {"schedules": "searched", "search_s": round(time.perf_counter() - t0, 1)}
        try:
            final["searched"] = bench.build(laid_out, {**best["options"], "tuning_db": str(work_dir)}, "searched")
            state = os.path.relpath(work_dir, db.path)
        except WrongAnswer as e:
            log(f"[{b}] {e}")
            res.candidates.append(_entry(best["layout"], best["options"], None, **search_entry, error=str(e)))
    log(f"[{b}] measuring {', '.join(final)} side by side")
    times = bench.time(final)
    if "searched" in times:
        res.candidates.append(_entry(best["layout"], best["options"], times["searched"], **search_entry))
    top = min(times, key=lambda k: times[k].median_ms)
    if top == "untuned":
        best.update(layout="logical", layouts={}, options={})
    res.untuned_ms, res.untuned_min_ms = times["untuned"].median_ms, times["untuned"].min_ms
    res.tuned_ms, res.tuned_min_ms = times[top].median_ms, times[top].min_ms
    res.others_cores = times[top].others_cores
    res.layout, res.layouts, res.options = best["layout"], best["layouts"], best["options"]
    res.backend_state = state if top == "searched" else None
    log(f"[{b}] {res.untuned_ms:.3f} ms -> {res.tuned_ms:.3f} ms ({res.layout}, options {json.dumps(res.options)})")
    return final[top]


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
