"""Gradient programs compiled by every installed backend agree with the reference interpreter: the
backward program of every primitive, and second-order programs (grad of grad)."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends
from nir.autodiff import vjp_program
from nir.interpret import interpret
from nir.target import parse_target
from nir.testing import assert_close, grad_samples, random_array

BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not backends.installed(b), reason=f"{b} is not installed"))
            for b in ("tvm", "xla")]


def _run(backend: str, program: nir.Program, inputs) -> list[np.ndarray]:
    exe = backends.get(backend).build(program, parse_target("llvm"))
    return [np.asarray(o) for o in exe(*inputs)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_primitives_gradient_program_matches_the_reference(backend: str) -> None:
    failures = []
    for i, case in enumerate(grad_samples("float32")):
        back = vjp_program(case.program)
        rng = np.random.default_rng(i)
        cts = [random_array(v.type, rng) for v in back.inputs[len(case.inputs):]]
        inputs = [*case.inputs, *cts]
        try:
            assert_close(_run(backend, back, inputs), interpret(back, *inputs), "float32", scale=5)
        except AssertionError as e:
            failures.append(f"{case.id}: {e}")
    assert not failures, "\n".join(failures)


def _second_order(x: nir.NamedTensor, w: nir.NamedTensor) -> nir.NamedTensor:
    """The squared norm of a conv-softmax network's input gradient (a gradient penalty): grad of grad."""
    def loss(x, w):
        y = nir.conv2d(x, w, padding=1).tanh()
        return nir.max_pool2d(y, 2).log_softmax("O").sum()
    g = nir.grad(loss)(x, w)
    return (g * g).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_of_grad_compiles_and_matches_the_reference(backend: str) -> None:
    nir.manual_seed(3)
    x = nir.randn(2, 3, 6, 6, names=("N", "C", "H", "W"))
    w = nir.randn(4, 3, 3, 3, names=("O", "C", "H", "W"))
    f = nir.grad(_second_order, argnums=1)
    want = f(x, w)
    got = nir.compile(f, backend=backend)(x, w)
    assert got.names == w.names
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiled_max_pool_gradient_matches_the_reference(backend: str) -> None:
    """Windows that tile the input (kernel 2x3 = stride), with rows and columns left past the last window."""
    def loss(x, ct):
        return (nir.max_pool2d(x, (2, 3), spatial=("E", "C")) * ct).sum()
    nir.manual_seed(5)
    x, ct = nir.randn(3, 7, 11, names=("B", "E", "C")), nir.randn(3, 3, 3, names=("B", "E", "C"))
    want = nir.grad(loss)(x, ct)
    got = nir.compile(nir.grad(loss), backend=backend)(x, ct)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert (want.numpy() != 0).sum() == 3 * 3 * 3  # one element per window


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_gradient_over_many_planes_matches_the_reference(backend: str) -> None:
    """LeNet's first pooling (2x2 over 28x28) on 24 planes: enough work for TVM's parallel loops, whose fused
    index TVM 0.27 flattened a plane off once the gradient read the pooled tensors at ``(h - 1) // 2``."""
    def loss(x, ct):
        return (nir.max_pool2d(x.relu(), 2) * ct).sum()
    nir.manual_seed(6)
    x, ct = nir.randn(4, 6, 28, 28, names=("N", "C", "H", "W")), nir.randn(4, 6, 14, 14, names=("N", "C", "H", "W"))
    want = nir.grad(loss)(x, ct)
    got = nir.compile(nir.grad(loss), backend=backend)(x, ct)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_gradient_of_a_fused_producer(backend: str) -> None:
    """Found by `nir fuzz --grad` (XLA): the max-pool VJP compared the input with the pooled result, which
    XLA computed from a differently fused layer norm, so no element matched and the gradient vanished."""
    def loss(x, ct):
        y = nir.layer_norm(x, ("B", "E", "C"))
        return (nir.max_pool2d(y, (2, 3), stride=1, padding=1, spatial=("E", "C")) * ct).sum()
    nir.manual_seed(4)
    x, ct = nir.randn(7, 4, 4, names=("B", "E", "C")), nir.randn(7, 5, 4, names=("B", "E", "C"))
    want = nir.grad(loss)(x, ct)
    got = nir.compile(nir.grad(loss), backend=backend)(x, ct)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
