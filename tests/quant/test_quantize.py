"""nir.quantize: the pass (int8 types in the text, scales named by the weight's output dim, float ops
left alone), its observers, every backend against the reference on the quantized program, and the
errors it gives.
"""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends
from nir.quant import MinMaxObserver, PercentileObserver, QuantizationError

RNG = np.random.default_rng(0)
W1 = nir.tensor((RNG.standard_normal((64, 32)) / 8).astype(np.float32), names=("F", "hidden"))
B1 = nir.tensor((RNG.standard_normal(32) * 0.1).astype(np.float32), names=("hidden",))
W2 = nir.tensor((RNG.standard_normal((32, 10)) / 6).astype(np.float32), names=("hidden", "out"))
KERNEL = nir.tensor((RNG.standard_normal((8, 3, 3, 3)) / 5).astype(np.float32), names=("O", "C", "H", "W"))
BACKENDS = [b for b in ("reference", "tvm", "xla") if backends.installed(b)]


def mlp(x: nir.NamedTensor) -> nir.NamedTensor:
    return (x @ W1 + B1).relu() @ W2


def cnn(x: nir.NamedTensor) -> nir.NamedTensor:
    y = nir.conv2d(x, KERNEL, padding=1).relu()
    return nir.max_pool2d(y, 2).sum(("H", "W"))


def batch(seed: int, n: int = 16) -> nir.NamedTensor:
    return nir.tensor(np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32), names=("N", "F"))


def images(seed: int) -> nir.NamedTensor:
    data = np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)
    return nir.tensor(data, names=("N", "C", "H", "W"))


@pytest.fixture(scope="module")
def quantized_mlp() -> nir.Traced:
    return nir.quantize(nir.trace(mlp, batch(0)), [(batch(i),) for i in range(1, 5)])


def test_quantized_program_text_shows_int8_types_and_int32_accumulators(quantized_mlp):
    text = str(quantized_mlp.program)
    assert "int8{_" in text and "= quantize(" in text
    assert text.count("int32{N:16") == 2 and text.count("contract_wide") == 2
    assert "= contract[" not in text


def test_weight_scales_are_named_by_the_output_dim(quantized_mlp):
    deq = [e for e in quantized_mlp.program.eqns if e.prim == "dequantize"]
    assert [e.inputs[1].type.names for e in deq] == [("hidden",), ("out",)]


def test_activation_scales_are_per_tensor(quantized_mlp):
    quant = [e for e in quantized_mlp.program.eqns if e.prim == "quantize"]
    assert [e.inputs[1].type.dims for e in quant] == [(), ()]


def test_quantize_returns_a_new_verified_program_and_keeps_the_source():
    traced = nir.trace(mlp, batch(0))
    before = traced.program.text
    q = nir.quantize(traced, [(batch(1),)])
    assert traced.program.text == before
    assert nir.verify(q.program) is q.program
    assert isinstance(nir.quantize(traced.program, [(batch(1),)]), nir.Program)


def test_quantized_program_prints_and_parses_back(quantized_mlp):
    text = quantized_mlp.program.text
    assert nir.parse(text).text == text


def test_quantized_mlp_stays_close_to_float():
    x = batch(9)
    want = nir.compile(mlp, backend="reference")(x)._data
    got = nir.compile(nir.quantize(nir.trace(mlp, x), [(batch(i),) for i in range(4)]), backend="reference")(x)._data
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_computes_the_quantized_program_like_the_reference(backend, quantized_mlp):
    x = batch(7)
    got = nir.compile(quantized_mlp, backend=backend)(x)
    want = nir.compile(quantized_mlp, backend="reference")(x)
    assert got.names == want.names == ("N", "out")
    np.testing.assert_allclose(got._data, want._data, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantized_convolution_on_every_backend(backend):
    q = nir.quantize(nir.trace(cnn, images(0)), [(images(i),) for i in range(3)])
    assert [e.inputs[1].type.names for e in q.program.eqns if e.prim == "dequantize"] == [("O",)]
    x = images(5)
    got = nir.compile(q, backend=backend)(x)._data
    np.testing.assert_allclose(got, nir.compile(q, backend="reference")(x)._data, rtol=1e-5, atol=1e-5)
    want = nir.compile(cnn, backend="reference")(x)._data
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_weight_only_quantization_keeps_float_activations():
    q = nir.quantize(nir.trace(mlp, batch(0)), [], activations="float32")
    prims = [e.prim for e in q.program.eqns]
    assert "quantize" not in prims and prims.count("dequantize") == 2 and prims.count("contract") == 2
    x = batch(3)
    want = nir.compile(mlp, backend="reference")(x)._data
    assert np.abs(nir.compile(q, backend="reference")(x)._data - want).max() < 0.02 * np.abs(want).max()


def test_exclude_keeps_the_named_layer_in_float():
    q = nir.quantize(nir.trace(mlp, batch(0)), [(batch(1),)], exclude=("out",))
    prims = [e.prim for e in q.program.eqns]
    assert prims.count("contract_wide") == 1 and prims.count("contract") == 1


def test_activations_between_two_inputs_are_quantized_per_tensor():
    q = nir.quantize(nir.trace(lambda a, b: nir.contract(a, b, over="K"), nir.spec(M=4, K=8), nir.spec(K=8, N=3)),
                     [(nir.randn(4, 8, names=("M", "K")), nir.randn(8, 3, names=("K", "N")))])
    assert [e.inputs[1].type.dims for e in q.program.eqns if e.prim == "quantize"] == [(), ()]


def test_percentile_observer_ignores_rare_outliers():
    x = np.concatenate([np.random.default_rng(0).uniform(-1, 1, 100_000), [50.0]]).astype(np.float32)
    mm, pc = MinMaxObserver(), PercentileObserver(99.9)
    mm.update(x)
    pc.update(x)
    assert mm.amax() == 50.0
    assert 0.95 < pc.amax() < 1.0


def test_observers_ignore_nan_and_infinity():
    mm = MinMaxObserver()
    mm.update(np.array([np.nan, np.inf, -2.0, 1.0], np.float32))
    assert mm.amax() == 2.0


def test_percentile_option_gives_smaller_activation_scales_than_minmax():
    traced = nir.trace(mlp, batch(0))
    cal = [(batch(i),) for i in range(3)]

    def scales(q: nir.Traced) -> list[float]:
        constants = {e.out.id: e.kwargs["data"] for e in q.program.eqns if e.prim == "constant"}
        return [float(np.frombuffer(constants[e.inputs[1].id], np.float32)[0])
                for e in q.program.eqns if e.prim == "quantize"]
    mm = scales(nir.quantize(traced, cal))
    pc = scales(nir.quantize(traced, cal, observer="percentile", percentile=99.0))
    assert len(mm) == len(pc) == 2 and all(p < m for p, m in zip(pc, mm))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def test_no_calibration_data_is_refused():
    with pytest.raises(QuantizationError, match=r"no calibration data .*N: 16, F: 64"):
        nir.quantize(nir.trace(mlp, batch(0)), [])


def test_calibration_that_is_not_an_iterable_of_tuples_is_refused():
    with pytest.raises(QuantizationError, match="must be an iterable of input tuples"):
        nir.quantize(nir.trace(mlp, batch(0)), batch(1))


def test_calibration_with_other_names_is_refused_naming_the_batch():
    wrong = nir.tensor(np.ones((16, 64), np.float32), names=("N", "G"))
    with pytest.raises(QuantizationError, match=r"calibration batch 1 does not match.*names \('N', 'G'\) instead of "
                                                r"\('N', 'F'\)"):
        nir.quantize(nir.trace(mlp, batch(0)), [(batch(1),), (wrong,)])


def test_calibration_with_another_shape_is_refused():
    with pytest.raises(QuantizationError, match=r"calibration batch 0 .*shape \(8, 64\) instead of \(16, 64\)"):
        nir.quantize(nir.trace(mlp, batch(0)), [(batch(1, n=8),)])


def test_calibration_with_too_many_inputs_is_refused():
    with pytest.raises(QuantizationError, match="takes 1 inputs .* got 2"):
        nir.quantize(nir.trace(mlp, batch(0)), [(batch(1), batch(2))])


def test_a_program_without_contractions_is_refused_naming_its_primitives():
    with pytest.raises(QuantizationError, match=r"no contraction or convolution .*its primitives: reduce_sum, relu"):
        nir.quantize(nir.trace(lambda x: x.relu().sum("F"), batch(0)), [(batch(1),)])


def test_exclude_naming_no_quantizable_op_is_refused():
    with pytest.raises(QuantizationError, match=r"exclude names dim 'fc9.out'.*\['N', 'hidden', 'out'\]"):
        nir.quantize(nir.trace(mlp, batch(0)), [(batch(1),)], exclude=("fc9.out",))


@pytest.mark.parametrize("kwargs, message", [({"weights": "int4"}, "weights='int4' is not supported"),
                                             ({"activations": "uint8"}, "activations='uint8' is not supported"),
                                             ({"observer": "histogram"}, "unknown observer 'histogram'")])
def test_unsupported_requests_are_refused(kwargs, message):
    with pytest.raises(QuantizationError, match=message):
        nir.quantize(nir.trace(mlp, batch(0)), [(batch(1),)], **kwargs)
