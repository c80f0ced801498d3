"""Accuracy of nir.quantize (int8) and precision="bf16" on scikit-learn's digits: the MLP and the small
CNN of `nir.examples.digits` (trained with nir's own train step), their forward pass traced with the
trained parameters as constants, quantized with training images as calibration data, and scored on the
held-out images on every installed backend.

    python -m nir.bench.digits          # the table: accuracy per model, precision and backend

`tests/quant/test_digits.py` asserts what the table shows: int8 and bf16 within 1 point of float32.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import numpy as np

import nir
from nir.examples import digits as example

__all__ = ["Models", "models", "score", "accuracies", "main"]

MODELS = tuple(example.MODELS)
CALIBRATION_BATCHES = 2


class Models:
    """One trained model's float32 program and its int8 version, both taking the whole test split."""

    def __init__(self, kind: str, data: example.Digits, float32: nir.Traced, int8: nir.Traced) -> None:
        self.kind, self.data, self.float32, self.int8 = kind, data, float32, int8


def _images(x: np.ndarray) -> nir.NamedTensor:
    return nir.tensor(np.ascontiguousarray(x), names=("N", "H", "W"))


def models(kind: str, data: example.Digits | None = None, train_backend: str | None = None,
           seed: int = 0) -> Models:
    """Train ``kind`` ("mlp" or "cnn") on ``train_backend`` (default: xla where installed, else the
    reference interpreter), then trace its logits over the test split and quantize them."""
    data = data or example.load(seed=seed)
    backend = train_backend or ("xla" if nir.backends.installed("xla") else "reference")
    params = example.train(kind, backend, data=data, seed=seed, evaluate=False).params
    apply = example.MODELS[kind][1]
    n = len(data.test_labels)
    traced = nir.trace(lambda images: apply(params, images), nir.spec(names=("N", "H", "W"), shape=(n, 8, 8)))
    calibration = [(_images(data.train_images[i * n:(i + 1) * n]),) for i in range(CALIBRATION_BATCHES)]
    return Models(kind, data, traced, nir.quantize(traced, calibration))


def score(compiled: Any, data: example.Digits) -> float:
    """Accuracy in percent of ``compiled`` (images -> logits{N, class}) on the test split."""
    logits = compiled(_images(data.test_images))
    guesses = np.asarray(logits.align_to("N", "class").numpy()).argmax(axis=1)
    return 100.0 * float(np.mean(guesses == data.test_labels))


def accuracies(m: Models, backends: Sequence[str]) -> dict[tuple[str, str], float]:
    """{(precision, backend): accuracy} for float32, int8 and bf16."""
    out = {}
    for b in backends:
        out[("float32", b)] = score(nir.compile(m.float32, backend=b), m.data)
        out[("int8", b)] = score(nir.compile(m.int8, backend=b), m.data)
        out[("bf16", b)] = score(nir.compile(m.float32, backend=b, precision="bf16"), m.data)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the accuracy table."""
    parser = argparse.ArgumentParser(prog="python -m nir.bench.digits", description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(b for b in ("reference", "tvm", "xla")
                                                       if nir.backends.installed(b)))
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    data = example.load()
    print(f"digits: {len(data.train_labels)} training and {len(data.test_labels)} test images")
    print(f"{'model':<6} {'precision':<9} " + " ".join(f"{b:>10}" for b in backends))
    for kind in MODELS:
        acc = accuracies(models(kind, data), backends)
        for precision in ("float32", "int8", "bf16"):
            print(f"{kind:<6} {precision:<9} " + " ".join(f"{acc[(precision, b)]:>9.2f}%" for b in backends))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
