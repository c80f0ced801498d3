"""Dynamic dims: ``dynamic=("N",)`` compiles once per bucket, gives the exact-shape results,
and refuses (naming the op and the dim) programs that padding would change."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir.dynamic import ACROSS, DynamicError, bucket_of
from nir.ops import PRIMITIVES

BACKENDS = nir.backends.available()
W = np.random.default_rng(7).standard_normal((16, 8)).astype(np.float32)
# Padding must not change a row's result. A kernel may still round a row differently at another batch size
# (numpy's BLAS, the reference, takes a matrix-vector product for one row and sums in another order), so
# rows are compared to a few float32 ulps (the layer norm scales a last-bit difference up to ~5e-7); padding
# that leaked into a row would differ by far more.
SAME = dict(rtol=2e-6, atol=2e-6)


def mlp(x):
    w = nir.tensor(W, names=("C", "O"))
    return nir.layer_norm((x @ w).relu().softmax("O") + 1.0, "O")


def batch(n: int, c: int = 16, seed: int = 0) -> nir.NamedTensor:
    return nir.tensor(np.random.default_rng(seed + n).standard_normal((n, c)).astype(np.float32), names=("N", "C"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_results_equal_exact_shape_results(backend) -> None:
    dyn = nir.compile(mlp, backend=backend, dynamic=("N",))
    exact = nir.compile(mlp, backend=backend)
    for n in (1, 3, 5, 8, 13):
        got, want = dyn(batch(n)), exact(batch(n))
        assert got.names == want.names and got.shape == want.shape == (n, 8)
        np.testing.assert_allclose(got.numpy(), want.numpy(), **SAME)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_bucket_compiles_once(backend) -> None:
    f = nir.compile(mlp, backend=backend, dynamic=("N",))
    for n in (3, 4, 1, 2, 7, 5, 6, 8):
        f(batch(n))
    assert sorted(s[0].shape[0] for s in f.signatures) == [1, 2, 4, 8]


def test_given_buckets_are_used() -> None:
    f = nir.compile(mlp, backend="reference", dynamic={"N": (6, 10)})
    for n in (1, 6, 7, 10):
        f(batch(n))
    assert sorted(s[0].shape[0] for s in f.signatures) == [6, 10]


def test_a_size_past_the_largest_bucket_is_refused() -> None:
    f = nir.compile(mlp, backend="reference", dynamic={"N": (4, 8)})
    with pytest.raises(nir.SignatureError, match=r"'N' has size 9, more than the largest bucket 8"):
        f(batch(9))


def test_power_of_two_buckets() -> None:
    assert [bucket_of("N", n, None) for n in (0, 1, 2, 3, 5, 8, 9, 1000)] == [0, 1, 2, 4, 8, 8, 16, 1024]


def test_several_inputs_and_outputs_follow_the_dynamic_dim() -> None:
    def f(x, y):
        s = x.rename(N="B") * 2.0
        return {"sum": s + y.rename(N="B"), "scaled": x.relu()}
    g = nir.compile(f, backend="reference", dynamic=("N",))
    x, y = batch(5), batch(5, seed=3)
    got, want = g(x, y), f(x, y)
    assert got["sum"].names == ("B", "C") and got["sum"].shape == (5, 16)
    np.testing.assert_array_equal(got["sum"].numpy(), want["sum"].numpy())
    np.testing.assert_array_equal(got["scaled"].numpy(), want["scaled"].numpy())


def test_inputs_disagreeing_on_the_dynamic_size_are_refused() -> None:
    g = nir.compile(lambda x, y: x + y, backend="reference", dynamic=("N",))
    with pytest.raises(DynamicError, match="'N' has size 3 in one input and 4 in input 1"):
        g(batch(3), batch(4))


@pytest.mark.parametrize("fn,op,dim", [
    (lambda x: x.softmax("N"), "softmax", "N"),
    (lambda x: x.sum("N"), "reduce_sum", "N"),
    (lambda x: x.rename(N="B").mean("B"), "reduce_sum", "B"),
    (lambda x: nir.contract(x, x.rename(C="D"), over="N"), "contract", "N"),
    (lambda x: x.flatten(("N", "C"), "F"), "flatten", "N"),
    (lambda x: nir.cat([x, x], "N"), "concat", "N"),
])
def test_ops_that_combine_rows_of_the_dynamic_dim_are_refused(fn, op, dim) -> None:
    f = nir.compile(fn, backend="reference", dynamic=("N",))
    with pytest.raises(DynamicError, match=rf"{op} at test_dynamic.py:\d+ combines values across dim '{dim}'"):
        f(batch(3))


def test_a_program_that_depends_on_the_size_is_refused() -> None:
    f = nir.compile(lambda x: x / x.size("N"), backend="reference", dynamic=("N",))
    with pytest.raises(DynamicError, match=r"the program depends on a dynamic dim's size"):
        f(batch(3))


def test_dynamic_needs_a_function_to_trace() -> None:
    program = nir.trace(mlp, batch(4)).program
    with pytest.raises(ValueError, match="dynamic= needs a Python function"):
        nir.compile(program, backend="reference", dynamic=("N",))


def test_a_declared_signature_takes_any_size_of_the_dynamic_dim() -> None:
    f = nir.compile(mlp, backend="reference", dynamic=("N",), inputs=[nir.spec(N=8, C=16)])
    np.testing.assert_allclose(f(batch(3).numpy()).numpy(), mlp(batch(3)).numpy(), **SAME)
    with pytest.raises(nir.SignatureError, match=r"shape \(3, 15\) instead of \(8, 16\)"):
        f(batch(3, c=15))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_exported_dynamic_function_pads_after_loading(backend, tmp_path) -> None:
    f = nir.compile(mlp, backend=backend, dynamic=("N",))
    f(batch(8)), f(batch(2))
    g = nir.load(f.export(tmp_path / "m"))
    for n in (1, 2, 5, 8):
        np.testing.assert_allclose(g(batch(n)).numpy(), f(batch(n)).numpy(), **SAME)
    with pytest.raises(nir.SignatureError, match="match none of the signatures exported"):
        g(batch(9))


def test_every_primitive_is_classified_for_padding() -> None:
    """A primitive neither row-wise (elementwise, creation) nor in ACROSS is refused with dynamic=;
    list new primitives in nir/dynamic.py's ACROSS."""
    missing = [p.name for p in PRIMITIVES.values() if p.kind not in ("elementwise", "creation") and p.name not in ACROSS]
    assert missing == []
