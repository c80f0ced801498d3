"""The ``zoo`` family of `nir bench`: torchvision and Hugging Face models through `nir.from_torch`.

One workload per model and batch: ``resnet18_b1``/``resnet18_b8`` ... for the six torchvision models
(224x224 at the full size, 32x32 at the small one), ``gpt2``/``bert``/``llama`` at batch 2 (128 tokens
full, 16 small). Peers: torch eager and torch.compile, running the very module that was converted.
The family is not in a plain `nir bench` run (its models take minutes to build on every backend); ask
for it with ``nir bench --workloads zoo`` (or a workload name). See `models` for the models themselves
and `libs` for importing torchvision and transformers on a CPU-only torch.
"""

from __future__ import annotations

from typing import Any, Callable

import nir
from nir import NamedTensor

from ..base import Workload, check_size
from .models import MODELS, TEXT_BATCH, ZooModel, convert, example_input, model, output_of, size_of

__all__ = ["WORKLOADS", "MODELS"]

VISION_BATCHES = (1, 8)


def _program(m: ZooModel) -> Callable[[NamedTensor], NamedTensor]:
    def run(x: NamedTensor) -> NamedTensor:
        traced = convert(m.name, size_of(m, x.shape), x.shape[0])
        return output_of(m, traced.function(x))
    run.__name__ = run.__qualname__ = m.name
    run.__doc__ = f"{m.name} ({m.library}), converted by nir.from_torch for the input's shape."
    return run


def _inputs(m: ZooModel, batch: int) -> Callable[[str, int], list[NamedTensor]]:
    def make_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
        x = example_input(m, check_size(size), batch if m.vision else TEXT_BATCH, seed)
        return [nir.tensor(x.numpy(), names=m.names)]
    return make_inputs


def _torch(m: ZooModel) -> Callable[[], Callable[..., Any]]:
    def peer() -> Callable[..., Any]:
        import torch

        def run(x: Any) -> Any:
            with torch.no_grad():
                return output_of(m, model(m.name, size_of(m, tuple(x.shape)))(x))
        return run
    return peer


def _workload(m: ZooModel, batch: int | None) -> Workload:
    shape = "{N: %d, C: 3, H, W} images (224 full, 32 small)" % batch if batch else \
        "{B: %d, T} token ids (128 full, 16 small)" % TEXT_BATCH
    return Workload(f"{m.name}_b{batch}" if batch else m.name, "zoo", _program(m), _inputs(m, batch or TEXT_BATCH),
                    {"torch": _torch(m)}, f"{m.name} ({m.library}, random weights) on {shape}",
                    rtol=m.rtol, atol=5 * m.rtol, default=False)  # outputs of scale 1 to 60


WORKLOADS = [_workload(m, b) for m in MODELS.values() for b in (VISION_BATCHES if m.vision else (None,))]
