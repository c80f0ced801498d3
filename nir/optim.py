"""Functional optimizers over parameter trees, in the style of optax: ``init(params) -> state`` and
``update(grads, state, params) -> (new_params, new_state)``. States are trees of NamedTensors (each
moment has its parameter's names), so a whole train step — `nir.grad` plus `update` — traces and
compiles as one program.

    opt = nir.optim.adam(1e-3)
    state = opt.init(params)

    @nir.compile(backend="xla")
    def step(params, state, x, y):
        loss, grads = nir.value_and_grad(loss_fn)(params, x, y)
        params, state = opt.update(grads, state, params)
        return params, state, loss
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import tree as _tree
from .functions import full, sqrt, zeros_like
from .tensor import NamedTensor
from .types import NamedShapeError

__all__ = ["Optimizer", "sgd", "adam"]


@dataclass(frozen=True)
class Optimizer:
    """A pair of pure functions: ``init(params) -> state`` and ``update(grads, state, params) ->
    (new_params, new_state)``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def _like(g: NamedTensor, p: NamedTensor) -> NamedTensor:
    """A gradient in its parameter's dim order (a gradient from `nir.grad` already is)."""
    if g.type.dims == p.type.dims or g.names == p.names:
        return g
    if None in p.names or set(g.names) != set(p.names):
        raise NamedShapeError(f"optimizer: gradient {g.type.pretty()} does not match its parameter {p.type.pretty()}; "
                              "pass gradients with the parameters' names (as nir.grad returns them)")
    return g.align_as(p)


def _check(grads: Any, params: Any) -> list[tuple[NamedTensor, NamedTensor]]:
    gs, gt = _tree.flatten(grads)
    ps, pt = _tree.flatten(params)
    if gt != pt:
        raise ValueError(f"optimizer: the gradients have the structure {gt}, the parameters {pt}")
    return [(_like(g, p), p) for g, p in zip(gs, ps)]


def sgd(lr: float, momentum: float = 0.0) -> Optimizer:
    """Stochastic gradient descent, ``p - lr * g``; with ``momentum`` the heavy-ball form PyTorch uses
    (``buf = momentum * buf + g``, ``p - lr * buf``). The state is ``()`` without momentum, else
    ``{"momentum": tree of buffers}``."""
    def init(params: Any) -> Any:
        return {"momentum": _tree.map(zeros_like, params)} if momentum else ()

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        pairs = _check(grads, params)
        _, structure = _tree.flatten(params)
        if not momentum:
            return _tree.unflatten(structure, [p - lr * g for g, p in pairs]), ()
        bufs = [momentum * b + g for (g, _), b in zip(pairs, _tree.leaves(state["momentum"]))]
        new = [p - lr * b for (_, p), b in zip(pairs, bufs)]
        return _tree.unflatten(structure, new), {"momentum": _tree.unflatten(structure, bufs)}

    return Optimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0) -> Optimizer:
    """Adam (Kingma & Ba), with bias correction; with ``weight_decay > 0`` AdamW's decoupled decay
    (``p - lr * (adam_step + weight_decay * p)``, as optax.adamw and torch.optim.AdamW). The state is
    ``{"count": 0-d int32 step count, "mu": first moments, "nu": second moments}``."""
    def init(params: Any) -> Any:
        return {"count": full(fill_value=0, dtype="int32"), "mu": _tree.map(zeros_like, params),
                "nu": _tree.map(zeros_like, params)}

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        pairs = _check(grads, params)
        _, structure = _tree.flatten(params)
        count = state["count"] + 1
        fixes: dict[str, tuple[NamedTensor, NamedTensor]] = {}  # bias corrections, in each parameter dtype
        new_p, new_mu, new_nu = [], [], []
        for (g, p), mu, nu in zip(pairs, _tree.leaves(state["mu"]), _tree.leaves(state["nu"])):
            mu = b1 * mu + (1.0 - b1) * g
            nu = b2 * nu + (1.0 - b2) * (g * g)
            if p.dtype not in fixes:
                t = count.to(p.dtype)
                fixes[p.dtype] = (1.0 - b1 ** t, 1.0 - b2 ** t)
            fix1, fix2 = fixes[p.dtype]
            step = (mu / fix1) / (sqrt(nu / fix2) + eps)
            if weight_decay:
                step = step + weight_decay * p
            new_p.append(p - lr * step)
            new_mu.append(mu)
            new_nu.append(nu)
        new_state = {"count": count, "mu": _tree.unflatten(structure, new_mu), "nu": _tree.unflatten(structure, new_nu)}
        return _tree.unflatten(structure, new_p), new_state

    return Optimizer(init, update)
