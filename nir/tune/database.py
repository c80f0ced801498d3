"""The tuning database: a directory of JSON records, one file per key
(program fingerprint, input signature, target, backend, backend version).

Records are plain data (no pickle). Writes go to a temporary file and are renamed into place, under a
lock file, merging with what another run wrote meanwhile (the faster configuration wins), so a killed
run never leaves a half-written record and two runs sharing a directory both keep their records. Files
get the permissions the umask gives (a shared ``tuning/`` directory stays readable to others). A
corrupt, truncated, foreign or older-version file is reported with a warning and skipped.

Version 2 records hold times of the call a user makes with outputs complete (version 1 timed XLA's
asynchronous dispatch, so its XLA figures were far too small): version 1 files are skipped.

Backends keep their own tuning state beside the records: TVM's MetaSchedule database lives in
``DIR/tvm/<target key>/`` (one per hardware target).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from ..ir import Program

__all__ = ["TuningRecord", "TuningDatabase", "TuningDatabaseWarning", "RECORD_VERSION", "signature_of",
           "write_atomic"]

RECORD_FORMAT = "nir-tuning-record"
RECORD_VERSION = 2


def _umask() -> int:
    try:  # Linux shows it; elsewhere reading it means setting it and putting it back
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (readers see the old or the
    new content, never a part), with the mode a plain ``open()`` would give (0666 less the umask;
    `tempfile.mkstemp` alone makes it 0600)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class TuningDatabaseWarning(UserWarning):
    """A file in the tuning database could not be used (corrupt, foreign, or from another version)."""


def signature_of(program: Program) -> list[dict[str, Any]]:
    """The input signature of ``program`` as plain data: names (generated ones as null), shape, dtype."""
    return [{"names": list(v.type.user_names), "shape": list(v.type.shape),
             "dtype": v.type.dtype} for v in program.inputs]


@dataclass
class TuningRecord:
    """The winning configuration for one key, and what was measured.

    ``config`` holds ``layouts`` ({value index: permutation of its logical dims}) and backend
    ``options``; ``times_ms`` holds ``untuned`` and ``tuned`` per-call times by ``statistic`` (the
    median of interleaved samples) and ``untuned_min``/``tuned_min``; ``candidates`` every measured
    configuration with its times.
    """

    fingerprint: str
    signature: list[dict[str, Any]]
    target: str
    backend: str
    backend_version: str
    config: dict[str, Any]
    times_ms: dict[str, float]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    nir_version: str = ""
    statistic: str = "median"

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.fingerprint, json.dumps(self.signature, sort_keys=True), self.target, self.backend,
                self.backend_version)

    def filename(self) -> str:
        digest = hashlib.sha256("\x00".join(self.key).encode()).hexdigest()[:16]
        return f"{self.fingerprint}-{self.backend}-{digest}.json"

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, **asdict(self)}

    @staticmethod
    def from_json(data: Any) -> "TuningRecord":
        """Parse a record; ValueError says what is wrong with it."""
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError("not a nir tuning record")
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"record format version {data.get('version')}, this nir reads {RECORD_VERSION}; "
                             "re-run `nir tune` to replace it")
        fields = {k: data[k] for k in TuningRecord.__dataclass_fields__ if k in data}
        try:
            rec = TuningRecord(**fields)
        except TypeError as e:
            raise ValueError(f"missing fields: {e}") from None
        if not isinstance(rec.times_ms.get("tuned"), (int, float)):
            raise ValueError("times_ms.tuned is missing")
        return rec


class TuningDatabase:
    """A directory of tuning records. Safe to share between concurrent runs and processes."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self.records_dir = self.path / "records"

    def backend_dir(self, backend: str, target: str) -> pathlib.Path:
        """Where ``backend`` keeps its own tuning state for ``target`` (e.g. MetaSchedule's JSON database)."""
        key = hashlib.sha256(target.encode()).hexdigest()[:12]
        d = self.path / backend / key
        d.mkdir(parents=True, exist_ok=True)
        (d / "target.txt").write_text(target + "\n")
        return d

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self, p: pathlib.Path) -> TuningRecord | None:
        try:
            return TuningRecord.from_json(json.loads(p.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
            warnings.warn(f"tuning database: skipping {p}: {e}", TuningDatabaseWarning, stacklevel=3)
            return None

    def put(self, record: TuningRecord, replace: bool = False) -> pathlib.Path:
        """Store ``record`` atomically; if a record for the same key exists, keep the faster one and the
        union of the measured candidates (``replace=True``: overwrite it, e.g. with figures re-measured
        in the same run)."""
        with self._lock():
            dest = self.records_dir / record.filename()
            if dest.exists() and not replace:
                old = self._read(dest)
                if old is not None:
                    seen = {json.dumps(c, sort_keys=True) for c in record.candidates}
                    extra = [c for c in old.candidates if json.dumps(c, sort_keys=True) not in seen]
                    if old.times_ms["tuned"] < record.times_ms["tuned"]:
                        old.candidates += [c for c in record.candidates if c not in old.candidates]
                        record = old
                    else:
                        record.candidates += extra
            write_atomic(dest, json.dumps(record.to_json(), indent=1, sort_keys=True))
        return dest

    def records(self) -> list[TuningRecord]:
        """Every readable record (unreadable files are warned about and skipped)."""
        if not self.records_dir.is_dir():
            return []
        out = []
        for p in sorted(self.records_dir.glob("*.json")):
            if p.name.startswith(".tmp-"):
                continue
            rec = self._read(p)
            if rec is not None:
                out.append(rec)
        return out

    def lookup(self, program: Program, target: str, backend: str | None = None,
               backend_version: str | None = None) -> list[TuningRecord]:
        """Records for ``program`` on ``target`` (optionally one backend/version), fastest first."""
        fp, sig = program.fingerprint(), signature_of(program)
        found = [r for r in self.records() if r.fingerprint == fp and r.signature == sig and r.target == target
                 and (backend is None or r.backend == backend)
                 and (backend_version is None or r.backend_version == backend_version)]
        return sorted(found, key=lambda r: r.times_ms["tuned"])
