"""Backends: each is a package with the same small surface.

    NAME: str
    available() -> bool                      # its dependencies are installed (imports nothing heavy)
    serves(target: Target) -> bool
    build(program, target, **options) -> Executable
    load(path, entry) -> Executable          # one signature of an exported artifact (its manifest entry)
    LOWERINGS: dict[str, Callable]           # primitive -> lowering (absent for the reference backend)

    Executable(*arrays) -> list of arrays    # safe to call from several threads at once
    Executable.save(dir) -> {"files": {...}, **extra}   # its files for an artifact (see nir.artifact)

Importing this package imports no backend; `get(name)` imports one on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from nir.extras import install_hint
from nir.target import KINDS, Target

__all__ = ["available", "get", "installed", "BackendError", "BackendChoiceError", "FallbackWarning", "REGISTRY", "INSTALL_HINT"]

# backend name -> (module, the top-level packages it needs)
REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "reference": ("nir.backends.reference", ()),
    "tvm": ("nir.backends.tvm", ("tvm", "tvm_ffi")),
    "xla": ("nir.backends.xla", ("jax", "jaxlib")),
}
INSTALL_HINT = {name: install_hint(packages[0]) for name, (_, packages) in REGISTRY.items() if packages}


class BackendError(RuntimeError):
    """A backend cannot build, run or export a program (a primitive it lists as unsupported, a device that
    is not here), or it is not installed."""


class BackendChoiceError(BackendError, ValueError):
    """A bad argument, so a `ValueError` as Python's conventions ask (and still a `BackendError`): the
    ``backend=`` names no backend, or one that cannot serve the target, or the target string has an
    option the backend does not know."""


class FallbackWarning(RuntimeWarning):
    """A backend could not compile part of a program its fast way and used a slower, correct one
    (e.g. TVM's unscheduled loops when a default schedule fails to compile); `nir fuzz` counts them."""


def installed(name: str) -> bool:
    """Whether backend ``name``'s dependencies can be imported (checked without importing them)."""
    if name not in REGISTRY:
        return False
    return all(importlib.util.find_spec(pkg) is not None for pkg in REGISTRY[name][1])


def available() -> list[str]:
    """Names of the installed backends, e.g. ``['reference', 'tvm', 'xla']``."""
    return [n for n in REGISTRY if installed(n)]


def get(name: str) -> ModuleType:
    """Import and return backend ``name``; a clear error if it is unknown or not installed."""
    if name not in REGISTRY:
        raise BackendChoiceError(f"unknown backend {name!r}; known backends: {', '.join(REGISTRY)}")
    if not installed(name):
        raise BackendError(f"backend {name!r} is not installed; install it with {INSTALL_HINT[name]} "
                           f"(installed: {', '.join(available())})")
    return importlib.import_module(REGISTRY[name][0])


def for_target(target: Target) -> list[str]:
    """Installed backends that can serve ``target``, in default order of preference."""
    return [n for n in KINDS[target.kind] if installed(n)]
