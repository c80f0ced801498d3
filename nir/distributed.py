"""Several processes, one program: nir on JAX's multi-controller runtime.

Every process runs the same script. Each calls `initialize` once, first thing, then compiles and calls
the same functions; with ``mesh=``/``shard=`` the XLA backend splits each value across the devices of
all processes, and XLA's collectives move the data between them::

    import nir
    info = nir.distributed.initialize()     # under `nir launch`, or on SLURM/Open MPI/Kubernetes
    f = nir.compile(step, backend="xla", mesh={"data": info.global_devices}, shard={"N": "data"})

`nir launch -n 2 script.py` starts the processes on this machine (it sets the environment variables
that `initialize` reads); on a cluster, start them your own way and call `initialize` with the
coordinator's address, or with nothing where JAX detects the cluster. docs/distributed.md has the
details. This module imports no jax; the implementation lives in `nir.backends.xla.distributed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["initialize", "shutdown", "is_initialized", "info", "launched", "ProcessInfo", "DistributedError",
           "ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "ENV_LOCAL_DEVICES"]

# set by `nir launch` for each process it starts; read by `initialize` for the arguments not given
ENV_COORDINATOR = "NIR_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "NIR_NUM_PROCESSES"
ENV_PROCESS_ID = "NIR_PROCESS_ID"
ENV_LOCAL_DEVICES = "NIR_LOCAL_DEVICES"


class DistributedError(RuntimeError):
    """The multi-process runtime cannot start as asked (called too late, bad arguments, unreachable peer)."""


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands: its id among ``num_processes``, its devices and everyone's."""

    process_id: int
    num_processes: int
    local_devices: int
    global_devices: int
    platform: str

    @property
    def is_main(self) -> bool:
        """Whether this is process 0 (the one that prints and writes files, by convention)."""
        return self.process_id == 0


def _impl() -> Any:
    from .extras import require
    require("jax", "nir.distributed")
    from .backends.xla import distributed
    return distributed


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_devices: int | None = None,
               cpu_collectives: str | None = "gloo", timeout_s: int = 300) -> ProcessInfo:
    """Join this process to a multi-process run (a thin wrapper over ``jax.distributed.initialize``).

    Call it once, before anything is compiled or run with the xla backend. Arguments left out are read
    from the variables `nir launch` sets (``NIR_COORDINATOR_ADDRESS``, ``NIR_NUM_PROCESSES``,
    ``NIR_PROCESS_ID``, ``NIR_LOCAL_DEVICES``), else detected by JAX (SLURM, Open MPI, Kubernetes, TPU).

    coordinator_address: ``host:port`` of process 0, reachable from every process. A loopback address
        (``127.0.0.1``, ``localhost``) binds the coordinator to loopback only.
    local_devices: for CPU hosts, how many host devices this process presents (1 by default); each is
        a slice of the CPU, useful to try meshes on one machine.
    cpu_collectives: the CPU collectives library (``"gloo"``, or ``"mpi"``; None leaves JAX's default,
        which has none across processes); GPU and TPU hosts use their own.
    timeout_s: how long to wait for every process to join.

    Returns a `ProcessInfo`. Calling it again with the same arguments returns the same info; a
    `DistributedError` says what is wrong otherwise.
    """
    return _impl().initialize(coordinator_address, num_processes, process_id, local_devices=local_devices,
                              cpu_collectives=cpu_collectives, timeout_s=timeout_s)


def is_initialized() -> bool:
    """Whether `initialize` has joined this process to a multi-process run (False without jax)."""
    from .extras import installed
    if not installed("jax"):
        return False
    return _impl().is_initialized()


def info() -> ProcessInfo:
    """This process's `ProcessInfo`: its id, the number of processes and the device counts (one process
    with its own devices when `initialize` was not called). Starts JAX's devices, so in a multi-process
    run call it after `initialize`."""
    return _impl().info()


def launched() -> bool:
    """Whether `nir launch` started this process (its variables are set): the script should then call
    `initialize()` before anything else."""
    import os
    return os.environ.get(ENV_PROCESS_ID) is not None


def shutdown() -> None:
    """Leave the multi-process run (JAX also does this at exit); a no-op when not initialized."""
    if is_initialized():
        _impl().shutdown()
