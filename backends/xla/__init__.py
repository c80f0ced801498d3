"""The XLA backend: nir programs lowered through JAX to XLA HLO, for cpu (``llvm``), ``cuda`` and ``tpu``.

    exe = nir.backends.get("xla").build(program, "llvm")            # compiled for XLA:CPU
    outs = exe(x, w)                                                 # list of jax.Array, logical order
    exe.backend_ir("optimized_hlo"); exe.export("out/")              # inspect; write a jax.export artifact
    build(program, "tpu").export("tpu_artifact/")                     # for a machine with a TPU
    build(program, "llvm", mesh={"data": 4}, shard={"N": "data"})    # named sharding

Importing this package does not import jax; `build`, `load` and `LOWERINGS` do, on first use.
"""

from __future__ import annotations

import importlib.util
import pathlib
from typing import TYPE_CHECKING, Any

from nir.target import Target

if TYPE_CHECKING:  # pragma: no cover
    import pathlib as _pathlib

    from nir.ir import Program

    from .executable import XLAExecutable

__all__ = ["NAME", "available", "serves", "build", "load", "tuning_options", "global_specs", "LOWERINGS",
           "UNSUPPORTED"]

NAME = "xla"


def _read_unsupported() -> dict[str, str]:
    rows = (line.split("#", 1)[0].strip() for line in
            (pathlib.Path(__file__).with_name("unsupported.txt")).read_text().splitlines())
    return {prim.strip(): why.strip() for prim, _, why in (row.partition(":") for row in rows if row)}


# primitive -> why the xla backend cannot lower it (checked in as unsupported.txt)
UNSUPPORTED: dict[str, str] = _read_unsupported()


def available() -> bool:
    """Whether jax and jaxlib are installed (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("jax", "jaxlib"))


def serves(target: Target) -> bool:
    """XLA serves the host CPU (``llvm``), ``cuda`` and ``tpu``."""
    return target.kind in ("llvm", "cuda", "tpu")


def tuning_options(target: Target) -> list[dict[str, Any]]:
    """Compile-option candidates for `nir tune`: the XLA:CPU knobs measured to matter on these machines
    (the matmul library choice: YNNPACK fusions off, optionally oneDNN; fast math). None elsewhere."""
    if target.kind != "llvm":
        return []
    no_ynn = {"xla_cpu_experimental_ynn_fusion_type": ""}
    return [{"compiler_options": no_ynn},
            {"compiler_options": {**no_ynn, "xla_cpu_use_onednn": True}},
            {"compiler_options": {"xla_cpu_enable_fast_math": True}}]


def build(program: "Program", target: "Target | str", **options: Any) -> "XLAExecutable":
    """Lower and compile ``program`` for ``target``; see `nir.backends.xla.executable.build` for options."""
    from .executable import build as _build
    return _build(program, target, **options)


def global_specs(specs: tuple, target: Target, options: dict[str, Any]) -> tuple:
    """With ``local_inputs=True`` (each process passes its part of the sharded dims), the specs of the whole
    values a call's process-local ``specs`` make up; otherwise ``specs`` unchanged."""
    if not options.get("local_inputs"):
        return specs
    from .distributed import global_specs as _global_specs
    from .executable import PLATFORMS
    from .shard import ShardingError
    if not options.get("mesh") or not options.get("shard"):
        raise ShardingError("local_inputs=True needs mesh= and shard= (nir must know how the processes split each "
                            "input before it traces the function at the whole sizes)")
    return _global_specs(specs, options["mesh"], options["shard"], PLATFORMS.get(target.kind, "cpu"))


def load(path: "str | _pathlib.Path", manifest: dict) -> "XLAExecutable":
    """Load an artifact written by ``XLAExecutable.export``; see `nir.backends.xla.executable.load`."""
    from .executable import load as _load
    return _load(path, manifest)


def __getattr__(name: str) -> Any:
    if name == "LOWERINGS":
        from .lower import LOWERINGS
        return LOWERINGS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
