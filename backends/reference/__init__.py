"""The reference backend: the numpy interpreter. Slow, obvious, and the definition of the IR."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from nir.interpret import interpret
from nir.ir import Program
from nir.target import Target
from nir.text import parse_program

NAME = "reference"


def available() -> bool:
    """Always: the reference backend needs numpy only."""
    return True


def serves(target: Target) -> bool:
    """The interpreter runs on the host CPU only."""
    return target.kind == "llvm"


class ReferenceExecutable:
    """A Program run by the reference interpreter."""

    def __init__(self, program: Program, target: Target) -> None:
        self.program, self.target = program, target

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        return interpret(self.program, *[np.asarray(a) for a in arrays])

    def backend_ir(self, kind: str | None = None) -> str:
        """The reference backend runs the nir program itself."""
        return str(self.program)

    def save(self, path: pathlib.Path) -> dict[str, Any]:
        """Files for an artifact: none beyond the program text `nir.artifact` writes for every backend."""
        return {"files": {}}

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write a one-signature artifact; `nir.load` interprets it again."""
        from nir.artifact import ArtifactEntry, export_artifact
        structure = 0 if len(self.program.outputs) == 1 else tuple(range(len(self.program.outputs)))
        return export_artifact(path, self.target, [ArtifactEntry(self, NAME, structure)])


def build(program: Program, target: Target, **options: Any) -> ReferenceExecutable:
    """'Compile' by keeping the program; the interpreter runs it."""
    if options:
        raise TypeError(f"the reference backend takes no options, got {sorted(options)}")
    return ReferenceExecutable(program, target)


def load(path: pathlib.Path, manifest: dict) -> ReferenceExecutable:
    """Load an exported reference artifact."""
    from nir.target import parse_target
    program = parse_program((path / manifest["files"]["program"]).read_text())
    return ReferenceExecutable(program, parse_target(manifest["target"]))
