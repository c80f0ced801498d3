"""The TVM backend: nir Program -> one Relax function -> `tvm.compile` for llvm (with default CPU
schedules, no tuning needed) or cuda (dlight) -> a `TVMExecutable`.

Importing this package imports tvm. It also sets ``TVM_NUM_THREADS`` to the number of cores this
process may use, unless the user set it, so that TVM's thread pool (started on first use) uses them all.
"""

from __future__ import annotations

import importlib.util

from nir.target import Target

from .build import TVMExecutable, build, cuda_device, load, tvm_target, unsupported
from .lower import LOWERINGS, lower_program
from .tune import measure_remote, tune

NAME = "tvm"

__all__ = ["NAME", "available", "serves", "build", "load", "LOWERINGS", "TVMExecutable", "lower_program",
           "tvm_target", "unsupported", "cuda_device", "tune", "measure_remote"]


def available() -> bool:
    """Whether TVM and its FFI can be imported."""
    return all(importlib.util.find_spec(p) is not None for p in ("tvm", "tvm_ffi"))


def serves(target: Target) -> bool:
    """The tvm backend compiles for llvm (CPU) and cuda targets."""
    return target.kind in ("llvm", "cuda")
