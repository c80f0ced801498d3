"""Child process of `nir.bench.measure.measure_memory`: run one variant of one workload, print its peak
resident memory as one JSON line.

    python -m nir.bench.memory '{"workload": "mlp", "variant": {"name": "jax", "kind": "peer", ...},
                                 "size": "small", "seed": 0, "threads": 2}'

The baseline is the peak resident set after Python, nir, the variant's framework and the inputs are
loaded; the peak is the same figure after building the variant and running it three times.

The figure is ``VmHWM`` from /proc/self/status, the high-water mark of this process's own memory. It
is what ``getrusage().ru_maxrss`` would say in a process started from a small one; but Linux carries
``ru_maxrss`` over from the parent through fork and exec, so a child of a big benchmark process would
report the parent's peak. ``ru_maxrss`` is the fallback where /proc is missing.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (see the module docstring)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv: list[str]) -> int:
    """Measure one variant; print ``{"baseline_rss": bytes, "peak_rss": bytes}``."""
    spec = json.loads(argv[0])
    from .variants import Variant, build, set_threads
    from .workloads import WORKLOADS
    set_threads(spec["threads"])
    variant = Variant(**spec["variant"])
    for pkg in variant.packages:
        importlib.import_module(pkg)
    workload = WORKLOADS[spec["workload"]]
    inputs = workload.make_inputs(spec["size"], spec["seed"])
    baseline = peak_rss_bytes()
    built = build(variant, workload, inputs, spec["threads"], intermediates=False)
    for _ in range(3):
        built.call()
    print(json.dumps({"baseline_rss": baseline, "peak_rss": peak_rss_bytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
