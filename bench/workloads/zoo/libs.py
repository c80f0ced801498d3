"""Importing torchvision and transformers on a CPU-only torch: the one place that knows how.

The torchvision wheel on this project's package index is built against CUDA torch. With the CPU torch
pinned here (2.13.0+cpu) its compiled ops (``torchvision::nms`` and friends) do not load, and
``import torchvision`` then fails inside ``torchvision/_meta_registrations.py``, which registers meta
kernels for those missing ops: ``RuntimeError: operator torchvision::nms does not exist``. Model code
(``torchvision.models``) needs none of those ops. So when the plain import fails that way, the partial
import is dropped and torchvision is imported again with an empty module standing in for
``torchvision._meta_registrations``; everything the zoo uses works, and the detection ops that need the
compiled library still fail with torch's own error if something calls them.

transformers imports torchvision itself when it is installed, so it is imported through
`import_transformers`, after torchvision.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from nir.extras import installed, require

__all__ = ["import_torchvision", "import_transformers"]

_STAND_IN = "torchvision._meta_registrations"


def import_torchvision() -> Any:
    """``torchvision``, imported even where its compiled ops do not match the installed torch (see the
    module docstring). Raises `nir.extras.MissingDependencyError` when torchvision is not installed."""
    try:
        return require("torchvision", "the model zoo")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed, partial import
    stand_in = types.ModuleType(_STAND_IN)
    stand_in.__doc__ = "Stands in for torchvision's meta registrations of its compiled ops, which did not load."
    sys.modules[_STAND_IN] = stand_in
    return importlib.import_module("torchvision")


def import_transformers() -> Any:
    """``transformers``, after torchvision (which it imports when installed) is importable."""
    if installed("torchvision"):
        import_torchvision()
    return require("transformers", "the model zoo")
