"""Training steps: forward, gradients and an SGD-with-momentum update (lr 0.01, momentum 0.9) of the MLP,
LeNet-5 and transformer-block workloads, as one call. nir runs ``nir.value_and_grad`` + ``nir.optim.sgd``
compiled as one program; torch runs ``loss.backward()`` + ``torch.optim.SGD`` on parameters it owns (eager,
or the whole step under torch.compile); jax runs ``jax.value_and_grad`` + ``optax.sgd`` under one
``jax.jit``. Inputs: the batch, its target (one-hot classes, or a regression target for the block), the
parameters and the momentum buffers (zeros: the first step). Every variant returns the loss and the
updated parameters of its first call; later calls time the same step again (torch's keep training the
parameters it owns, as a torch loop does). There is no numpy peer: numpy has no autodiff.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

import nir
from nir import NamedTensor

from . import attention, lenet, mlp
from .base import PeerMaker, Workload, check_size, randn

LR, MOMENTUM = 0.01, 0.9


def _onehot(rng: np.random.Generator, n: int, classes: int, batch: str, cls: str) -> NamedTensor:
    return nir.tensor(np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)], names=(batch, cls))


def _with_state(inputs: list[NamedTensor], target: NamedTensor) -> list[NamedTensor]:
    """[batch, target, *params, *momentum buffers (zeros)]."""
    x, params = inputs[0], inputs[1:]
    return [x, target, *params, *[nir.zeros_like(p) for p in params]]


def _nir_step(forward: Callable[..., NamedTensor], loss: Callable[[NamedTensor, NamedTensor], NamedTensor]
              ) -> Callable[..., Any]:
    opt = nir.optim.sgd(LR, momentum=MOMENTUM)

    def train_step(x: NamedTensor, target: NamedTensor, *state: NamedTensor) -> tuple[NamedTensor, ...]:
        n = len(state) // 2
        params, bufs = list(state[:n]), list(state[n:])
        value, grads = nir.value_and_grad(lambda ps: loss(forward(x, *ps), target))(params)
        new, _ = opt.update(grads, {"momentum": bufs}, params)
        return (value, *new)
    return train_step


def _torch_step(forward: PeerMaker, regression: bool) -> PeerMaker:
    def make() -> Callable[..., Any]:
        import torch
        import torch.nn.functional as F
        fwd = forward()
        owned: dict[str, Any] = {}

        def train_step(x, target, *state):
            if not owned:  # the parameters and optimizer a torch training loop would own
                owned["params"] = [p.clone().requires_grad_() for p in state[:len(state) // 2]]
                owned["opt"] = torch.optim.SGD(owned["params"], lr=LR, momentum=MOMENTUM)
            params, opt = owned["params"], owned["opt"]
            opt.zero_grad()
            out = fwd(x, *params)
            loss = F.mse_loss(out, target) if regression else F.cross_entropy(out, target)
            loss.backward()
            opt.step()
            return (loss.detach(), *[p.detach() for p in params])
        return train_step
    return make


def _jax_step(forward: PeerMaker, regression: bool) -> PeerMaker:
    def make() -> Callable[..., Any]:
        import jax
        import optax
        fwd = forward()
        tx = optax.sgd(LR, momentum=MOMENTUM)

        def loss_fn(params, x, target):
            out = fwd(x, *params)
            if regression:
                return ((out - target) ** 2).mean()
            return optax.softmax_cross_entropy(out, target).mean()

        def train_step(x, target, *state):  # jax.jit-ed by the harness
            params, bufs = list(state[:len(state) // 2]), list(state[len(state) // 2:])
            opt_state = jax.tree.unflatten(jax.tree.structure(tx.init(params)), bufs)
            loss, grads = jax.value_and_grad(loss_fn)(params, x, target)
            updates, _ = tx.update(grads, opt_state, params)
            return (loss, *optax.apply_updates(params, updates))
        return train_step
    return make


def _cross_entropy(batch: str, cls: str) -> Callable[[NamedTensor, NamedTensor], NamedTensor]:
    def loss(logits: NamedTensor, onehot: NamedTensor) -> NamedTensor:
        return -(logits.log_softmax(cls) * onehot).sum() / logits.size(batch)
    return loss


def _mse(out: NamedTensor, target: NamedTensor) -> NamedTensor:
    err = out - target
    return (err * err).mean()


def _mlp_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    inputs = mlp.make_inputs(size, seed)
    n, widths = mlp.WIDTHS[check_size(size)]
    return _with_state(inputs, _onehot(np.random.default_rng(seed + 1), n, widths[-1], "N", f"F{len(widths) - 1}"))


def _lenet_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    inputs = lenet.make_inputs(size, seed)
    return _with_state(inputs, _onehot(np.random.default_rng(seed + 1), inputs[0].size("N"), 10, "N", "F3"))


def _block_inputs(size: str, seed: int = 0) -> list[NamedTensor]:
    inputs = attention.make_inputs(size, seed)
    s = attention.SHAPES[check_size(size)]
    target = randn(np.random.default_rng(seed + 1), B=s["B"], S=s["S"], D=s["H"] * s["E"])
    return _with_state(inputs, target)


def _peers(module: Any, regression: bool = False) -> dict[str, PeerMaker]:
    return {"torch": _torch_step(module._torch, regression), "jax": _jax_step(module._jax, regression)}


def _describe(what: str, sizes: Sequence[str]) -> str:
    return f"train step (SGD momentum) of the {what}; " + ", ".join(sizes)


WORKLOADS = [
    Workload("mlp_train", "training", _nir_step(mlp.mlp, _cross_entropy("N", "F4")), _mlp_inputs, _peers(mlp),
             _describe("4-layer relu MLP", ["256 x 512 -> ... -> 512 classes (full)"]), rtol=1e-3, atol=1e-5),
    Workload("lenet5_train", "training", _nir_step(lenet.lenet5, _cross_entropy("N", "F3")), _lenet_inputs,
             _peers(lenet), _describe("LeNet-5", ["{128, 1, 32, 32} images, 10 classes (full)"]),
             rtol=1e-3, atol=1e-5),
    Workload("attention_train", "training", _nir_step(attention.attention_block, _mse), _block_inputs,
             _peers(attention, regression=True),
             _describe("pre-norm transformer block", ["batch 8, seq 128, D 128, MSE to a target (full)"]),
             rtol=1e-3, atol=1e-4),
]
