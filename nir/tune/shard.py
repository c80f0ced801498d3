"""Shard maps by measurement: which named dim goes on which mesh axis.

    nir tune mlp --mesh data:2,model:2 --db tuning/            # 4 host devices in this process
    nir launch -n 2 --devices 2 nir tune mlp --mesh data:2,model:2 --db tuning/   # across 2 processes
    f = nir.compile(fn, backend="xla", mesh={"data": 2, "model": 2}, tuning="tuning/")   # applies the winner

The candidates give each mesh axis to the program's **batch dim** (data parallel), to its **largest
contraction dim** (model parallel: the Megatron split of a hidden dim, column-parallel into it and
row-parallel out of it), or to neither; every combination is a candidate (3 ** axes of them, e.g. for
``data:2,model:2``: unsharded (the program on one device), ``N`` on ``data``, ``N`` on ``model``,
``N`` on both, ``H`` on ``data``, ..., ``N`` on ``data`` and ``H`` on ``model``). A candidate the sizes
refuse (a mesh axis that does not divide its dim) is recorded with the reason and not measured. Each one
is compiled by XLA with the collectives it implies (all-reduces, all-gathers; counted from the optimized
HLO and stored with the times) and timed as the call a user makes, round-robin; the median decides.

The batch dim is ``--batch`` if given, else ``N`` if the program has it, else the dim that the most
values carry among dims no contraction sums over. Across processes every process builds and times the
same candidates the same number of times (process 0 decides the counts and the winner) and process 0
writes the record; the database must then be on a file system that every process reads.

Records live in ``DB/shard/`` as JSON, keyed by (program fingerprint, input signature, target, jaxlib
version, mesh, number of processes), beside the tuner's other records.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import pathlib
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping


from ..ir import Program, verify
from ..target import Target, parse_target
from ..testing import random_inputs
from .database import signature_of
from .measure import UserCall, measure_interleaved

__all__ = ["ShardCandidate", "ShardRecord", "ShardReport", "shard_dims", "shard_candidates", "tune_shard",
           "shard_for", "parse_mesh", "COLLECTIVES"]

RECORD_FORMAT = "nir-shard-record"
RECORD_VERSION = 1
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_COLLECTIVE = re.compile(r"\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")


def parse_mesh(text: str) -> dict[str, int]:
    """``data:2,model:2`` -> ``{"data": 2, "model": 2}`` (ValueError says what is wrong)."""
    mesh: dict[str, int] = {}
    for part in text.split(","):
        name, colon, size = part.strip().partition(":")
        if not colon or not name.isidentifier() or not size.isdigit() or int(size) < 1 or name in mesh:
            raise ValueError(f"--mesh {text!r}: {part.strip()!r} should be AXIS:SIZE with a new axis name and a "
                             "positive size, e.g. --mesh data:2,model:2")
        mesh[name] = int(size)
    return mesh


@dataclass(frozen=True)
class ShardCandidate:
    """One map of dims onto mesh axes, ``{dim: axes}``."""

    shard: Mapping[str, tuple[str, ...]]  # empty: no sharding, the program on one device (in each process)

    @property
    def label(self) -> str:
        """e.g. ``N:data H:model``, ``N:data+model`` or ``unsharded`` (one device per process)."""
        return " ".join(f"{d}:{'+'.join(a)}" for d, a in self.shard.items()) or "unsharded"

    def option(self) -> dict[str, str | list[str]]:
        """The ``shard=`` option of `nir.compile` (a single axis as a string)."""
        return {d: a[0] if len(a) == 1 else list(a) for d, a in self.shard.items()}


def shard_dims(program: Program, batch: str | None = None) -> tuple[str | None, str | None]:
    """(the batch dim, the largest contraction dim) of ``program``, by the names a user gives; either may be
    None."""
    names = {n for v in program.values() for n in v.type.names}
    user_name = {}  # a generated name -> the user's name it was renamed from (``x @ w`` renames F1 to _1)
    for e in program.eqns:
        if e.prim == "rename":
            for old, new in e.kwargs["mapping"]:
                if new.startswith("_"):
                    user_name[new] = user_name.get(old, old)
    contracted: dict[str, int] = {}
    for e in program.eqns:
        if e.prim == "contract":
            for d in e.kwargs["over"]:
                d_user = user_name.get(d, d)
                if not d_user.startswith("_"):
                    contracted.setdefault(d_user, e.inputs[0].type.sizes[d])
    model = max(contracted, key=lambda d: contracted[d]) if contracted else None  # first of the largest
    if batch is not None:
        if batch not in names:
            shown = sorted(n for n in names if not n.startswith("_"))
            raise ValueError(f"--batch {batch!r}: the program has no dim {batch!r}; its dims are {shown}")
    elif "N" in names:
        batch = "N"
    else:
        counts: dict[str, int] = {}
        for v in program.values():
            for n in v.type.names:
                if n not in contracted and not n.startswith("_") and v.type.sizes[n] > 1:
                    counts[n] = counts.get(n, 0) + 1
        batch = max(counts, key=lambda n: counts[n]) if counts else None
    return batch, (model if model != batch else None)


def shard_candidates(program: Program, mesh: Mapping[str, int], batch: str | None = None) -> list[ShardCandidate]:
    """Every way of giving each mesh axis to the batch dim, the largest contraction dim, or neither."""
    dims = [d for d in shard_dims(program, batch) if d is not None]
    out = []
    for choice in itertools.product([None, *dims], repeat=len(mesh)):
        shard = {d: tuple(a for a, c in zip(mesh, choice) if c == d) for d in dims}
        out.append(ShardCandidate({d: axes for d, axes in shard.items() if axes}))
    return out


@dataclass
class ShardRecord:
    """The measured winner for one (program, signature, target, jaxlib version, mesh, processes)."""

    fingerprint: str
    signature: list[dict[str, Any]]
    target: str
    backend_version: str
    mesh: dict[str, int]
    processes: int
    shard: dict[str, Any]
    times_ms: dict[str, float]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def key(self) -> str:
        return json.dumps([self.fingerprint, self.signature, self.target, self.backend_version, self.mesh,
                           self.processes], sort_keys=True)

    def filename(self) -> str:
        return f"{self.fingerprint}-{hashlib.sha256(self.key().encode()).hexdigest()[:16]}.json"

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, **asdict(self)}


def _directory(db: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(db) / "shard"


def _write(path: pathlib.Path, text: str) -> None:
    """Readers see the old record or the new one, never a part (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read(path: pathlib.Path) -> ShardRecord | None:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != RECORD_FORMAT or data.get("version") != RECORD_VERSION:
            return None
        return ShardRecord(**{k: data[k] for k in ShardRecord.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


def _jaxlib_version() -> str:
    from .search import backend_version
    return backend_version("xla")


def shard_for(program: Program, target: Target | str, db: str | os.PathLike, mesh: Mapping[str, int],
              processes: int) -> dict[str, Any] | None:
    """The ``shard=`` option measured best for ``program`` on ``mesh`` with ``processes`` processes, or None."""
    probe = ShardRecord(program.fingerprint(), signature_of(program), str(parse_target(target)), _jaxlib_version(),
                        {k: int(v) for k, v in mesh.items()}, processes, {}, {})
    found = _read(_directory(db) / probe.filename())
    return None if found is None or found.key() != probe.key() else dict(found.shard)


@dataclass
class ShardReport:
    """What `tune_shard` measured: per candidate its label, shard= option, collectives and times (or why
    it was not measured), and the winner."""

    name: str
    mesh: dict[str, int]
    processes: int
    batch: str | None
    model: str | None
    candidates: list[dict[str, Any]]
    winner: dict[str, Any] | None
    record_path: str | None
    seconds: float


def _collectives(hlo: str) -> dict[str, int]:
    counts = {c: 0 for c in COLLECTIVES}
    for m in _COLLECTIVE.finditer(hlo):
        counts[m.group(1)] += 1
    return {c: n for c, n in counts.items() if n}


def tune_shard(program: Program, target: Target | str, db: str | os.PathLike, mesh: Mapping[str, int], *,
               name: str = "program", batch: str | None = None, min_time_s: float = 2.0, rounds: int = 7,
               seed: int = 0, log: Callable[[str], None] = lambda msg: None) -> ShardReport:
    """Measure every candidate shard map of ``program`` on ``mesh`` (XLA), store the fastest in ``db``.
    Each candidate is timed for about ``min_time_s`` in all, in ``rounds`` samples taken round-robin."""
    from .. import backends as _backends
    from ..compile import Compiled
    from ..tensor import from_array
    started = time.monotonic()
    target = parse_target(target)
    verify(program)
    _backends.get("xla")  # says what to install if jax is missing
    from ..backends.xla.distributed import broadcast_from_main, host_devices, info
    from ..backends.xla.shard import ShardingError
    mesh = {k: int(v) for k, v in mesh.items()}
    host_devices(math.prod(mesh.values()))
    here = info()
    batch, model = shard_dims(program, batch)
    inputs = random_inputs(program, seed=seed)  # the same in every process: whole inputs, as a user passes
    tensors = [from_array(a, names=v.type.user_names) for a, v in zip(inputs, program.inputs)]
    rows: list[dict[str, Any]] = []
    calls: dict[str, Callable[[], Any]] = {}
    for cand in shard_candidates(program, mesh, batch):
        row: dict[str, Any] = {"label": cand.label, "shard": cand.option()}
        rows.append(row)
        log(f"[shard] building {cand.label}")
        try:
            compiled = Compiled(program, target, "xla", mesh=mesh, shard=cand.option()) if cand.shard else \
                Compiled(program, target, "xla")
        except ShardingError as e:
            row["skipped"] = str(e)
            continue
        hlo = compiled.backend_ir("optimized_hlo")
        row["collectives"] = _collectives(hlo)
        calls[cand.label] = UserCall(compiled, tensors)
    log(f"[shard] timing {len(calls)} candidates round-robin")
    # a call sharded across processes waits in its collectives for all of them: every process makes as many
    timings = measure_interleaved(calls, min_time_s=min_time_s, rounds=rounds, agree=broadcast_from_main) \
        if calls else {}
    for row in rows:
        if row["label"] in timings:
            row.update(timings[row["label"]].to_json())
    if not calls:
        raise ValueError(f"no shard map of the program fits mesh {mesh}: " +
                         "; ".join(f"{r['label']}: {r['skipped']}" for r in rows))
    measured = [i for i, r in enumerate(rows) if "ms" in r]
    best = int(broadcast_from_main([min(measured, key=lambda i: rows[i]["ms"])])[0])  # process 0's figures decide
    winner = rows[best]
    path = None
    if here.is_main:
        unsharded = next((r for r in rows if r["label"] == "unsharded" and "ms" in r), None)
        record = ShardRecord(program.fingerprint(), signature_of(program), str(target), _jaxlib_version(), mesh,
                             here.num_processes, winner["shard"],
                             {"tuned": winner["ms"], "tuned_min": winner["min_ms"],
                              "unsharded": unsharded["ms"] if unsharded else None}, rows)
        p = _directory(db) / record.filename()
        _write(p, json.dumps(record.to_json(), indent=1, sort_keys=True))
        path = str(p)
    log(f"[shard] winner {winner['label']} ({winner['ms']:.3f} ms)")
    return ShardReport(name, mesh, here.num_processes, batch, model, rows, winner, path,
                       round(time.monotonic() - started, 1))


def tuned_options(program: Program, target: Target | str, db: str | os.PathLike,
                  options: Mapping[str, Any]) -> dict[str, Any]:
    """`nir.compile`'s build options with the measured shard map of ``db`` for ``options["mesh"]`` (no
    ``shard=`` given); an unsharded winner drops the mesh. ShardingError when ``db`` has no record."""
    from ..backends.xla.distributed import info
    from ..backends.xla.shard import ShardingError
    mesh, processes = options["mesh"], info().num_processes
    found = shard_for(program, target, db, mesh, processes)
    if found is None:
        dims = ", ".join(f"{k}:{v}" for k, v in mesh.items())
        raise ShardingError(
            f"the tuning database {str(db)!r} has no shard map for this program (inputs "
            f"{', '.join(v.type.pretty() for v in program.inputs)}) on mesh {dict(mesh)} with {processes} "
            f"process(es). Measure one with `nir tune ... --mesh {dims} --db {db}` (under `nir launch` for several "
            "processes), or pass shard=")
    if not found:
        return {k: v for k, v in options.items() if k != "mesh"}
    return {**options, "shard": found}


def print_report(report: ShardReport) -> None:
    """One line per candidate: collectives, median and min per call, and the winner."""
    print(f"\n{report.name}: shard maps on mesh {report.mesh} in {report.processes} process(es); batch dim "
          f"{report.batch}, largest contraction dim {report.model}; median ms per call (min), {report.seconds:.0f} s")
    print(f"{'shard map':<28} {'ms':>9} {'min':>9}  collectives")
    for r in report.candidates:
        if "ms" not in r:
            print(f"{r['label']:<28} skipped: {r['skipped']}")
            continue
        coll = ", ".join(f"{n} {c}" for c, n in r["collectives"].items()) or "none"
        mark = "  <- winner" if r is report.winner else ""
        print(f"{r['label']:<28} {r['ms']:>9.3f} {r['min_ms']:>9.3f}  {coll}{mark}")
    if report.record_path:
        print(f"record: {report.record_path}; nir.compile(..., backend='xla', mesh={report.mesh}, tuning=DB) "
              "applies it")


def main_mesh(program: Program, name: str, args: Any) -> int:
    """`nir tune WHAT --mesh AXIS:SIZE,...`: join the run when started by `nir launch`, measure, report."""
    import sys

    from ..backends import BackendError
    from ..distributed import initialize, launched
    try:
        mesh = parse_mesh(args.mesh)
    except ValueError as e:
        print(f"nir tune: {e}", file=sys.stderr)
        return 2
    if launched():
        initialize()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.json else (lambda msg: None)
    try:
        report = tune_shard(program, args.target, args.db, mesh, name=name, batch=args.batch, seed=args.seed, log=log)
    except (ValueError, BackendError) as e:  # a bad request, or no jax: one line
        print(f"nir tune: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        print_report(report)
    return 0
