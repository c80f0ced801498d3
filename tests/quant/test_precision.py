"""nir.compile(..., precision="bf16"): contractions and convolutions with bfloat16 operands and float32
accumulation, weights rounded once at compile time, everything else float32; results within the stated
tolerance of float32 on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends

RNG = np.random.default_rng(1)
W = nir.tensor((RNG.standard_normal((64, 48)) / 8).astype(np.float32), names=("F", "hidden"))
K = nir.tensor((RNG.standard_normal((6, 3, 3, 3)) / 5).astype(np.float32), names=("O", "C", "H", "W"))
BACKENDS = [b for b in ("reference", "tvm", "xla") if backends.installed(b)]
# bfloat16 keeps 8 bits of mantissa: each operand is off by up to 2**-9 relatively, the sums are exact
# float32; relative to the largest output this stays below 1e-2 for these sizes
RTOL = 1e-2


def layer(x: nir.NamedTensor) -> nir.NamedTensor:
    return (x @ W).softmax("hidden")


def conv(x: nir.NamedTensor) -> nir.NamedTensor:
    return nir.conv2d(x, K, padding=1).relu()


def x_nf() -> nir.NamedTensor:
    return nir.tensor(RNG.standard_normal((8, 64)).astype(np.float32), names=("N", "F"))


def test_bf16_program_rounds_weights_at_compile_time_and_accumulates_in_float32():
    f = nir.compile(layer, backend="reference", precision="bf16").lower(x_nf())
    eqns = f.program.eqns
    weights = [e for e in eqns if e.prim == "constant" and e.out.type.dtype == "bfloat16"]
    casts = [e for e in eqns if e.prim == "cast"]
    (wide,) = [e for e in eqns if e.prim == "contract_wide"]
    assert len(weights) == 1 and weights[0].out.type.names[-1] == "hidden"
    assert [c.kwargs["dtype"] for c in casts] == ["bfloat16"]  # the activation, at run time
    assert wide.out.type.dtype == "float32" and "softmax" in f.ir
    assert all(e.out.type.dtype == "float32" for e in eqns if e.prim == "softmax")


def test_fp32_precision_changes_nothing():
    x = x_nf()
    f = nir.compile(layer, backend="reference", precision="fp32").lower(x)
    assert [e.prim for e in f.program.eqns] == [e.prim for e in nir.trace(layer, x).program.eqns]
    assert "bfloat16" not in f.ir


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn, make", [(layer, x_nf),
                                      (conv, lambda: nir.randn(2, 3, 8, 8, names=("N", "C", "H", "W")))])
def test_bf16_is_close_to_float32_on_every_backend(backend, fn, make):
    x = make()
    want = nir.compile(fn, backend="reference")(x)._data
    got = nir.compile(fn, backend=backend, precision="bf16")(x)
    assert got._data.dtype == np.float32
    assert np.abs(got._data - want).max() <= RTOL * np.abs(want).max()


@pytest.mark.skipif(not backends.installed("xla"), reason="xla is not installed")
def test_other_precisions_still_reach_the_xla_backend():
    f = nir.compile(layer, backend="xla", precision="highest")
    f(x_nf())
    assert "contract_wide" not in f.ir and "HIGHEST" in f.backend_ir("stablehlo").upper()
