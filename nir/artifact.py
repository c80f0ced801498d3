"""Exported artifacts: a directory with one sub-directory of backend files per compiled signature, and
``manifest.json``, written last, which records every signature (names, shapes, dtypes, backend, program)
and the size and SHA-256 of every file.

    f.export("model/")            # every signature f has compiled; nir.load dispatches by signature
    g = nir.load("model/")        # verifies every file against the manifest before loading any library

What an artifact is: a TVM artifact holds native code (``model.so``) that `load` maps into the process,
so it must come from a source you trust, like any shared library or pickle. An XLA artifact holds
serialized StableHLO (`jax.export`), which XLA compiles on load; a reference artifact holds nir program
text. The hashes catch a missing, truncated, swapped or extra file — an accident or a careless copy —
not a forger, who would rewrite the manifest as well. `load` reads every file once into a private
directory, hashing the bytes it copies, and loads from that copy: a file replaced between the check
and the load cannot slip in.

Writing is atomic: files go into a hidden sibling directory, the manifest last, and the directory is
renamed into place; a killed export leaves the previous artifact (or nothing) at the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .dispatch import Dispatch, Entry, Key, SignatureError, check_signature, describe, key_of, specs_of
from .dynamic import PaddedRun, Padding, call_sizes, parse_dynamic, serves
from .frontends.python import Spec
from .ir import Program, Value
from .target import Target, parse_target
from .text import parse_program
from .types import TensorType

__all__ = ["ArtifactEntry", "export_artifact", "read_manifest", "verify_files", "load", "Loaded", "ArtifactError",
           "MANIFEST", "FORMAT_VERSION", "PROGRAM_FILE"]

MANIFEST = "manifest.json"
PROGRAM_FILE = "program.nir"
FORMAT_VERSION = 2


class ArtifactError(ValueError):
    """An exported artifact is missing, corrupt, or was written by an incompatible version."""


@dataclass(frozen=True)
class ArtifactEntry:
    """One compiled signature to export: the executable (with ``.program``, ``.target`` and
    ``.save(dir) -> {"files": {...}, **extra}``), its backend, the output structure and any padding."""

    executable: Any
    backend: str
    structure: Any = 0
    padding: Padding | None = None


def _sig(v: Value) -> dict[str, Any]:
    return {"names": list(v.type.names), "shape": list(v.type.shape), "dtype": v.type.dtype}


def _encode(structure: Any) -> Any:
    """An output structure (ints at the leaves of tuples, lists, dicts) as JSON."""
    if isinstance(structure, int):
        return structure
    if isinstance(structure, dict):
        return {"dict": [[k, _encode(v)] for k, v in structure.items()]}
    return {"list" if isinstance(structure, list) else "tuple": [_encode(s) for s in structure]}


def _decode(d: Any) -> Any:
    if isinstance(d, int):
        return d
    if "dict" in d:
        return {k: _decode(v) for k, v in d["dict"]}
    return [_decode(s) for s in d["list"]] if "list" in d else tuple(_decode(s) for s in d["tuple"])


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_new(path: pathlib.Path, data: bytes) -> None:
    """Create ``path`` with the process umask's permissions (unlike tempfile's 0600) and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def export_artifact(path: str | os.PathLike, target: Target, entries: Sequence[ArtifactEntry],
                    dynamic: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Write ``entries`` as one artifact directory at ``path`` (replacing an artifact or an empty
    directory there, never anything else); returns the path."""
    path = pathlib.Path(path)
    if not entries:
        raise ArtifactError("nothing to export: no signature is compiled yet (call the function, or .lower() it)")
    if path.exists() and not (path.is_dir() and ((path / MANIFEST).is_file() or not any(path.iterdir()))):
        raise ArtifactError(f"{path} exists and is not a nir artifact or an empty directory; export to a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{secrets.token_hex(4)}"
    os.mkdir(tmp, 0o777)  # the umask applies
    try:
        signatures = []
        for i, e in enumerate(entries):
            sub = f"sig{i}"
            os.mkdir(tmp / sub, 0o777)
            program: Program = e.executable.program
            _write_new(tmp / sub / PROGRAM_FILE, program.text.encode())
            saved = dict(e.executable.save(tmp / sub))
            files = {"program": PROGRAM_FILE, **saved.pop("files")}
            signatures.append({
                "backend": e.backend, "target": str(e.executable.target), "fingerprint": program.fingerprint(),
                "inputs": [_sig(v) for v in program.inputs], "outputs": [_sig(v) for v in program.outputs],
                "structure": _encode(e.structure), "padding": e.padding.to_json() if e.padding else None,
                "files": {k: f"{sub}/{v}" for k, v in files.items()}, "program": str(program), **saved})
        contents = {}
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = f.relative_to(tmp).as_posix()
            contents[rel] = {"size": f.stat().st_size, "sha256": _sha256(f)}
        from . import __version__
        manifest = {"format": "nir-artifact", "version": FORMAT_VERSION, "nir_version": __version__,
                    "target": str(target), "dynamic": {k: list(v) if v else None for k, v in (dynamic or {}).items()},
                    "signatures": signatures, "contents": contents}
        _write_new(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
        if path.exists():  # swap: the old artifact stays whole until the rename
            old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an artifact's manifest; ArtifactError says what is wrong."""
    p = pathlib.Path(path) / MANIFEST
    if not p.is_file():
        raise ArtifactError(f"{path} is not a nir artifact: {MANIFEST} is missing (write one with Compiled.export)")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{p} is corrupt ({e}); export the program again") from None
    if not isinstance(data, dict) or data.get("format") != "nir-artifact":
        raise ArtifactError(f"{p} is not a nir manifest")
    if data.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{p} has format version {data.get('version')}, this nir reads {FORMAT_VERSION}; "
                            "export the program again with this version")
    if not isinstance(data.get("signatures"), list) or not data["signatures"] or \
            not isinstance(data.get("contents"), dict):
        raise ArtifactError(f"{p} lists no signatures or no contents; export the program again")
    return data


def verify_files(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Check that the directory holds exactly the files the manifest lists, each with its size and
    SHA-256; ArtifactError names the first file that is missing, truncated, altered or extra."""
    path = pathlib.Path(path)
    contents: Mapping[str, Any] = manifest["contents"]
    for rel, want in contents.items():
        if rel.startswith("/") or ".." in pathlib.PurePosixPath(rel).parts:
            raise ArtifactError(f"{path / MANIFEST} lists a file outside the artifact: {rel!r}")
        if not (isinstance(want, dict) and isinstance(want.get("size"), int) and isinstance(want.get("sha256"), str)):
            raise ArtifactError(f"{path / MANIFEST} is corrupt: the entry for {rel!r} has no size and SHA-256; "
                                "export the program again")
    for sig in manifest["signatures"]:
        for rel in sig.get("files", {}).values():
            if rel not in contents:
                raise ArtifactError(f"{path / MANIFEST} uses {rel!r}, which it does not list with a hash")
    present = set()
    for f in path.rglob("*"):
        rel = f.relative_to(path).as_posix()
        if f.is_symlink():
            raise ArtifactError(f"{f} is a symbolic link; an artifact holds plain files only")
        if f.is_file() and rel != MANIFEST:
            present.add(rel)
    for rel in sorted(present - set(contents)):
        raise ArtifactError(f"{path / rel} is not part of the artifact (the manifest does not list it): remove it, "
                            "or export the program again into a new directory")
    for rel, want in contents.items():
        f = path / rel
        if rel not in present:
            raise ArtifactError(f"{f} is missing; the artifact is incomplete (export the program again)")
        size = f.stat().st_size
        if size != want["size"]:
            raise ArtifactError(f"{f} has {size} bytes, the manifest says {want['size']}: it is truncated or was "
                                "replaced; export the program again")
        if _sha256(f) != want["sha256"]:
            raise ArtifactError(f"{f} does not match its SHA-256 in the manifest: it was replaced or corrupted; "
                                "export the program again")


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------

def _private_copy(path: pathlib.Path, manifest: Mapping[str, Any], into: pathlib.Path) -> None:
    """Copy the artifact's listed files into ``into`` (a directory only this process can read), checking
    the SHA-256 of the very bytes copied: what is loaded from ``into`` is what was verified."""
    for rel, want in manifest["contents"].items():
        data = (path / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != want["sha256"]:
            raise ArtifactError(f"{path / rel} changed while it was being loaded (it no longer matches its SHA-256 "
                                "in the manifest): another process is writing the artifact; load it again when "
                                "the export has finished")
        dest = into / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)

class Loaded(Dispatch):
    """An exported artifact, loaded: call it with NamedTensors (or plain arrays, which take the names of
    the exported signature they match); it dispatches by signature like the function it came from."""

    def __init__(self, path: pathlib.Path, manifest: dict, entries: Sequence[Entry]) -> None:
        super().__init__()
        self.path, self.manifest = path, manifest
        self.target = parse_target(manifest["target"])
        self.dynamic = parse_dynamic(manifest.get("dynamic") or {})
        self._entries: dict[Key, Entry] = {key_of(e.specs): e for e in entries}
        self._fast = dict(self._entries)
        self._last = entries[0]

    @property
    def backend(self) -> str:
        """The backend that runs the artifact (several, comma-separated, if its signatures differ)."""
        return ", ".join(sorted({e.backend for e in self._entries.values()}))

    @property
    def signatures(self) -> list[tuple[Spec, ...]]:
        """Every exported input signature."""
        return [e.specs for e in self._entries.values()]

    @property
    def signature(self) -> tuple[Spec, ...]:
        """The first exported input signature."""
        return self.signatures[0]

    @property
    def executable(self) -> Any:
        """The backend executable of the first exported signature."""
        return next(iter(self._entries.values())).executable

    @property
    def ir(self) -> str:
        """The nir program text of the first exported signature (constants elided)."""
        return self.manifest["signatures"][0]["program"]

    def _declared(self) -> Sequence[tuple[Spec, ...]]:
        return self.signatures

    def _resolve(self, key: Key) -> Any:
        """An exported signature, or for dynamic dims the smallest exported bucket that holds the call."""
        bkey, entry, sizes = key, self._entries.get(key), {}
        if entry is None and self.dynamic:
            sizes = call_sizes(key, self.dynamic)
            fits = [(k, e) for k, e in self._entries.items() if e.padding is not None and serves(k, key, self.dynamic)]
            if fits:
                bkey, entry = min(fits, key=lambda ke: [s for _, shape, _ in ke[0] for s in shape])
        if entry is None:
            sigs = self.signatures
            if len(sigs) == 1:
                check_signature(specs_of(key), sigs[0], tuple(self.dynamic))
            raise SignatureError(f"inputs ({describe(specs_of(key))}) match none of the signatures exported to "
                                 f"{self.path}: {' or '.join('(' + describe(s) + ')' for s in sigs)}. Export "
                                 "again from a function that has been called with these inputs")
        run = entry if bkey == key else PaddedRun(entry, sizes)
        self._remember(key, run, limit=4096)
        return run

    def __repr__(self) -> str:
        sigs = " | ".join(f"({describe(s)})" for s in self.signatures)
        return f"<nir.Loaded {self.path} backend={self.backend!r} inputs={sigs}>"


def load(path: str | os.PathLike) -> Loaded:
    """Load an artifact written by `Compiled.export`. Every file is checked against the manifest's
    sizes and SHA-256 hashes before any library is loaded (ArtifactError names a missing, truncated,
    replaced or extra file), and what is loaded is a private copy of the bytes that were hashed. Loading
    needs the backend's runtime, not the tracer. A TVM artifact is native code: load only artifacts from
    a source you trust."""
    from . import backends as _backends
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    verify_files(path, manifest)
    for i, sig in enumerate(manifest["signatures"]):
        missing = [k for k in ("backend", "inputs", "outputs", "structure", "files") if k not in sig]
        if missing:
            raise ArtifactError(f"{path / MANIFEST} is corrupt: signature {i} has no {', '.join(missing)}; "
                                "export the program again")
    with tempfile.TemporaryDirectory(prefix="nir-load-") as tmp:  # mode 0700; libraries stay mapped after removal
        private = pathlib.Path(tmp)
        _private_copy(path, manifest, private)
        entries = [_load_entry(private, sig, _backends.get(sig["backend"])) for sig in manifest["signatures"]]
    return Loaded(path, manifest, entries)


def _load_entry(path: pathlib.Path, sig: Mapping[str, Any], mod: Any) -> Entry:
    """One signature of a verified artifact copy at ``path``, loaded by its backend module ``mod``."""
    exe = mod.load(path, sig)
    program = getattr(exe, "program", None)
    if program is None:
        program = parse_program((path / sig["files"]["program"]).read_text())
    types = [TensorType(tuple(zip(s["names"], s["shape"])), s["dtype"]) for s in sig["inputs"]]
    specs = tuple(Spec(t.user_names, t.shape, t.dtype) for t in types)
    padding = Padding.from_json(sig["padding"]) if sig.get("padding") else None
    return Entry(specs, program, _decode(sig["structure"]), exe, sig["backend"], padding=padding)
