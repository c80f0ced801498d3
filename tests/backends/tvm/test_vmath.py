"""nir's vectorizable float32 exp, tanh, sigmoid and erf (backends/tvm/vmath.py) against float64,
over wide ranges, denormals, infinities and NaN; and that CPU builds use them by default."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax
from tvm.relax import op as R

import nir.backends
from nir.interpret import interpret
from nir.ir import Builder
from nir.target import parse_target
from nir.testing import assert_close, random_inputs
from nir.types import TensorType

vmath = importlib.import_module("nir.backends.tvm.vmath")
backend = nir.backends.get("tvm")

POINTS = np.concatenate([
    np.linspace(-110, 110, 88001), np.geomspace(1e-8, 12, 4001), -np.geomspace(1e-8, 12, 4001),
    np.geomspace(1e-45, 1e-36, 64), -np.geomspace(1e-45, 1e-36, 64),  # denormal and tiny inputs
    [0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.7228, 88.73, -87.33, -103.97, -104.0, 3.4e38, -3.4e38],
]).astype(np.float32)

REFERENCE = {
    "exp": np.exp, "tanh": np.tanh, "erf": np.vectorize(math.erf, otypes=[np.float64]),
    "sigmoid": lambda x: np.where(x < 0, np.exp(x) / (1 + np.exp(x)), 1 / (1 + np.exp(-x))),
}
OPS = {"exp": R.exp, "tanh": R.tanh, "sigmoid": R.sigmoid, "erf": R.erf}
MAX_ULPS = 4  # libm's expf/tanhf/erff are within 1-2 ulps; the forms here measured within 2.3


def _run(op, xs: np.ndarray) -> np.ndarray:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(xs.shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(op(x))
        bb.emit_func_output(y)
    mod = vmath.VectorMath()(bb.get())
    assert "nir_" in mod.script()  # rewritten, not R.exp & co.
    lib = tvm.compile(mod, target=backend.tvm_target(parse_target("llvm")))
    return relax.VirtualMachine(lib, tvm.cpu())["main"](tvm.runtime.tensor(xs)).numpy()


@pytest.mark.parametrize("name", OPS)
def test_vector_math_is_within_a_few_ulps_of_float64(name):
    got = _run(OPS[name], POINTS).astype(np.float64)
    with np.errstate(all="ignore"):  # overflow in the references and the casts is expected
        exact = REFERENCE[name](POINTS.astype(np.float64))
        rounded = exact.astype(np.float32).astype(np.float64)  # what a correctly rounded float32 gives
        special = ~np.isfinite(rounded)
        np.testing.assert_array_equal(got[special], rounded[special])  # inf, -inf and NaN where float32 has them
        spacing = np.spacing(np.maximum(np.abs(rounded), np.finfo(np.float32).tiny).astype(np.float32))
        ulps = np.abs(got - exact)[~special] / spacing[~special]
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= MAX_ULPS, f"{name}({POINTS[~special][worst]!r}) = {got[~special][worst]!r}, " \
                                    f"exactly {exact[~special][worst]!r}: {ulps[worst]:.1f} ulps"


def test_exp_overflows_to_inf_and_underflows_through_the_denormals():
    xs = np.array([88.7, 88.8, 1e30, -87.5, -100.0, -103.9, -104.5, -1e30], np.float32)
    got = _run(R.exp, xs)
    assert np.isfinite(got[0]) and np.isinf(got[1]) and np.isinf(got[2])
    assert 0 < got[4] < np.finfo(np.float32).tiny and got[6] == 0 and got[7] == 0  # -100: a denormal
    denormal_step = 1.5e-45
    np.testing.assert_allclose(got[3:6], np.exp(xs[3:6].astype(np.float64)), rtol=1e-6, atol=denormal_step)


def test_cpu_builds_compute_softmax_and_gelu_with_vector_math():
    b = Builder()
    x = b.input(TensorType.of({"B": 8, "D": 64}, "float32"))
    program = b.build([b.add("softmax", [x], dim="D"), b.add("gelu", [x]), b.add("sigmoid", [x]),
                       b.add("tanh", [x]), b.add("log_softmax", [x], dim="B")])
    inputs = random_inputs(program, seed=3)
    inputs[0][2, 5], inputs[0][4, 1] = np.inf, np.nan
    exe = backend.build(program, parse_target("llvm"))
    assert "T.exp(" not in exe.backend_ir("tir") and "T.erf(" not in exe.backend_ir("tir")
    assert_close(exe(*inputs), interpret(program, *inputs), "float32")


def _softmax_rows(k: int, seed: int) -> np.ndarray:
    """One row per case: ordinary logits, large |x| (most exps underflow to 0), a row with -inf entries
    (a mask), a row of -inf only (NaN), a +inf entry (NaN), a NaN entry (NaN), equal logits, huge finite."""
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.standard_normal(k) * 3, rng.standard_normal(k) * 1e4 + 3e4, rng.standard_normal(k),
                     np.full(k, -np.inf), rng.standard_normal(k), rng.standard_normal(k), np.full(k, 7.5),
                     np.clip(rng.standard_normal(k), -3, 3) * 1e38]).astype(np.float32)
    rows[2, ::3] = -np.inf
    rows[4, k // 2], rows[5, k // 3] = np.inf, np.nan
    return rows


@pytest.mark.parametrize("k", [64, 100, 197, 1024])  # whole vectors, tails (100: steps of 20; 197: prime), 4 vectors
def test_softmax_matches_the_reference_on_edge_rows(k):
    b = Builder()
    x = b.input(TensorType.of({"B": 8, "K": k}, "float32"))
    program = b.build([b.add("softmax", [x], dim="K")])
    rows = _softmax_rows(k, seed=k)
    with np.errstate(all="ignore"):
        want = interpret(program, rows)
    got = backend.build(program, parse_target("llvm"))(rows)
    assert np.isnan(want[0][3]).all() and np.isnan(want[0][4]).all() and np.isnan(want[0][5]).all()
    assert_close(got, want, "float32")


@pytest.mark.parametrize("scale,center", [(True, True), (False, False)])
def test_layer_norm_over_rows_no_vector_divides_matches_numpy(scale, center):
    """vmath's layer_norm (rows of 197, whose sums it splits) with TVM's gamma and beta, or without them."""
    rng = np.random.default_rng(5)
    xs = (rng.standard_normal((24, 197)) * 0.5 + 2).astype(np.float32)
    gamma, beta = rng.standard_normal(197).astype(np.float32), rng.standard_normal(197).astype(np.float32)
    bb = relax.BlockBuilder()
    x, g, b = (relax.Var(n, relax.TensorType(s, "float32")) for n, s in (("x", xs.shape), ("g", (197,)), ("b", (197,))))
    with bb.function("main", [x, g, b]):
        with bb.dataflow():
            y = bb.emit_output(R.nn.layer_norm(x, g, b, axes=[-1], epsilon=1e-5, center=center, scale=scale))
        bb.emit_func_output(y)
    mod = vmath.VectorMath()(bb.get())
    assert "layer_norm_sum_head" in mod.script()  # rewritten, not R.nn.layer_norm
    lib = tvm.compile(mod, target=backend.tvm_target(parse_target("llvm")))
    got = relax.VirtualMachine(lib, tvm.cpu())["main"](*(tvm.runtime.tensor(a) for a in (xs, gamma, beta))).numpy()
    x64 = xs.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    want = want * gamma if scale else want
    want = want + beta if center else want
    assert_close([got], [want.astype(np.float32)], "float32")
