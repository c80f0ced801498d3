"""The bad-input catalogue: every kind of wrong or awkward input gets a right answer or a specific
exception with a message that names the problem and the fix — on every installed backend."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir.backends import BackendError

BACKENDS = nir.backends.available()
SPEC = nir.spec(N=4, C=3, H=5, W=6)


def normalize(x):
    return (x - x.mean(("H", "W"), keepdim=True)) * x.amax("C", keepdim=True).exp()


def data(shape=(4, 3, 5, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def expected(arr: np.ndarray) -> np.ndarray:
    return normalize(nir.tensor(np.ascontiguousarray(arr), names=SPEC.names)).numpy()


@pytest.fixture(params=BACKENDS)
def compiled(request):
    return nir.compile(normalize, backend=request.param, inputs=[SPEC])


def run(compiled, arr: np.ndarray) -> np.ndarray:
    return compiled(nir.tensor(arr, names=SPEC.names)).numpy()


# ---- signature mismatches: SignatureError naming what differs and the fix

def test_wrong_names(compiled) -> None:
    with pytest.raises(nir.SignatureError, match=r"names \('N', 'C', 'W', 'H'\) instead of .*rename"):
        compiled(nir.tensor(data((4, 3, 6, 5)), names=("N", "C", "W", "H")))


def test_wrong_shape(compiled) -> None:
    with pytest.raises(nir.SignatureError, match=r"shape \(2, 3, 5, 6\) instead of \(4, 3, 5, 6\)"):
        run(compiled, data((2, 3, 5, 6)))


def test_wrong_dtype(compiled) -> None:
    with pytest.raises(nir.SignatureError, match=r"dtype float64 instead of float32 \(use .to\('float32'\)\)"):
        run(compiled, data().astype(np.float64))


def test_wrong_number_of_inputs(compiled) -> None:
    with pytest.raises(nir.SignatureError, match="takes 1 inputs"):
        compiled(nir.tensor(data(), names=SPEC.names), nir.tensor(data(), names=SPEC.names))


# ---- awkward memory: right answers, never a crash

def test_non_contiguous_input(compiled) -> None:
    arr = np.asfortranarray(data())
    assert not arr.flags.c_contiguous
    np.testing.assert_allclose(run(compiled, arr), expected(arr), rtol=1e-4, atol=1e-4)


def test_strided_view_input(compiled) -> None:
    big = data((8, 3, 5, 12))
    arr = big[::2, :, :, ::2]
    np.testing.assert_allclose(run(compiled, arr), expected(arr), rtol=1e-4, atol=1e-4)


def test_misaligned_input(compiled) -> None:
    raw = np.zeros(data().size + 1, np.float32)
    arr = raw[1:].reshape(4, 3, 5, 6)  # 4 bytes past an aligned address
    arr[...] = data()
    assert arr.ctypes.data % 64 != 0
    np.testing.assert_allclose(run(compiled, arr), expected(arr), rtol=1e-4, atol=1e-4)


def test_read_only_input(compiled) -> None:
    arr = data()
    arr.setflags(write=False)
    np.testing.assert_allclose(run(compiled, arr), expected(arr), rtol=1e-4, atol=1e-4)


def test_torch_input(compiled) -> None:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(data()).permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # non-contiguous
    np.testing.assert_allclose(run(compiled, t), expected(t.numpy()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_input(backend) -> None:
    f = nir.compile(lambda x: (x * 2.0).sum("C"), backend=backend, inputs=[nir.spec(N=0, C=3)])
    out = f(nir.tensor(np.zeros((0, 3), np.float32), names=("N", "C")))
    assert out.shape == (0,) and out.names == ("N",)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_propagate_like_the_reference(backend) -> None:
    arr = data()
    arr[0, 0, 0, 0], arr[1, 1, 1, 1], arr[2, 2, 2, 2] = np.nan, np.inf, -np.inf
    f = nir.compile(lambda x: (x * 2.0 + 1.0).relu(), backend=backend, inputs=[SPEC])
    got = f(nir.tensor(arr, names=SPEC.names)).numpy()
    want = nir.compile(lambda x: (x * 2.0 + 1.0).relu(), backend="reference", inputs=[SPEC])(
        nir.tensor(arr, names=SPEC.names)).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-6)


# ---- targets and backends

def test_unknown_target() -> None:
    with pytest.raises(nir.TargetError, match="known kinds: llvm, cuda, tpu"):
        nir.compile(normalize, target="opencl")


def test_unknown_backend() -> None:
    with pytest.raises(BackendError, match="known backends: reference, tvm, xla"):
        nir.compile(normalize, backend="onnx")


@pytest.mark.parametrize("backend,target", [("reference", "cuda"), ("tvm", "tpu")])
def test_target_the_backend_cannot_serve(backend, target) -> None:
    if not nir.backends.installed(backend):
        pytest.skip(f"{backend} not installed")
    with pytest.raises(BackendError, match=f"backend '{backend}' cannot serve target '{target}'"):
        nir.compile(normalize, target=target, backend=backend)


def test_missing_optional_dependency_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(nir.backends.REGISTRY, "xla", ("nir.backends.xla", ("no_such_jax",)))
    with pytest.raises(BackendError, match=r'pip install "named-ir\[xla\]"'):
        nir.compile(normalize, backend="xla")


# ---- names and tracing

def test_python_control_flow_on_traced_values() -> None:
    def f(x):
        while x.sum() > 0:
            x = x - 1.0
        return x
    with pytest.raises(nir.TraceError, match="nir.where"):
        nir.compile(f, backend="reference", inputs=[SPEC])


@pytest.mark.parametrize("names,match", [(("N", "N"), "repeat"), (("N", "1x"), "invalid dimension name"),
                                         (("N", "_hidden"), "invalid dimension name"), (("N", 3), "invalid")])
def test_duplicate_or_invalid_names(names, match) -> None:
    with pytest.raises(nir.NamedShapeError, match=match):
        nir.zeros(2, 3, names=names)


def test_corrupt_artifact(tmp_path) -> None:
    from nir.artifact import ArtifactError
    (tmp_path / "manifest.json").write_text('{"format": "nir-artifact", "version": 99}')
    with pytest.raises(ArtifactError, match="format version 99, this nir reads 2"):
        nir.load(tmp_path)


def test_corrupt_tuning_database_is_not_fatal(tmp_path) -> None:
    from nir.tune.database import TuningDatabaseWarning
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "x.json").write_bytes(b"\x00\xff garbage")
    with pytest.warns(TuningDatabaseWarning, match="skipping"):
        f = nir.compile(normalize, backend="reference", tuning=tmp_path, inputs=[SPEC])
    assert not f.tuned


@pytest.mark.parametrize("backend", BACKENDS)
def test_very_large_signature_compiles_without_overflow(backend) -> None:
    """2^32 elements (16 GiB of float32, never allocated): sizes past int32 must not overflow while
    tracing and compiling; the program's types keep the exact sizes."""
    f = nir.compile(lambda x: x.sum("C"), backend=backend, inputs=[nir.spec(N=2**16, C=2**16)])
    assert f.program.outputs[0].type.shape == (2**16,)
    assert f.program.inputs[0].type.numel == 2**32


def test_very_large_input_of_the_wrong_size_is_refused_before_running() -> None:
    f = nir.compile(lambda x: x.sum("C"), backend="reference", inputs=[nir.spec(N=2**16, C=2**16)])
    with pytest.raises(nir.SignatureError, match=r"shape \(2, 3\) instead of \(65536, 65536\)"):
        f(nir.tensor(np.ones((2, 3), np.float32), names=("N", "C")))
