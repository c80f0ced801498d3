"""Train a named MLP and a LeNet-style CNN on scikit-learn's digits (1,797 8x8 images, shipped with
scikit-learn: no download), with the whole train step — forward, `nir.value_and_grad`, `nir.optim.adam`
— compiled as one program on any backend.

    nir train-digits --model cnn --backend xla --plot loss.png
    python -m nir.examples.digits --model mlp --backend tvm
    nir launch -n 2 nir train-digits --model mlp          # data parallel across 2 processes (xla)

Data parallel (``--data-parallel``, implied under `nir launch`): each batch's ``N`` is split across every
device of the run, ``mesh={"data": devices}, shard={"N": "data"}``, and XLA all-reduces the gradients.
Each process feeds only its rows of every batch (``local_inputs=True``, as a data loader per process
would); the batches are the same as in one process, so the loss curve and the accuracy are too.

Every tensor carries names: images are {N, C, H, W} (or {N, pixel} for the MLP), logits {N, class}, and a
parameter's gradient and Adam moments have the parameter's names (``w1{pixel, hidden}``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

import numpy as np

import nir
from nir import NamedTensor

__all__ = ["Digits", "load", "mlp_init", "mlp", "cnn_init", "cnn", "cross_entropy", "TrainResult", "train", "main"]

CLASSES = 10


@dataclass(frozen=True)
class Digits:
    """The data set split into train and test parts: images in [0, 1] and integer labels."""

    train_images: np.ndarray  # (N, 8, 8) float32
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray


def load(test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's digits, shuffled with ``seed`` and split (stratified by class)."""
    from ..extras import require
    datasets = require("sklearn.datasets", "the digits examples")
    train_test_split = require("sklearn.model_selection", "the digits examples").train_test_split
    data = datasets.load_digits()
    images = (data.images / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(images, data.target.astype(np.int64), test_size=test_fraction,
                                          random_state=seed, stratify=data.target)
    return Digits(xtr, ytr, xte, yte)


def _param(rng: np.random.Generator, fan_in: int, names: tuple[str, ...], shape: tuple[int, ...]) -> NamedTensor:
    """He-initialized weights (biases: zeros) with their dim names."""
    if len(shape) == 1:
        return nir.zeros(*shape, names=names)
    return nir.tensor((rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32), names=names)


def mlp_init(seed: int = 0, hidden: int = 128) -> dict[str, NamedTensor]:
    """Parameters of a 64 -> ``hidden`` -> 10 MLP."""
    rng = np.random.default_rng(seed)
    return {"w1": _param(rng, 64, ("pixel", "hidden"), (64, hidden)), "b1": _param(rng, 64, ("hidden",), (hidden,)),
            "w2": _param(rng, hidden, ("hidden", "class"), (hidden, CLASSES)),
            "b2": _param(rng, hidden, ("class",), (CLASSES,))}


def mlp(params: dict[str, NamedTensor], images: NamedTensor) -> NamedTensor:
    """images{N, H, W} -> logits{N, class}: pixels flattened by name, contractions by name."""
    x = images.flatten(["H", "W"], "pixel")
    h = (nir.contract(x, params["w1"], over="pixel") + params["b1"]).relu()
    return nir.contract(h, params["w2"], over="hidden") + params["b2"]


def cnn_init(seed: int = 0, c1: int = 16, c2: int = 32, hidden: int = 64) -> dict[str, NamedTensor]:
    """Parameters of a LeNet-style CNN for 8x8 images: conv3x3(c1)-relu-maxpool2, conv3x3(c2)-relu-maxpool2,
    fc(hidden)-relu, fc(10)."""
    rng = np.random.default_rng(seed)
    kernel = ("O", "C", "H", "W")
    return {"conv1": _param(rng, 9, kernel, (c1, 1, 3, 3)), "conv1_b": _param(rng, 9, ("O",), (c1,)),
            "conv2": _param(rng, 9 * c1, kernel, (c2, c1, 3, 3)), "conv2_b": _param(rng, 9 * c1, ("O",), (c2,)),
            "fc1": _param(rng, 4 * c2, ("feature", "hidden"), (4 * c2, hidden)),
            "fc1_b": _param(rng, 4 * c2, ("hidden",), (hidden,)),
            "fc2": _param(rng, hidden, ("hidden", "class"), (hidden, CLASSES)),
            "fc2_b": _param(rng, hidden, ("class",), (CLASSES,))}


def cnn(params: dict[str, NamedTensor], images: NamedTensor) -> NamedTensor:
    """images{N, H, W} -> logits{N, class}; the convolutions pick their dims by name."""
    x = images.align_to("N", "C", "H", "W")                                          # {N, C: 1, H: 8, W: 8}
    x = nir.max_pool2d(nir.conv2d(x, params["conv1"], params["conv1_b"], padding=1).relu(), 2)   # {N, O, 4, 4}
    x = nir.max_pool2d(nir.conv2d(x.rename(O="C"), params["conv2"], params["conv2_b"], padding=1).relu(), 2)
    x = x.flatten(["O", "H", "W"], "feature")                                       # {N, feature: 4 * c2}
    h = (nir.contract(x, params["fc1"], over="feature") + params["fc1_b"]).relu()
    return nir.contract(h, params["fc2"], over="hidden") + params["fc2_b"]


MODELS: dict[str, tuple[Callable[..., dict[str, NamedTensor]], Callable[..., NamedTensor]]] = {
    "mlp": (mlp_init, mlp), "cnn": (cnn_init, cnn)}


def cross_entropy(logits: NamedTensor, onehot: NamedTensor) -> NamedTensor:
    """Mean softmax cross-entropy of logits{N, class} against one-hot labels{N, class}."""
    return -(logits.log_softmax("class") * onehot).sum() / logits.size("N")


def _onehot(labels: np.ndarray) -> NamedTensor:
    return nir.tensor(np.eye(CLASSES, dtype=np.float32)[labels], names=("N", "class"))


def _images(x: np.ndarray) -> NamedTensor:
    return nir.tensor(np.ascontiguousarray(x), names=("N", "H", "W"))


@dataclass
class TrainResult:
    """What a training run did: per-step losses, test accuracy, where the time went, and the trained
    parameters (for inference, or `nir.quantize`)."""

    model: str
    backend: str
    losses: list[float] = field(default_factory=list)
    test_accuracy: float = 0.0
    compile_s: float = 0.0
    train_s: float = 0.0
    steps: int = 0
    devices: int = 1  # how many devices each step's batch is split across (its mesh)
    params: dict[str, NamedTensor] = field(default_factory=dict)


def _data_parallel(backend: str, batch: int) -> tuple[dict[str, Any], slice]:
    """The compile options that split ``N`` across every device of the run, and this process's rows of a
    batch (a contiguous block: process ``i`` holds rows ``i * batch / processes`` onwards)."""
    if backend != "xla":
        raise ValueError(f"data parallel training runs on the xla backend (JAX's multi-controller runtime), not "
                         f"{backend!r}; pass backend='xla' (--backend xla)")
    info = nir.distributed.info()
    if batch % info.global_devices:
        raise ValueError(f"batch {batch} does not split evenly across the run's {info.global_devices} devices "
                         f"({info.num_processes} process(es) of {info.local_devices}); give a batch that is a "
                         f"multiple of {info.global_devices}")
    part = batch // info.num_processes
    options = {"mesh": {"data": info.global_devices}, "shard": {"N": "data"}, "local_inputs": True}
    return options, slice(info.process_id * part, (info.process_id + 1) * part)


def train(model: str = "mlp", backend: str = "xla", epochs: int = 20, batch: int = 64, lr: float = 3e-3,
          weight_decay: float = 0.0, seed: int = 0, data: Digits | None = None, max_steps: int | None = None,
          evaluate: bool = True, data_parallel: bool = False, **compile_options: Any) -> TrainResult:
    """Train ``model`` ("mlp" or "cnn") with Adam; each step is one compiled program (forward, gradients,
    update) on ``backend``. Batches have a fixed size (the last partial batch of an epoch is dropped), so
    the step compiles once. ``max_steps`` stops early; ``evaluate=False`` skips the test accuracy.
    ``compile_options`` go to `nir.compile` (e.g. ``mesh=``/``shard=`` for XLA).

    ``data_parallel=True`` splits each batch across every device of the run (all processes after
    `nir.distributed.initialize`; this process's host devices otherwise): every process runs this
    function with the same arguments and passes only its rows of each batch. The batches, and so the
    losses and parameters, are those of a one-process run, up to the order of the gradient sums."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    rows = slice(None)
    if data_parallel:
        options, rows = _data_parallel(backend, batch)
        compile_options = {**options, **compile_options}
    data = data or load(seed=seed)
    init, apply = MODELS[model]
    params = init(seed)
    opt = nir.optim.adam(lr, weight_decay=weight_decay)

    def loss_fn(params: dict[str, NamedTensor], images: NamedTensor, onehot: NamedTensor) -> NamedTensor:
        return cross_entropy(apply(params, images), onehot)

    def step(params: Any, state: Any, images: NamedTensor, onehot: NamedTensor) -> Any:
        loss, grads = nir.value_and_grad(loss_fn)(params, images, onehot)
        params, state = opt.update(grads, state, params)
        return params, state, loss

    compiled = nir.compile(step, backend=backend, **compile_options)
    predict = nir.compile(lambda p, x: apply(p, x).argmax("class"), backend=backend)
    state = opt.init(params)
    result = TrainResult(model, compiled.backend, devices=math.prod(compile_options.get("mesh", {}).values()))
    rng = np.random.default_rng(seed)
    n = len(data.train_labels)
    t0 = time.perf_counter()
    first = np.arange(batch)[rows]
    compiled.lower(params, state, _images(data.train_images[first]), _onehot(data.train_labels[first]))
    result.compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            if max_steps is not None and len(result.losses) >= max_steps:
                break
            idx = order[start:start + batch][rows]  # the whole batch, or this process's rows of it
            params, state, loss = compiled(params, state, _images(data.train_images[idx]),
                                           _onehot(data.train_labels[idx]))
            result.losses.append(loss.item())
    result.train_s = time.perf_counter() - t0
    result.steps = len(result.losses)
    result.params = params
    if evaluate:
        guesses = predict(params, _images(data.test_images)).numpy()
        result.test_accuracy = float(np.mean(guesses == data.test_labels))
    return result


def plot(results: Sequence[TrainResult], path: str) -> None:
    """The loss curves of ``results`` in one PNG (matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        ax.plot(r.losses, label=f"{r.model} on {r.backend} ({r.test_accuracy:.1%} test)", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.set_title("scikit-learn digits, nir train step compiled as one program")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """`nir train-digits`: train on scikit-learn's digits and report the test accuracy and timings."""
    p = argparse.ArgumentParser(prog="nir train-digits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
    p.add_argument("--backend", default="xla", help="comma-separated nir backends (default xla)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-parallel", action="store_true",
                   help="split each batch across every device of the run (xla; implied under nir launch)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write the loss curves")
    p.add_argument("--json", metavar="FILE", default=None, help="write each run's losses and accuracy as JSON")
    args = p.parse_args(list(argv or []))
    parallel = args.data_parallel or nir.distributed.launched()
    main_process = True
    if nir.distributed.launched():  # started by `nir launch`: join the run before anything runs on xla
        info = nir.distributed.initialize()
        main_process = info.is_main
    data = load(seed=args.seed)
    results = []
    for backend in [b for b in args.backend.split(",") if b]:
        for model in [m for m in args.model.split(",") if m]:
            try:
                r = train(model, backend, args.epochs, args.batch, args.lr, seed=args.seed, data=data,
                          data_parallel=parallel)
            except ValueError as e:  # a request that cannot run (an unknown model, data parallel on tvm)
                print(f"nir train-digits: {e}", file=sys.stderr)
                return 2
            results.append(r)
            if main_process:  # every process holds the same parameters and losses; one prints
                where = f"  data parallel on {r.devices} devices" if parallel else ""
                print(f"{model:<4} {r.backend:<9} test accuracy {r.test_accuracy:.2%}  final loss {r.losses[-1]:.4f}  "
                      f"{r.steps} steps in {r.train_s:.2f} s ({1e3 * r.train_s / r.steps:.2f} ms/step)  "
                      f"compile {r.compile_s:.2f} s{where}", flush=True)
    if args.plot and main_process:
        plot(results, args.plot)
        print(f"loss curves written to {args.plot}")
    if args.json and main_process:
        with open(args.json, "w") as f:
            json.dump([{f.name: getattr(r, f.name) for f in fields(r) if f.name != "params"}  # not the weights
                       for r in results], f)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
