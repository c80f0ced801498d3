"""The model zoo: nine models nobody in this project wrote, built by their own libraries with seeded random
weights (no downloads), converted with `nir.from_torch` from their users' point of view.

torchvision: resnet18, resnet50, mobilenet_v3_small, efficientnet_b0, convnext_tiny, vit_b_16 on images
``("N", "C", "H", "W")``; transformers (2 layers, hidden 128, vocab 1000): GPT-2 (``GPT2LMHeadModel``,
logits), BERT (``BertModel``, last hidden state), LLaMA (``LlamaForCausalLM``, logits: grouped-query
attention, RoPE, RMSNorm, SiLU-gated MLP) on token ids ``("B", "T")``.

Sizes: ``full`` is 224x224 images and 128 tokens; ``small`` is 32x32 images and 16 tokens, and for ViT a
2-layer, 64-wide `VisionTransformer` (ViT-B/16's own class and code at a size a test can afford).

Random weights can make a comparison pass trivially: a zero-initialized head (ViT's) outputs zeros, and
networks whose trained batch-norm statistics keep activations at unit scale shrink them towards zero
when those statistics are the defaults (MobileNetV3 and EfficientNet-B0 output ~1e-10). So `liven`
re-initializes all-zero weights and sets every batch norm's running statistics from the model's own
activations on seeded calibration batches at the size it will run at, as training would; outputs are
then of order one. A channel that is (nearly) constant on those batches would get a variance near 0
and amplify rounding errors a millionfold (EfficientNet's late depthwise convolutions at 32x32), so
no variance is left below 1% of its layer's mean.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .libs import import_torchvision, import_transformers

__all__ = ["ZooModel", "MODELS", "model", "convert", "liven", "example_input", "VISION_SIDE", "TEXT_TOKENS",
           "TEXT_BATCH", "VOCAB"]

VISION_SIDE = {"small": 32, "full": 224}
TEXT_TOKENS = {"small": 16, "full": 128}
TEXT_BATCH = 2
VOCAB = 1000
WEIGHT_SEED = 0  # the model is the same whatever the inputs' seed


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: how its library builds it (``build(size)``, random weights), the names of its input,
    and which output the zoo compares (``output``: a key of the model's output dict, or None for a tensor).
    ``rtol``: the tolerance, relative to the largest |output|, at which compiled nir must match torch."""

    name: str
    library: str
    build: Callable[[str], Any]
    names: tuple[str, ...]
    output: str | None = None
    rtol: float = 1e-3

    @property
    def vision(self) -> bool:
        """Whether the model takes images (else token ids)."""
        return self.library == "torchvision"


def _torchvision(name: str) -> Callable[[str], Any]:
    def build(size: str) -> Any:
        models = import_torchvision().models
        if name == "vit_b_16" and size == "small":
            return models.VisionTransformer(image_size=VISION_SIDE["small"], patch_size=16, num_layers=2, num_heads=4,
                                            hidden_dim=64, mlp_dim=128)
        return getattr(models, name)(weights=None)
    return build


def _gpt2(size: str) -> Any:
    tf = import_transformers()
    config = tf.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=VOCAB, n_positions=TEXT_TOKENS["full"],
                           bos_token_id=0, eos_token_id=0, use_cache=False)
    return tf.GPT2LMHeadModel(config)


def _bert(size: str) -> Any:
    tf = import_transformers()
    config = tf.BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512,
                           vocab_size=VOCAB, max_position_embeddings=TEXT_TOKENS["full"])
    return tf.BertModel(config, add_pooling_layer=False)


def _llama(size: str) -> Any:
    tf = import_transformers()
    config = tf.LlamaConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=344, vocab_size=VOCAB, max_position_embeddings=TEXT_TOKENS["full"],
                            bos_token_id=0, eos_token_id=0, pad_token_id=0, use_cache=False)
    return tf.LlamaForCausalLM(config)


IMAGES, TOKENS = ("N", "C", "H", "W"), ("B", "T")
MODELS: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("resnet18", "torchvision", _torchvision("resnet18"), IMAGES),
    ZooModel("resnet50", "torchvision", _torchvision("resnet50"), IMAGES),
    ZooModel("mobilenet_v3_small", "torchvision", _torchvision("mobilenet_v3_small"), IMAGES),
    ZooModel("efficientnet_b0", "torchvision", _torchvision("efficientnet_b0"), IMAGES),
    ZooModel("convnext_tiny", "torchvision", _torchvision("convnext_tiny"), IMAGES),
    ZooModel("vit_b_16", "torchvision", _torchvision("vit_b_16"), IMAGES),
    ZooModel("gpt2", "transformers", _gpt2, TOKENS, output="logits"),
    ZooModel("bert", "transformers", _bert, TOKENS, output="last_hidden_state"),
    ZooModel("llama", "transformers", _llama, TOKENS, output="logits"),
)}


def example_input(m: ZooModel, size: str, batch: int, seed: int) -> Any:
    """A torch input for ``m``: normal images ``{N: batch, C: 3, H, W}`` or token ids ``{B: batch, T}``."""
    import torch
    g = torch.Generator().manual_seed(seed)
    if m.vision:
        side = VISION_SIDE[size]
        return torch.randn(batch, 3, side, side, generator=g)
    return torch.randint(0, VOCAB, (batch, TEXT_TOKENS[size]), generator=g)


def liven(module: Any, m: ZooModel, size: str = "small") -> Any:
    """``module`` with no all-zero weight and with batch-norm statistics from its own activations at
    ``size`` (see the module docstring); in eval mode."""
    import torch
    g = torch.Generator().manual_seed(WEIGHT_SEED + 1)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() >= 2 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
        norms = [b for b in module.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
        if norms:
            for b in norms:
                b.reset_running_stats()
                b.momentum = None  # a plain average over the calibration batches
            module.train()
            for _ in range(2):
                module(example_input(m, size, 8, int(torch.randint(0, 2**31 - 1, (), generator=g))))
            for b in norms:
                b.running_var.clamp_(min=0.01 * float(b.running_var.mean()))
    return module.eval()


@functools.lru_cache(maxsize=None)
def model(name: str, size: str) -> Any:
    """Zoo model ``name`` for inputs of ``size``, built with seeded random weights (the same at both sizes,
    but for ViT's small configuration), livened at that size, in eval mode. Cached: one per process."""
    import torch
    m = MODELS[name]
    torch.manual_seed(WEIGHT_SEED)
    return liven(m.build(size), m, size)


def output_of(m: ZooModel, out: Any) -> Any:
    """The compared output of a model's result (its ``logits``, ``last_hidden_state``, or the tensor)."""
    return out if m.output is None else out[m.output]


@functools.lru_cache(maxsize=None)
def convert(name: str, size: str, batch: int) -> Any:
    """`nir.from_torch` of zoo model ``name`` for inputs of ``size`` and ``batch``, with the user's names on
    its input (a `nir.frontends.torch.TorchTraced`). Cached per shape."""
    import nir
    m = MODELS[name]
    return nir.from_torch(model(name, size), (example_input(m, size, batch, 0),), names=m.names)


def size_of(m: ZooModel, shape: tuple[int, ...]) -> str:
    """Which size an input of ``shape`` is for."""
    length = shape[-1]
    table = VISION_SIDE if m.vision else TEXT_TOKENS
    for size, n in table.items():
        if n == length:
            return size
    raise ValueError(f"zoo model {m.name}: no size has inputs of shape {shape} ({table})")


def max_relative_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want|: the error relative to the output's scale (a model's outputs are of
    one scale; elementwise relative errors blow up near zero)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny))
