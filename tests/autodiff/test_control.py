"""Gradients through nir.scan and nir.cond: against torch autograd on the unrolled (or branched)
equivalent in float64, traced and compiled on every backend, and differentiated again."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends
from nir.testing import assert_close

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(0)
T, N, I, H = 5, 2, 3, 4
NAMES = {"x": ("T", "N", "I"), "h0": ("N", "H"), "w": ("I", "H"), "u": ("G", "H"), "b": ("H",)}
SCALE = {"x": 1.0, "h0": 1.0, "w": 0.5, "u": 0.3, "b": 0.1}
ARRAYS = {k: RNG.standard_normal([{"T": T, "N": N, "I": I, "H": H, "G": H}[d] for d in names]) * SCALE[k]
          for k, names in NAMES.items()}


def params(dtype: str = "float64") -> dict[str, nir.NamedTensor]:
    return {k: nir.tensor(v.astype(dtype), names=NAMES[k]) for k, v in ARRAYS.items()}


def rnn_loss(p, reverse: bool = False):
    """The seed RNN as a scan whose carry and per-step outputs both reach the loss."""
    def step(h, x_t):
        h = (x_t @ p["w"] + h @ p["u"] + p["b"]).tanh()
        return h, h.sum()
    h, s = nir.scan(step, p["h0"], p["x"], over="T", reverse=reverse)
    return (h * h).sum() + (s * s).sum()


def torch_rnn_grads(reverse: bool = False) -> dict[str, np.ndarray]:
    t = {k: torch.tensor(v, requires_grad=True) for k, v in ARRAYS.items()}
    h, sums = t["h0"], []
    for i in (reversed(range(T)) if reverse else range(T)):
        h = torch.tanh(t["x"][i] @ t["w"] + h @ t["u"] + t["b"])
        sums.append(h.sum())
    ((h * h).sum() + (torch.stack(sums) ** 2).sum()).backward()
    return {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("reverse", [False, True])
def test_grad_through_scan_matches_torch_on_the_unrolled_loop(reverse: bool) -> None:
    got = nir.grad(lambda p: rnn_loss(p, reverse))(params())
    want = torch_rnn_grads(reverse)
    for k in ARRAYS:
        assert got[k].names == params()[k].names
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-10, atol=1e-10, err_msg=k)


def test_gradient_of_a_scan_is_a_loop_in_the_program() -> None:
    spec = {k: nir.spec(names=n, shape=v.shape, dtype="float32") for (k, n), v in zip(NAMES.items(), ARRAYS.values())}
    program = nir.trace(nir.grad(rnn_loss), spec).program
    nir.verify(program)
    assert [e.prim for e in program.eqns].count("scan") >= 2  # the forward (saving carries) and the backward
    assert "tanh" not in {e.prim for e in program.eqns}  # the step stays inside the loops: nothing unrolled


@pytest.mark.parametrize("backend", ["reference"] + [b for b in ("xla", "tvm") if backends.installed(b)])
def test_compiled_grad_through_scan_matches_the_reference(backend: str) -> None:
    f = nir.compile(nir.grad(rnn_loss), backend=backend)
    got = f(params("float32"))
    want = torch_rnn_grads()
    for k in ARRAYS:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=2e-4, atol=2e-5, err_msg=k)


def test_grad_of_a_carry_that_has_the_scanned_dim() -> None:
    """The saved carries are stacked along the scanned dim: a carry with that dim must not clash."""
    x = nir.tensor(RNG.standard_normal((3, 3)), names=("T", "K"))
    c0 = nir.tensor(RNG.standard_normal(3), names=("T",))

    def loss(c0, x):
        c, _ = nir.scan(lambda c, x_t: ((c * x_t.sum() + x_t.rename(K="T")).tanh(), None), c0, x, over="T")
        return c.sum()
    got = nir.grad(loss, argnums=(0, 1))(c0, x)
    tc, tx = torch.tensor(c0.numpy(), requires_grad=True), torch.tensor(x.numpy(), requires_grad=True)
    c = tc
    for i in range(3):
        c = torch.tanh(c * tx[i].sum() + tx[i])
    c.sum().backward()
    np.testing.assert_allclose(got[0].numpy(), tc.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(got[1].numpy(), tx.grad.numpy(), rtol=1e-10)


def test_integer_carries_and_outputs_have_no_gradient_and_do_not_block_it() -> None:
    x = nir.tensor(RNG.standard_normal((4, 2)), names=("T", "N"))

    def loss(x):
        (s, n), signs = nir.scan(lambda c, x_t: ((c[0] + x_t * x_t, c[1] + 1), x_t > 0), (x.sum("T") * 0, nir.tensor(0)),
                                 x, over="T")
        return (s * n.to("float64")).sum() + signs.to("float64").sum()
    np.testing.assert_allclose(nir.grad(loss)(x).numpy(), 2 * x.numpy() * 4, rtol=1e-12)


def cond_loss(flag, x, a, b):
    y = nir.cond(flag.sum() > 0, lambda v: (v * a).tanh(), lambda v: v * v + b, x)
    return (y * y).sum()


@pytest.mark.parametrize("flag", [1.0, -1.0])
def test_grad_through_cond_matches_torch_on_the_taken_branch(flag: float) -> None:
    xs = [RNG.standard_normal(3) for _ in range(3)]
    args = [nir.tensor(np.array([flag]), names=("K",))] + [nir.tensor(v, names=("N",)) for v in xs]
    got = nir.grad(cond_loss, argnums=(1, 2, 3))(*args)
    x, a, b = (torch.tensor(v, requires_grad=True) for v in xs)
    y = torch.tanh(x * a) if flag > 0 else x * x + b
    (y * y).sum().backward()
    for g, t in zip(got, (x, a, b)):  # torch leaves the other branch's inputs without a gradient: zero
        want = t.grad.numpy() if t.grad is not None else np.zeros(3)
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", [b for b in ("xla", "tvm") if backends.installed(b)])
def test_compiled_grad_through_cond_takes_the_branch_at_run_time(backend: str) -> None:
    f = nir.compile(nir.grad(cond_loss, argnums=(1, 2, 3)), backend=backend)
    ref = nir.compile(nir.grad(cond_loss, argnums=(1, 2, 3)), backend="reference")
    xs = [nir.tensor(RNG.standard_normal(3).astype(np.float32), names=("N",)) for _ in range(3)]
    for flag in (1.0, -1.0):
        flag_t = nir.tensor(np.array([flag], np.float32), names=("K",))
        assert_close([g.numpy() for g in f(flag_t, *xs)], [g.numpy() for g in ref(flag_t, *xs)], "float32")


def test_grad_of_grad_through_scan() -> None:
    """d/dw of sum(d loss/dx) through a scan: the backward scan is differentiated again."""
    x = nir.tensor(RNG.standard_normal((3, 2)), names=("T", "N"))
    w = nir.tensor(RNG.standard_normal(2), names=("N",))

    def loss(w, x):
        return nir.scan(lambda c, x_t: ((c * 0.5 + x_t * w).tanh(), None), w * 0, x, over="T")[0].sum()
    got = nir.grad(lambda w, x: nir.grad(loss, argnums=1)(w, x).sum())(w, x)
    tw, tx = torch.tensor(w.numpy(), requires_grad=True), torch.tensor(x.numpy(), requires_grad=True)
    c = tw * 0
    for i in range(3):
        c = torch.tanh(c * 0.5 + tx[i] * tw)
    (gx,) = torch.autograd.grad(c.sum(), tx, create_graph=True)
    gx.sum().backward()
    np.testing.assert_allclose(got.numpy(), tw.grad.numpy(), rtol=1e-10)
