"""JAX's multi-controller runtime for nir: starting it (`initialize`), and moving a sharded program's
inputs and outputs between each process's arrays and JAX's global arrays (`ProcessIO`).

Inputs come in one of two forms, chosen per compiled function with ``local_inputs=``:

* global (the default): every process passes the whole array, the same on all of them (what a
  one-process program passes, so a script runs unchanged in 1 or N processes); each process puts its
  own devices' slices on them (`jax.make_array_from_callback`).
* local (``local_inputs=True``): each process passes only its part of each sharded dim, e.g. its rows
  of ``N`` (`jax.experimental.multihost_utils.host_local_array_to_global_array`); the global size is
  the local size times the number of processes the dim's mesh axes span.

Outputs: each process gets its own part (an output replicated across processes is whole everywhere);
``gather=True`` gives every process the whole output (`process_allgather`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from nir.distributed import (ENV_COORDINATOR, ENV_LOCAL_DEVICES, ENV_NUM_PROCESSES, ENV_PROCESS_ID, DistributedError,
                             ProcessInfo)
from nir.ir import Program
from nir.types import NamedShapeError, TensorType, format_dims, numpy_dtype

from .shard import ShardingError, ShardPlan, device_mesh, request_axes

__all__ = ["initialize", "is_initialized", "shutdown", "info", "ProcessIO", "global_specs", "process_factors",
           "broadcast_from_main", "host_devices"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_joined: dict[str, Any] | None = None  # the arguments this process joined with


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} should be an integer") from None


def _backends_started() -> bool:
    from jax._src import xla_bridge  # the only place that says whether jax has created its devices
    return xla_bridge.backends_are_initialized()


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_devices: int | None = None,
               cpu_collectives: str | None = "gloo", timeout_s: int = 300) -> ProcessInfo:
    """See `nir.distributed.initialize`."""
    global _joined
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    local_devices = local_devices if local_devices is not None else _env_int(ENV_LOCAL_DEVICES)
    asked = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id,
             "local_devices": local_devices, "cpu_collectives": cpu_collectives}
    if _joined is not None:
        if asked != _joined:
            raise DistributedError(f"nir.distributed.initialize was already called with {_joined}; it cannot join "
                                   f"again with {asked}. Call it once per process")
        return info()
    if local_devices is not None and (not isinstance(local_devices, int) or local_devices < 1):
        raise DistributedError(f"local_devices={local_devices!r}; give a positive number of host devices")
    bind = None
    if coordinator_address is not None:
        host, _, port = coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise DistributedError(f"coordinator_address={coordinator_address!r} should be HOST:PORT, "
                                   "e.g. 10.0.0.1:1234 (process 0's address, reachable from every process)")
        if host in _LOOPBACK:  # JAX binds [::]:PORT by default; a loopback coordinator stays on loopback
            bind = coordinator_address
    if _backends_started():
        raise DistributedError(
            "nir.distributed.initialize() was called after JAX had started (something was compiled or run with the "
            "xla backend, or jax.devices() was called). Call it first thing in the script, before any nir.compile "
            "call runs")
    if local_devices is not None:
        jax.config.update("jax_num_cpu_devices", local_devices)
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, initialization_timeout=timeout_s,
                                   coordinator_bind_address=bind)
    except (ValueError, TypeError) as e:
        raise DistributedError(
            f"cannot start the multi-process run ({e}). Pass coordinator_address, num_processes and process_id, "
            "start the script with `nir launch -n N script.py`, or run it under SLURM/Open MPI/Kubernetes where JAX "
            "finds them") from None
    except RuntimeError as e:
        raise DistributedError(f"cannot join the multi-process run at {coordinator_address} as process {process_id} "
                               f"of {num_processes}: {e}") from None
    _joined = asked
    return info()


def is_initialized() -> bool:
    """Whether this process has joined a multi-process run."""
    return bool(jax.distributed.is_initialized())


def shutdown() -> None:
    """Leave the run (a later `initialize` may join another)."""
    global _joined
    jax.distributed.shutdown()
    _joined = None


def info() -> ProcessInfo:
    """This process's id, the number of processes, and the device counts (starts JAX's devices)."""
    return ProcessInfo(process_id=jax.process_index(), num_processes=jax.process_count(),
                       local_devices=jax.local_device_count(), global_devices=jax.device_count(),
                       platform=jax.devices()[0].platform)


# -------------------------------------------------------------------------------------------------
# inputs and outputs of a program sharded across processes
# -------------------------------------------------------------------------------------------------

def process_factors(mesh: Mesh, axes: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """``dim -> how many processes split it``: the global size of a sharded dim over its local size."""
    check_local_block(mesh)
    local = dict(mesh.local_mesh.shape)
    return {dim: int(np.prod([mesh.shape[a] // local[a] for a in dim_axes])) for dim, dim_axes in axes.items()}


def global_specs(specs: Sequence[Any], mesh: Mapping[str, int], shard: Mapping[str, Any],
                 platform: str = "cpu") -> tuple[Any, ...]:
    """The global specs of process-local ``specs`` (nir Specs) under ``mesh``/``shard``: each sharded
    dim's size times the number of processes that split it."""
    from nir.frontends.python import Spec
    axes = request_axes(mesh, shard)
    factors = process_factors(device_mesh(mesh, platform), axes)
    for i, s in enumerate(specs):
        for n, d in zip(s.names, s.shape):
            local = int(np.prod([mesh[a] for a in axes.get(n, ())])) // factors.get(n, 1)
            if n in axes and d % local:
                raise ShardingError(
                    f"with local_inputs=True, input {i}'s part in this process, {format_dims(zip(s.names, s.shape))}, "
                    f"has {d} along {n!r}, which its {local} devices along mesh axes {list(axes[n])} cannot split "
                    f"evenly; give each process a multiple of {local}")
    return tuple(Spec(s.names, tuple(d * factors.get(n, 1) for n, d in zip(s.names, s.shape)), s.dtype)
                 for s in specs)


class ProcessIO:
    """Converts one program's call between this process's arrays and JAX's global arrays."""

    def __init__(self, program: Program, plan: ShardPlan, *, local_inputs: bool, gather: bool) -> None:
        self.program, self.plan, self.local_inputs, self.gather = program, plan, local_inputs, gather
        self.mesh = plan.mesh
        self._in = [(v, plan.sharding(v, v.type.names), plan.spec(v, v.type.names)) for v in program.inputs]
        self._out = [plan.spec(v, v.type.names) for v in program.outputs]
        factors = process_factors(plan.mesh, plan.axes) if local_inputs or not gather else {}

        def local(t: TensorType) -> TensorType:
            return t.with_dims((n, s // factors.get(n, 1) if s > 1 else s) for n, s in t.dims)
        self._local_shapes = [local(v.type).shape if local_inputs else v.type.shape for v in program.inputs]
        #: the types of what a call returns here: whole outputs, or this process's parts
        self.out_types = [v.type if gather else local(v.type) for v in program.outputs]

    def inputs(self, arrays: Sequence[Any]) -> list[jax.Array]:
        """Global jax.Arrays from this process's arrays (whole ones, or local parts)."""
        ins = self.program.inputs
        if len(arrays) != len(ins):
            raise NamedShapeError(f"the program takes {len(ins)} inputs "
                                  f"({', '.join(v.type.pretty() for v in ins)}), got {len(arrays)}")
        out = []
        for i, (a, (v, sharding, spec), want) in enumerate(zip(arrays, self._in, self._local_shapes)):
            a = np.asarray(a)
            if tuple(a.shape) != want or a.dtype != numpy_dtype(v.type.dtype):
                dims = format_dims(tuple(zip(v.type.names, want)))
                form = ("this process's part" if self.local_inputs else "the whole array, the same on every process")
                other = ("local_inputs=False: every process passes the whole array" if self.local_inputs else
                         "local_inputs=True: each process passes its part of the sharded dims")
                raise NamedShapeError(
                    f"input {i} (%{v.id}) should be {form}: {v.type.dtype} {dims}, shape {want} in logical order; got "
                    f"{np.dtype(a.dtype).name} array of shape {tuple(a.shape)}. Pass that, or compile with {other}")
            if self.local_inputs:
                out.append(multihost_utils.host_local_array_to_global_array(a, self.mesh, spec))
            else:
                out.append(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]))
        return out

    def outputs(self, outs: Sequence[jax.Array]) -> list[np.ndarray]:
        """This process's part of each output, or with ``gather`` the whole output everywhere."""
        result = []
        for o, spec in zip(outs, self._out):
            if o.is_fully_replicated:
                result.append(np.asarray(o.addressable_data(0)))
            elif self.gather:
                result.append(np.asarray(multihost_utils.process_allgather(o, tiled=True)))
            else:
                result.append(np.asarray(multihost_utils.global_array_to_host_local_array(o, self.mesh, spec)))
        return result


def check_local_block(mesh: Mesh) -> None:
    """ShardingError unless this process's devices form one block of the mesh (needed for local parts)."""
    try:
        _ = mesh.local_mesh
    except ValueError:
        raise ShardingError(f"this process's devices do not form one block of mesh {dict(mesh.shape)}, so its part "
                            "of a sharded value is not one array. Order the mesh axes so that each process holds whole "
                            "rows of the last axes (e.g. mesh={'data': processes, 'model': local devices})") from None


# -------------------------------------------------------------------------------------------------
# for measuring in every process at once (the shard-map tuner)
# -------------------------------------------------------------------------------------------------

def broadcast_from_main(values: Sequence[float]) -> list[float]:
    """Process 0's ``values`` in every process (as they are with one process): decisions that every process
    must take alike, such as how many calls to time, are taken by process 0."""
    if jax.process_count() == 1:
        return list(values)
    return [float(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, dtype=np.float64))]


def host_devices(count: int) -> int:
    """Ask for ``count`` CPU devices in this process if JAX has not started yet (a no-op across processes,
    where `initialize` set them); returns how many devices JAX sees."""
    if not _backends_started() and not jax.distributed.is_initialized():
        jax.config.update("jax_num_cpu_devices", count)
    return jax.device_count()
