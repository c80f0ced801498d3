"""nir.optim against optax (and torch.optim for SGD with momentum) over several steps, the optimizer
state's names, and a whole train step (grad + update) compiled as one program on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends

BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not backends.installed(b), reason=f"{b} is not installed"))
            for b in ("reference", "tvm", "xla")]


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    return params, x, y


def nir_params(p):
    return {"w": nir.tensor(p["w"], names=("in", "out"), dtype="float64"),
            "b": nir.tensor(p["b"], names=("out",), dtype="float64")}


def nir_loss(p, x, y):
    err = nir.contract(x, p["w"], over="in") + p["b"] - y
    return (err * err).mean()


def run_nir(opt, steps: int = 5):
    p, x, y = problem()
    params = nir_params(p)
    xs, ys = nir.tensor(x, names=("N", "in"), dtype="float64"), nir.tensor(y, names=("N", "out"), dtype="float64")
    state = opt.init(params)
    for _ in range(steps):
        params, state = opt.update(nir.grad(nir_loss)(params, xs, ys), state, params)
    return params


def run_optax(tx, steps: int = 5):
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):  # float64 like the nir side, without flipping the process-wide flag
        return _run_optax(jax, tx, steps)


def _run_optax(jax, tx, steps: int):
    import jax.numpy as jnp
    p, x, y = problem()
    params = {k: jnp.asarray(v) for k, v in p.items()}

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


optax = pytest.importorskip("optax")


@pytest.mark.parametrize("name,ours,theirs", [
    ("sgd", lambda: nir.optim.sgd(0.1), lambda: optax.sgd(0.1)),
    ("adam", lambda: nir.optim.adam(0.05), lambda: optax.adam(0.05)),
    ("adamw", lambda: nir.optim.adam(0.05, b1=0.8, weight_decay=0.1), lambda: optax.adamw(0.05, b1=0.8,
                                                                                            weight_decay=0.1)),
])
def test_matches_optax(name, ours, theirs) -> None:
    got, want = run_nir(ours()), run_optax(theirs())
    for k in ("w", "b"):
        np.testing.assert_allclose(got[k].numpy(), np.asarray(want[k]), rtol=1e-10, atol=1e-12)


def test_sgd_momentum_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    p, x, y = problem()
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    opt = torch.optim.SGD(tp.values(), lr=0.1, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        ((torch.tensor(x) @ tp["w"] + tp["b"] - torch.tensor(y)) ** 2).mean().backward()
        opt.step()
    got = run_nir(nir.optim.sgd(0.1, momentum=0.9))
    for k in ("w", "b"):
        np.testing.assert_allclose(got[k].numpy(), tp[k].detach().numpy(), rtol=1e-10)


def test_state_moments_have_their_parameters_names() -> None:
    params = nir_params(problem()[0])
    state = nir.optim.adam(1e-3).init(params)
    assert state["mu"]["w"].names == ("in", "out") and state["nu"]["b"].names == ("out",)
    assert state["count"].ndim == 0
    assert nir.optim.sgd(0.1).init(params) == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_compiled_train_step_is_one_program_and_matches_eager(backend: str) -> None:
    p, x, y = problem()
    params = nir.tree.map(lambda t: t.to("float32"), nir_params(p))
    xs, ys = nir.tensor(x, names=("N", "in")), nir.tensor(y, names=("N", "out"))
    opt = nir.optim.adam(0.05, weight_decay=0.01)

    def step(params, state, x, y):
        loss, grads = nir.value_and_grad(nir_loss)(params, x, y)
        params, state = opt.update(grads, state, params)
        return params, state, loss

    compiled = nir.compile(step, backend=backend)
    ours, theirs = (params, opt.init(params)), (params, opt.init(params))
    for _ in range(3):
        *ours, loss_c = compiled(*ours, xs, ys)
        *theirs, loss_e = step(*theirs, xs, ys)
    assert len(compiled.signatures) == 1
    assert ours[0]["w"].names == ("in", "out")
    np.testing.assert_allclose(loss_c.item(), loss_e.item(), rtol=1e-5)
    np.testing.assert_allclose(ours[0]["w"].numpy(), theirs[0]["w"].numpy(), rtol=1e-4, atol=1e-6)


def test_mismatched_gradient_tree_is_refused() -> None:
    params = nir_params(problem()[0])
    with pytest.raises(ValueError, match="the gradients have the structure"):
        nir.optim.sgd(0.1).update({"w": params["w"]}, (), params)
