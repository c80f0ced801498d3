"""Named sharding: ``build(program, target, mesh={"data": 4}, shard={"N": "data"})``.

Every value that carries dim ``N`` is split across mesh axis ``data``; other dims are replicated. The
PartitionSpec of a value follows its dim order (logical at the program's boundary, physical inside),
so a layout change never changes what is sharded. A dim of size 1 (a broadcast operand's) is never
split. Every intermediate that carries a sharded dim is pinned with `with_sharding_constraint`, so the
partitioner keeps the requested split through contractions and reshapes. Requests are checked against
the program before anything is traced or compiled; `ShardingError` says what is wrong and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from nir.ir import Program, Value
from nir.types import format_dims

__all__ = ["ShardingError", "ShardPlan", "plan", "request_axes", "device_mesh"]


class ShardingError(ValueError):
    """A sharding request that cannot work for this program or this machine."""


@dataclass(frozen=True)
class ShardPlan:
    """A mesh plus ``dim name -> mesh axes``; turns values into NamedShardings."""

    mesh: Mesh | AbstractMesh
    axes: Mapping[str, tuple[str, ...]]

    def spec(self, v: Value, order: Sequence[str]) -> PartitionSpec:
        """The PartitionSpec of ``v`` laid out in ``order`` (size-1 dims are never split)."""
        sizes = v.type.sizes
        return PartitionSpec(*[self._entry(n) if n in self.axes and sizes[n] > 1 else None for n in order])

    def _entry(self, dim: str) -> str | tuple[str, ...]:
        axes = self.axes[dim]
        return axes[0] if len(axes) == 1 else axes

    def sharding(self, v: Value, order: Sequence[str]) -> NamedSharding:
        """``v``'s NamedSharding when laid out in ``order``."""
        return NamedSharding(self.mesh, self.spec(v, order))

    def constrain(self, y: jax.Array, v: Value) -> jax.Array:
        """Pin an intermediate (in its physical order) to its sharding when it carries a sharded dim."""
        spec = self.spec(v, v.physical_order)
        if all(s is None for s in spec):
            return y
        return jax.lax.with_sharding_constraint(y, NamedSharding(self.mesh, spec))


def _axes(dim: str, request: object, mesh: Mapping[str, int]) -> tuple[str, ...]:
    axes = (request,) if isinstance(request, str) else tuple(request)  # type: ignore[arg-type]
    unknown = [a for a in axes if a not in mesh]
    if not axes or unknown:
        raise ShardingError(f"shard={{{dim!r}: {request!r}}} names unknown mesh axis "
                            f"{unknown[0] if unknown else request!r}; the mesh has axes {list(mesh)}. "
                            f"Use one of them, or add it to mesh=")
    return axes


def request_axes(mesh: Mapping[str, int], shard: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """``dim -> mesh axes`` of a well-formed request (ShardingError otherwise), before any program is seen."""
    if not isinstance(mesh, Mapping) or not mesh or not all(
            isinstance(k, str) and isinstance(s, (int, np.integer)) and s >= 1 for k, s in mesh.items()):
        raise ShardingError(f"mesh= must map axis names to positive sizes, e.g. {{'data': 4}}; got {mesh!r}")
    if not isinstance(shard, Mapping) or not shard:
        raise ShardingError(f"shard= must map dim names to mesh axes, e.g. {{'N': 'data'}}; got {shard!r}")
    return {dim: _axes(dim, req, mesh) for dim, req in shard.items()}


def generated_aliases(program: Program, axes: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The generated names that stand for a sharded dim (``x @ w`` renames the dim it contracts to a
    generated one, e.g. ``F1`` -> ``_1``): they get the same mesh axes, so the split of ``F1`` carries
    into the contraction."""
    found: dict[str, tuple[str, ...]] = {}
    for e in program.eqns:
        if e.prim == "rename":
            for old, new in e.kwargs["mapping"]:
                src = axes.get(old) or found.get(old)
                if src and new.startswith("_") and new not in axes:
                    found[new] = src
    return found


def plan(program: Program, mesh: Mapping[str, int], shard: Mapping[str, object], platform: str,
         concrete: bool) -> ShardPlan:
    """Check a sharding request against ``program`` and build its plan.

    ``concrete``: the program will run here, so the mesh is made of this machine's ``platform``
    devices (there must be enough); otherwise (an export for a device this machine lacks) the mesh is
    abstract and only its shape is recorded.
    """
    axes = request_axes(mesh, shard)

    producer = {v.id: e.prim for e in program.eqns for v in e.outputs}
    names = {n for v in program.values() for n in v.type.names}
    for dim in list(axes):
        if dim not in names:
            shown = sorted(n for n in names if not n.startswith("_"))
            inputs = ", ".join(format_dims(v.type.dims) for v in program.inputs)
            raise ShardingError(f"shard= names dim {dim!r}, which no value of the program has; its dims are "
                                f"{shown} (inputs {inputs}). Check the spelling, or leave {dim!r} out of shard=")
    axes = {**axes, **generated_aliases(program, axes)}
    for v in program.values():
        where = f"%{v.id} {format_dims(v.type.dims)} ({producer.get(v.id, 'a program input')})"
        used: dict[str, str] = {}
        for dim, size in v.type.dims:
            if dim not in axes or size <= 1:
                continue
            parts = math.prod(mesh[a] for a in axes[dim])
            if size % parts:
                raise ShardingError(
                    f"cannot shard dim {dim!r} of size {size} in {where} across mesh axes {list(axes[dim])} "
                    f"({parts} shards): {parts} does not divide {size}. Use a mesh axis size that divides "
                    f"{size}, or do not shard {dim!r}")
            for a in axes[dim]:
                if a in used:
                    raise ShardingError(f"{where} has dims {used[a]!r} and {dim!r} both sharded on mesh axis "
                                        f"{a!r}; one tensor dim per mesh axis. Map them to different axes")
                used[a] = dim
    return ShardPlan(device_mesh(mesh, platform, concrete), axes)


def device_mesh(mesh: Mapping[str, int], platform: str, concrete: bool = True) -> Mesh | AbstractMesh:
    """The JAX mesh of ``mesh`` ({axis: size}): this run's ``platform`` devices, each process's together
    (or, not ``concrete``, an abstract mesh of that shape)."""
    sizes, axis_names = tuple(int(s) for s in mesh.values()), tuple(mesh)
    auto = (AxisType.Auto,) * len(sizes)  # Explicit axes would reject contractions over a sharded dim
    if not concrete:
        return AbstractMesh(sizes, axis_names, axis_types=auto)
    devices = sorted(jax.devices(platform), key=lambda d: (d.process_index, d.id))
    need = math.prod(sizes)
    processes = len({d.process_index for d in devices})
    if processes > 1 and need != len(devices):
        local = len([d for d in devices if d.process_index == jax.process_index()])
        raise ShardingError(
            f"mesh {dict(mesh)} has {need} devices, but this run has {len(devices)} {platform} devices in {processes} "
            f"processes ({local} in this one); across processes a mesh spans every device, so that each process "
            f"takes part. Give axes whose sizes multiply to {len(devices)}, e.g. mesh={{'data': {len(devices)}}}")
    if need > len(devices):
        raise ShardingError(
            f"mesh {dict(mesh)} needs {need} devices but JAX sees {len(devices)} {platform} device(s). "
            f"To test on the CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={need} in the "
            "environment before jax starts (before the first `import jax` in the process), or run the script under "
            f"`nir launch --devices {need}`")
    grid = np.array(devices[:need], dtype=object).reshape(sizes)
    return Mesh(grid, axis_names, axis_types=auto)
