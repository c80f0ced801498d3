"""Child process of `nir.bench.measure.measure_memory`: run one variant of one workload, print its peak
resident memory as one JSON line.

    python -m nir.bench.memory '{"workload": "mlp", "variant": {"name": "jax", "kind": "peer", ...},
                                 "size": "small", "seed": 0, "threads": 2}'

The baseline is ``ru_maxrss`` after Python, nir, the variant's framework and the inputs are loaded; the
peak is ``ru_maxrss`` after building the variant and running it three times.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys


def _maxrss_bytes() -> int:
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
    baseline = _maxrss_bytes()
    built = build(variant, workload, inputs, spec["threads"], intermediates=False)
    for _ in range(3):
        built.call()
    print(json.dumps({"baseline_rss": baseline, "peak_rss": _maxrss_bytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
