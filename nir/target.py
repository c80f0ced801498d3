"""Targets: ``"llvm"``, ``"llvm -mcpu=skylake-avx512 -num-cores=2"``, ``"cuda -arch=sm_90"``, ``"tpu"``.

TVM 0.27 no longer accepts option strings itself; nir parses them once here and each backend turns
a `Target` into what its compiler wants.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["Target", "parse_target", "TargetError", "KINDS"]

# target kind -> backends that can serve it, in the default order of preference
KINDS: dict[str, tuple[str, ...]] = {
    "llvm": ("xla", "tvm", "reference"),
    "cuda": ("xla", "tvm"),
    "tpu": ("xla",),
}
_ALIASES = {"cpu": "llvm", "gpu": "cuda", "nvidia": "cuda"}


class TargetError(ValueError):
    """An unknown or malformed target string."""


@dataclass(frozen=True)
class Target:
    """A parsed target: a kind plus ``-key=value`` options (``-mcpu``, ``-num-cores``, ``-arch``...)."""

    kind: str
    options: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of option ``key`` (without the leading dash), or ``default``."""
        return dict(self.options).get(key, default)

    @property
    def is_cpu(self) -> bool:
        return self.kind == "llvm"

    def __str__(self) -> str:
        return " ".join([self.kind] + [f"-{k}={v}" for k, v in self.options])


def parse_target(target: "str | Target") -> Target:
    """Parse a target string (TVM style). Raises TargetError naming the known kinds."""
    if isinstance(target, Target):
        return target
    if not isinstance(target, str) or not target.strip():
        raise TargetError(f"target must be a string such as 'llvm', 'cuda -arch=sm_90' or 'tpu', got {target!r}")
    parts = shlex.split(target)
    kind = _ALIASES.get(parts[0], parts[0])
    if kind not in KINDS:
        raise TargetError(f"unknown target {target!r}; known kinds: {', '.join(KINDS)} "
                          "(e.g. 'llvm -mcpu=skylake-avx512', 'cuda -arch=sm_90', 'tpu')")
    options = []
    for p in parts[1:]:
        if not p.startswith("-") or "=" not in p:
            raise TargetError(f"target option {p!r} in {target!r} should look like -key=value (e.g. -mcpu=znver3)")
        k, v = p.lstrip("-").split("=", 1)
        options.append((k, v))
    if kind == "cuda":
        arch = dict(options).get("arch")
        if arch is not None and not (arch.startswith("sm_") and arch[3:].rstrip("a").isdigit()):
            raise TargetError(f"cuda -arch must look like sm_80 or sm_90a, got {arch!r}")
    return Target(kind, tuple(options))
