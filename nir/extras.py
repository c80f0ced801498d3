"""Optional dependencies: `pip install named-ir` needs numpy alone, and every other package is imported
through `require`, which turns a missing one into ONE line naming the extra that installs it.

    torch = require("torch", "nir.from_torch")   # MissingDependencyError: nir.from_torch needs torch, which
                                                 # is not installed: pip install "named-ir[torch]"

Features that can do without a package ask `installed` first and degrade (`nir bench` prints plain text
without rich and skips its plot without matplotlib, with a note). The backends have their own registry
(`nir.backends`), whose hints come from here too.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["MissingDependencyError", "require", "installed", "install_hint", "exit_unless_installed", "EXTRA_OF"]

# top-level package -> the extra of named-ir that installs it
EXTRA_OF: dict[str, str] = {
    "torch": "torch",
    "torchvision": "zoo",
    "transformers": "zoo",
    "rich": "bench",
    "matplotlib": "bench",
    "optax": "bench",
    "sklearn": "examples",
    "tvm": "tvm",
    "tvm_ffi": "tvm",
    "jax": "xla",
    "jaxlib": "xla",
    "flatbuffers": "xla",
    "pytest": "test",
    "hypothesis": "test",
}


class MissingDependencyError(ModuleNotFoundError):
    """An optional dependency is not installed. The message is one line: the feature, the package, and
    the ``pip install "named-ir[extra]"`` that installs it."""


def install_hint(package: str) -> str:
    """``pip install "named-ir[extra]"`` for ``package`` (``pip install package`` if no extra has it)."""
    top = package.partition(".")[0]
    return f'pip install "named-ir[{EXTRA_OF[top]}]"' if top in EXTRA_OF else f"pip install {top}"


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, checked without importing it."""
    try:
        return importlib.util.find_spec(package.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` (``"nir bench --plot"``), or raise MissingDependencyError saying
    which extra to install. An ImportError from inside an installed package is not hidden."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.partition(".")[0]
        if (e.name or "").partition(".")[0] != top:
            raise
        raise MissingDependencyError(f"{feature} needs {top}, which is not installed: {install_hint(top)}",
                                     name=top) from None


def exit_unless_installed(prog: str, *packages: str) -> None:
    """For a script (``python -m nir.bench.xla_vs_jax``): when a package is missing, exit with one line
    naming the extra to install (status 1), rather than a traceback from an import further on."""
    missing = [p for p in packages if not installed(p)]
    if missing:
        hints = " and ".join(dict.fromkeys(install_hint(p) for p in missing))
        raise SystemExit(f"{prog} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                         f"installed: {hints}")
