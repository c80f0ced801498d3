"""The MLP and the small CNN of nir.examples.digits, trained with nir, keep their test accuracy within 1
point of float32 after nir.quantize (int8) and under precision="bf16", on every installed backend; the
quantized programs carry int8 weights with one scale per output channel, by name."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

import nir  # noqa: E402
from nir.bench import digits  # noqa: E402

BACKENDS = [b for b in ("reference", "tvm", "xla") if nir.backends.installed(b)]
DATA = digits.example.load()


@pytest.fixture(scope="module", params=digits.MODELS)
def trained(request):
    m = digits.models(request.param, DATA)
    return m, digits.score(nir.compile(m.float32, backend="reference"), DATA)


def test_the_float_models_learn_the_digits(trained):
    _, accuracy = trained
    assert accuracy > 95.0


def test_every_contraction_and_convolution_is_int8(trained):
    m, _ = trained
    prims = m.int8.program.prims()
    assert "contract" not in prims and "conv2d" not in prims
    assert "contract_wide" in prims
    assert ("conv2d_wide" in prims) == (m.kind == "cnn")


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_keeps_accuracy_within_one_point(trained, backend):
    m, float_accuracy = trained
    assert abs(digits.score(nir.compile(m.int8, backend=backend), DATA) - float_accuracy) <= 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_keeps_accuracy_within_one_point(trained, backend):
    m, float_accuracy = trained
    bf16 = nir.compile(m.float32, backend=backend, precision="bf16")
    assert abs(digits.score(bf16, DATA) - float_accuracy) <= 1.0
