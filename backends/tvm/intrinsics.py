"""Tensor intrinsics without the cost of ``import tvm.s_tir.tensor_intrin``.

That package's ``__init__`` imports the intrinsics of every target (CUDA, ROCm, Arm, x86, Hexagon), and
each one is parsed from TVMScript, whose parser walks the Python stack with `inspect.stack()` for every
function. With torch or jax loaded (thousands of modules in ``sys.modules``) that costs a minute of CPU
here, and several minutes under load, in every process that touched it. nir imports only the host
architecture's module (a few functions), and only when a lowering or the tuner needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
from types import ModuleType

__all__ = ["register_tensor_intrinsics", "x86_intrinsics"]

_PACKAGE = "tvm.s_tir.tensor_intrin"


def _submodule(sub: str) -> ModuleType:
    """``tvm.s_tir.tensor_intrin.<sub>`` imported without running the package's ``__init__``."""
    if _PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None:  # pragma: no cover - a TVM without it
            raise ImportError(f"this TVM has no {_PACKAGE}")
        sys.modules[_PACKAGE] = importlib.util.module_from_spec(spec)  # the package, __init__ not run
    return importlib.import_module(f"{_PACKAGE}.{sub}")


def x86_intrinsics() -> ModuleType:
    """TVM's x86 tensor intrinsics module (VNNI and AVX-512 dot products), registered on first use."""
    return _submodule("x86")


def register_tensor_intrinsics(target_kind: str) -> None:
    """Register the tensor intrinsics MetaSchedule's rules for a target of kind ``target_kind`` name:
    the host architecture's (x86 or Arm) for ``llvm``, all of them for ``cuda`` and the rest.
    `TuneContext` imports the package; once it is in ``sys.modules`` that import does nothing."""
    if target_kind != "llvm":
        importlib.import_module(_PACKAGE)
        for sub in ("cuda", "arm_cpu", "x86", "rocm"):
            importlib.import_module(f"{_PACKAGE}.{sub}")
        return
    try:
        _submodule("arm_cpu" if platform.machine().lower().startswith(("arm", "aarch64")) else "x86")
    except ImportError:  # pragma: no cover - a TVM without tensor intrinsics: nothing to register
        return
