"""Build, call, inspect, export and load XLA executables.

* ``llvm`` targets compile ahead of time for XLA:CPU (``jit(...).trace(...).lower(...).compile()``).
* ``cuda`` and ``tpu`` targets are lowered for that platform and wrapped in a `jax.export` artifact;
  they run where such a device exists, and here `export(path)` writes them for another machine.

Calling convention: inputs in each input's LOGICAL dim order (numpy, jax or torch arrays); the result
is a list of ``jax.Array`` in each output's logical order (``np.asarray(out)`` makes numpy arrays; it
is left to the caller so that results can stay on the device and calls stay asynchronous).
Shapes and dtypes are checked by JAX's dispatcher on every call at no extra cost, and a mismatch is
explained with the named shape. As with ``jax.jit``, a float64 array given for a float32 input is
narrowed silently. Programs with int64/float64 values run in JAX's x64 mode (scoped to their trace and
calls, about 0.6 us per call; the process-wide flag is left alone). Target options such as ``-mcpu``
are not used: XLA:CPU compiles for the host it runs on.

Across processes (after `nir.distributed.initialize`), a sharded program takes each process's arrays and
returns each process's part of the outputs as numpy arrays (see `nir.backends.xla.distributed`).
"""

from __future__ import annotations

import contextlib
import pathlib
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax.sharding import Mesh

from nir.backends import BackendChoiceError, BackendError
from nir.ir import Program, verify
from nir.target import Target, parse_target
from nir.text import parse_program
from nir.types import NamedShapeError, numpy_dtype

from . import NAME, UNSUPPORTED
from .lower import LOWERINGS, PRECISIONS, to_jax
from .distributed import ProcessIO, check_local_block
from .shard import ShardingError, ShardPlan, plan as shard_plan

__all__ = ["XLAExecutable", "build", "load", "PLATFORMS", "has_device", "IR_KINDS"]

PLATFORMS: dict[str, str] = {"llvm": "cpu", "cuda": "cuda", "tpu": "tpu"}  # nir target kind -> JAX platform
IR_KINDS = ("stablehlo", "hlo", "optimized_hlo")
EXPORT_FILE = "program.jax_export"
_WIDE = ("int64", "float64")


def has_device(platform: str) -> bool:
    """Whether JAX sees at least one device of ``platform`` (``cpu``, ``cuda``, ``tpu``) here."""
    try:
        return bool(jax.devices(platform))
    except RuntimeError:
        return False


def _x64(program: Program) -> Callable[[], contextlib.AbstractContextManager]:
    """JAX narrows int64/float64 to 32 bits unless x64 is on: programs with 64-bit values are traced
    and called inside ``jax.enable_x64(True)`` (about 0.6 us per call), all others outside it."""
    if jax.config.jax_enable_x64 or not any(v.type.dtype in _WIDE for p in program.walk() for v in p.values()):
        return contextlib.nullcontext
    return lambda: jax.enable_x64(True)


def _as_array(a: Any) -> Any:
    """numpy and jax arrays pass through; torch tensors (and other DLPack producers) are shared
    without a copy where possible; anything else goes through ``np.asarray``."""
    if isinstance(a, (np.ndarray, jax.Array)):
        return a
    if hasattr(a, "detach"):  # torch: drop autograd so that DLPack/numpy accept it
        a = a.detach()
    if hasattr(a, "__dlpack__"):
        try:
            return jnp.from_dlpack(a)
        except Exception:  # e.g. a layout DLPack cannot describe; numpy copies
            pass
    return np.asarray(a)


class XLAExecutable:
    """A nir Program lowered to XLA. Call it with the inputs; inspect it with `backend_ir`; write it
    with `export`. ``platform`` is ``cpu``, ``cuda`` or ``tpu``; ``compiler_options`` were passed to
    XLA's compile (DebugOptions fields such as ``xla_cpu_enable_fast_math``)."""

    def __init__(self, program: Program, target: Target, fn: Callable[..., Any], *,
                 plan: ShardPlan | None = None, compiler_options: Mapping[str, Any] | None = None,
                 exported: jax_export.Exported | None = None, sharding: Mapping[str, Any] | None = None,
                 local_inputs: bool = False, gather: bool = False) -> None:
        self.program, self.target, self.plan = program, target, plan
        self.platform = PLATFORMS[target.kind]
        self.compiler_options = dict(compiler_options or {})
        self._sharding = dict(sharding or {})  # the mesh=/shard= request, recorded in exports
        self._x64 = _x64(program)
        self._specs = [jax.ShapeDtypeStruct(v.type.shape, numpy_dtype(v.type.dtype)) for v in program.inputs]
        shardings: dict[str, Any] = {}
        if plan is not None:
            shardings = {"in_shardings": tuple(plan.sharding(v, v.type.names) for v in program.inputs),
                         "out_shardings": [plan.sharding(v, v.type.names) for v in program.outputs]}
        self._jit = jax.jit(fn, **shardings)
        self._exported = exported
        self._compiled: Any = None
        with self._x64():
            self._lowered = self._jit.trace(*self._specs).lower(lowering_platforms=(self.platform,))
            if self.platform != "cpu" and exported is None:
                self._exported = jax_export.export(self._jit, platforms=[self.platform])(*self._specs)
            if has_device(self.platform):
                try:
                    self._compiled = self._lowered.compile(compiler_options=self.compiler_options or None)
                except jax.errors.JaxRuntimeError as e:
                    if not self.compiler_options:
                        raise
                    raise BackendError(f"XLA rejected compiler_options {self.compiler_options}: {e}. Names are "
                                       "XLA DebugOptions fields, e.g. xla_cpu_enable_fast_math=True") from None
        self._run: Callable[..., list[jax.Array]] = (self._first_call if self._compiled is not None
                                                     else self._no_device)
        self._io: ProcessIO | None = None
        concrete = self._compiled is not None and plan is not None and isinstance(plan.mesh, Mesh)
        if concrete and plan.mesh.is_multi_process:
            if local_inputs or not gather:
                check_local_block(plan.mesh)
            self._io = ProcessIO(program, plan, local_inputs=local_inputs, gather=gather)
            self.out_types = self._io.out_types  # each process's parts: what nir.compile's results are named by
            self._run = self._run_processes

    # ------------------------------------------------------------------------------------------
    # calling
    # ------------------------------------------------------------------------------------------

    def __call__(self, *arrays: Any) -> list[jax.Array]:
        """Run on ``arrays`` (logical order each); returns a list of jax.Array in logical order."""
        try:
            return self._run(*arrays)
        except (TypeError, ValueError) as e:  # off the fast path: convert foreign arrays, or explain
            return self._retry(arrays, e)

    def _first_call(self, *arrays: Any) -> list[jax.Array]:
        with self._x64():
            out = self._compiled(*arrays)
        # After one call jax has built its C++ dispatcher; calling it directly skips a Python frame.
        fast = getattr(self._compiled, "_call", None) or self._compiled
        if self._x64 is contextlib.nullcontext:
            self._run = fast
        else:
            def run_x64(*a: Any) -> list[jax.Array]:
                with jax.enable_x64(True):
                    return fast(*a)
            self._run = run_x64
        return out

    def _run_processes(self, *arrays: Any) -> list[Any]:
        assert self._io is not None
        with self._x64():
            return self._io.outputs(self._compiled(*self._io.inputs(arrays)))

    def _no_device(self, *arrays: Any) -> list[jax.Array]:
        seen = sorted({d.platform for d in jax.devices()})
        raise BackendError(
            f"this program was built for {self.target} (XLA platform {self.platform!r}), but no {self.platform} "
            f"device is present here (JAX sees: {', '.join(seen)}). Write it with .export(path) and, on a machine "
            f"with a {self.platform} device, run nir.load(path)(*inputs) (or jax.export.deserialize(the bytes of "
            f"path/{EXPORT_FILE}).call(*inputs)). To run here, build for target 'llvm'")

    def _retry(self, arrays: Sequence[Any], error: Exception) -> list[jax.Array]:
        if self._compiled is None or self._io is not None:
            raise error
        ins = self.program.inputs
        if len(arrays) != len(ins):
            raise NamedShapeError(f"the program takes {len(ins)} inputs "
                                  f"({', '.join(v.type.pretty() for v in ins)}), got {len(arrays)}") from None
        converted = [_as_array(a) for a in arrays]
        for i, (a, v) in enumerate(zip(converted, ins)):
            want = numpy_dtype(v.type.dtype)
            if tuple(a.shape) != v.type.shape or np.dtype(a.dtype) != want:
                raise NamedShapeError(
                    f"input {i} (%{v.id}) should be {v.type.dtype} {v.type.pretty()}, i.e. shape {v.type.shape} "
                    f"in logical order ({', '.join(v.type.names)}); got {np.dtype(a.dtype).name} array of shape "
                    f"{tuple(a.shape)}. Pass each input in its logical order (transpose or cast it first)") from None
        if all(c is a for c, a in zip(converted, arrays)):
            raise error
        return self._run(*converted)

    # ------------------------------------------------------------------------------------------
    # inspecting and exporting
    # ------------------------------------------------------------------------------------------

    def backend_ir(self, kind: str = "stablehlo") -> str:
        """The program as XLA sees it: ``stablehlo`` (MLIR text), ``hlo`` (HLO before optimization) or
        ``optimized_hlo`` (after XLA's passes; only where it was compiled, i.e. for cpu here)."""
        if kind == "stablehlo":
            return self._lowered.as_text()
        if kind == "hlo":
            return self._lowered.as_text(dialect="hlo")
        if kind == "optimized_hlo":
            if self._compiled is None:
                raise BackendError(f"optimized HLO needs the program compiled, and no {self.platform} device is "
                                   "present to compile for; use kind='stablehlo' or 'hlo', or target 'llvm'")
            return self._compiled.as_text()
        raise ValueError(f"unknown backend_ir kind {kind!r}; the xla backend has {', '.join(IR_KINDS)}")

    @property
    def exported(self) -> jax_export.Exported:
        """The `jax.export.Exported` (made on first use for cpu; at build time for cuda/tpu)."""
        if self._exported is None:
            with self._x64():
                self._exported = jax_export.export(self._jit, platforms=[self.platform])(*self._specs)
        return self._exported

    def save(self, path: pathlib.Path) -> dict[str, Any]:
        """Write the serialized jax.export (``program.jax_export``, StableHLO) into directory ``path``;
        return the files and what the manifest records about them. Needs the ``flatbuffers`` package."""
        try:
            blob = self.exported.serialize()
        except ImportError as e:
            raise BackendError(f"exporting needs the flatbuffers package: pip install flatbuffers ({e})") from None
        (pathlib.Path(path) / EXPORT_FILE).write_bytes(bytes(blob))
        return {"files": {"exported": EXPORT_FILE}, "platforms": list(self.exported.platforms),
                "compiler_options": self.compiler_options, **self._sharding}

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write a one-signature artifact (``program.jax_export`` + ``manifest.json``) at ``path``;
        `nir.load` runs it again."""
        from nir.artifact import ArtifactEntry, export_artifact
        structure = 0 if len(self.program.outputs) == 1 else tuple(range(len(self.program.outputs)))
        return export_artifact(path, self.target, [ArtifactEntry(self, NAME, structure)])


def build(program: Program, target: Target | str, *, compiler_options: Mapping[str, Any] | None = None,
          mesh: Mapping[str, int] | None = None, shard: Mapping[str, Any] | None = None,
          precision: str = "highest", local_inputs: bool = False, gather: bool = False) -> XLAExecutable:
    """Lower ``program`` for ``target`` (``llvm``, ``cuda`` or ``tpu``) and compile it where possible.

    compiler_options: XLA DebugOptions for ``compile`` (e.g. ``{"xla_cpu_enable_fast_math": True}``).
    mesh, shard: named sharding, e.g. ``mesh={"data": 4}, shard={"N": "data"}`` (see `nir.backends.xla.shard`).
    local_inputs, gather: across processes, whether each process passes only its part of the sharded dims
        (else the whole array), and whether every process gets whole outputs (else its part); see
        `nir.backends.xla.distributed`. Without processes they change nothing.
    precision: float32 contraction/convolution precision, ``highest`` (float32 everywhere, the
        reference's meaning), ``high`` or ``default`` (a platform may use bfloat16 passes or TF32).
    Raises BackendError for an unsupported primitive or target, ShardingError for a bad sharding.
    """
    target = parse_target(target)
    if target.kind not in PLATFORMS:
        raise BackendChoiceError(f"the xla backend serves targets {', '.join(PLATFORMS)}, not {target}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}")
    verify(program)
    for e in program.eqns:
        for prim in sorted({e.prim} | {p for _, sub in e.subprograms for p in sub.prims()}):
            if prim not in LOWERINGS:
                why = UNSUPPORTED.get(prim, "no lowering exists")
                raise BackendError(f"the xla backend does not support primitive {prim!r} ({why}); it is used by "
                                   f"{e.where or 'an equation'} of the program. Use another backend, e.g. 'reference'")
    platform = PLATFORMS[target.kind]
    plan, sharding = None, {}
    if mesh is not None or shard is not None:
        plan = shard_plan(program, mesh or {}, shard or {}, platform, concrete=has_device(platform))
        sharding = {"mesh": dict(mesh or {}), "shard": {k: v if isinstance(v, str) else list(v)
                                                         for k, v in (shard or {}).items()}}
    fn = to_jax(program, precision, constrain=plan.constrain if plan else None)
    if (local_inputs or gather) and plan is None:
        raise ShardingError(f"local_inputs={local_inputs}, gather={gather} split or gather values across processes, "
                            "which needs mesh= and shard=")
    return XLAExecutable(program, target, fn, plan=plan, compiler_options=compiler_options, sharding=sharding,
                         local_inputs=local_inputs, gather=gather)


def load(path: str | pathlib.Path, manifest: Mapping[str, Any]) -> XLAExecutable:
    """Load one signature of an artifact (``manifest``: its entry in the artifact's manifest, files relative
    to ``path``): it runs here when its platform is present (cpu artifacts always); otherwise calling it
    explains where to run it."""
    path = pathlib.Path(path)
    program = parse_program((path / manifest["files"]["program"]).read_text())
    target = parse_target(manifest["target"])
    with _x64(program)():
        exported = jax_export.deserialize(bytearray((path / manifest["files"]["exported"]).read_bytes()))
    plan = None
    if manifest.get("mesh"):
        platform = PLATFORMS[target.kind]
        plan = shard_plan(program, manifest["mesh"], manifest["shard"], platform, concrete=has_device(platform))
    return XLAExecutable(program, target, exported.call, plan=plan, exported=exported,
                         compiler_options=manifest.get("compiler_options"),
                         sharding={k: manifest[k] for k in ("mesh", "shard") if k in manifest})
