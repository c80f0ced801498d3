"""What a benchmark ran on: CPU, cores, memory, load, and the versions of the libraries measured."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from typing import Any

__all__ = ["machine_info", "library_versions"]

# distribution names whose versions a result records
DISTRIBUTIONS = ("named-ir", "numpy", "scipy", "torch", "jax", "jaxlib", "apache-tvm", "apache-tvm-ffi")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, logical CPUs (all, and usable by this process), memory, OS, Python, load average, date."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": _mem_total_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the measured libraries (None where not installed), read without importing."""
    out: dict[str, str | None] = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out
