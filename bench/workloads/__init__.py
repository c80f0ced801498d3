"""The benchmark workloads, by name: ``WORKLOADS["attention"].make_inputs("small", seed=0)``.

Families: ``seed`` (per-channel normalize, NCHW and NHWC), ``cnn`` (LeNet-5, a 3x3 conv layer), ``mlp``,
``transformer`` (an attention block), ``normalization`` (layer norm, softmax), ``rnn``, ``training`` (train
steps: gradients and an optimizer update); and ``zoo`` (torchvision and Hugging Face models through
`nir.from_torch`), which runs only when asked for.
"""

from __future__ import annotations

from . import attention, conv, lenet, mlp, norm, rnn, seed, train, zoo
from .base import SIZES, Workload

__all__ = ["WORKLOADS", "FAMILIES", "SIZES", "Workload", "select"]

WORKLOADS: dict[str, Workload] = {w.name: w for mod in (seed, lenet, conv, mlp, attention, norm, rnn, train, zoo)
                                  for w in mod.WORKLOADS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(w.family for w in WORKLOADS.values()))


def select(names: str | None) -> list[Workload]:
    """Workloads named in a comma-separated list of workload or family names (a workload's name wins
    over a family of that name): None or "" gives the default ones (every family but the zoo, and not
    the slow variants), "all" every one."""
    if names in (None, ""):
        return [w for w in WORKLOADS.values() if w.default]
    if names == "all":
        return list(WORKLOADS.values())
    chosen: dict[str, Workload] = {}
    for item in (n.strip() for n in names.split(",") if n.strip()):
        # a workload's own name wins over a family of the same name ("rnn", "mlp")
        matches = [w for w in WORKLOADS.values() if item == w.name] or \
            [w for w in WORKLOADS.values() if item == w.family]
        if not matches:
            raise ValueError(f"unknown workload or family {item!r}; workloads: {', '.join(WORKLOADS)}; "
                             f"families: {', '.join(FAMILIES)}")
        chosen.update((w.name, w) for w in matches)
    return list(chosen.values())
