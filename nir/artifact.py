"""Exported artifacts: a directory holding the backend's files plus ``manifest.json``, which records
the input/output names, shapes and dtypes, the backend, the target and the program text."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

from .ir import Program, Value
from .target import Target

__all__ = ["write_manifest", "read_manifest", "ArtifactError", "MANIFEST", "FORMAT_VERSION"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """An exported artifact is missing, corrupt, or was written by an incompatible version."""


def _sig(v: Value) -> dict[str, Any]:
    return {"names": list(v.type.names), "shape": list(v.type.shape), "dtype": v.type.dtype}


def write_manifest(path: pathlib.Path, program: Program, backend: str, target: Target,
                   files: dict[str, str], **extra: Any) -> pathlib.Path:
    """Atomically write ``path/manifest.json`` describing an exported program."""
    data = {
        "format": "nir-artifact", "version": FORMAT_VERSION, "backend": backend, "target": str(target),
        "fingerprint": program.fingerprint(), "inputs": [_sig(v) for v in program.inputs],
        "outputs": [_sig(v) for v in program.outputs], "files": files, "program": str(program), **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".manifest.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path / MANIFEST)
    return path / MANIFEST


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
    return data
