"""The per-call fast path of a compiled function (one NamedTensor in): the same results as the reference
interpreter, outputs handed back without a copy, inputs the backends cannot share still right, and the
slow path's cases (trees, plain arrays) still told apart."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import nir
from nir.interpret import interpret
from nir.testing import assert_close

BACKENDS = nir.backends.available()
COMPILED = [b for b in BACKENDS if b != "reference"]  # backends whose outputs are their own buffers


def one_out(x):
    return (x * 2.0).softmax("C")


def two_out(x):
    return {"total": x.sum("C"), "scaled": x * 3.0}


def data(seed: int = 0, shape: tuple[int, int] = (8, 16)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def want(f, x: nir.NamedTensor) -> list[np.ndarray]:
    return interpret(f.program, x.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_input_one_output_call_matches_the_reference(backend: str) -> None:
    f = nir.compile(one_out, backend=backend)
    f(nir.tensor(data(0), names=("N", "C")))  # the first call compiles (slow path); the next ones are fast
    for seed in (1, 2):
        x = nir.tensor(data(seed), names=("N", "C"))
        y = f(x)
        assert y.names == ("N", "C")
        assert_close([y.numpy()], want(f, x), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_input_several_outputs_keep_their_structure(backend: str) -> None:
    f = nir.compile(two_out, backend=backend)
    x = nir.tensor(data(3), names=("N", "C"))
    f(x)
    y = f(x)
    assert sorted(y) == ["scaled", "total"] and y["total"].names == ("N",)
    assert_close([y["total"].numpy(), y["scaled"].numpy()], [x.numpy().sum(1), x.numpy() * 3.0], "float32")


@pytest.mark.parametrize("backend", COMPILED)
def test_outputs_are_the_backends_buffers_not_copies(backend: str) -> None:
    f = nir.compile(one_out, backend=backend)
    x = nir.tensor(data(4), names=("N", "C"))
    f(x)
    assert not f(x).numpy().flags.owndata  # a view of the jax array / TVM tensor


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_input_gives_the_right_answer(backend: str) -> None:
    f = nir.compile(one_out, backend=backend)
    x = nir.tensor(data(5), names=("N", "C"))
    x.numpy().setflags(write=False)  # e.g. an XLA output passed on: TVM must copy it
    f(x)
    assert_close([f(x).numpy()], want(f, x), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_input_calls_from_threads_match_the_reference(backend: str) -> None:
    f = nir.compile(one_out, backend=backend)
    xs = [nir.tensor(data(10 + k), names=("N", "C")) for k in range(4)]
    f(xs[0])
    wants = [want(f, x) for x in xs]
    bad: list[str] = []

    def worker(k: int) -> None:
        for _ in range(50):
            got = f(xs[k]).numpy()
            if not np.allclose(got, wants[k][0], rtol=1e-5, atol=1e-6):
                bad.append(f"thread {k}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_a_tree_argument_alone_still_compiles_as_its_leaves() -> None:
    f = nir.compile(lambda p: p["a"] + p["b"], backend="reference")
    a, b = nir.tensor(data(6), names=("N", "C")), nir.tensor(data(7), names=("N", "C"))
    np.testing.assert_allclose(f({"a": a, "b": b}).numpy(), a.numpy() + b.numpy(), rtol=1e-6)


def test_a_plain_array_alone_still_takes_the_declared_names() -> None:
    f = nir.compile(one_out, backend="reference", inputs=[nir.spec(N=8, C=16)])
    y = f(data(8))
    assert y.names == ("N", "C")
    assert_close([y.numpy()], interpret(f.program, data(8)), "float32")
