"""nir.compile: tracing per signature, caching, call-time checks, backend and target errors, and the
reference backend's export/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir.backends import BackendError


def images(n: int = 2, names=("N", "C", "H", "W")) -> nir.NamedTensor:
    rng = np.random.default_rng(n)
    return nir.tensor(rng.standard_normal((n, 3, 4, 5)).astype(np.float32), names=names)


def normalize(x):
    return (x - x.mean(("H", "W"), keepdim=True)) / x.std(("H", "W"), keepdim=True)


def counting(fn):
    calls = []

    def wrapped(*args):
        calls.append(1)
        return fn(*args)
    return wrapped, calls


def test_compiled_equals_eager() -> None:
    f = nir.compile(normalize, backend="reference")
    x = images()
    np.testing.assert_allclose(f(x).numpy(), normalize(x).numpy(), rtol=1e-6, atol=1e-6)
    assert f(x).names == ("N", "C", "H", "W")


def test_traces_once_per_signature() -> None:
    fn, calls = counting(normalize)
    f = nir.compile(fn, backend="reference")
    f(images(2))
    f(images(2))
    assert len(calls) == 1
    f(images(3))
    assert len(calls) == 2
    assert len(f.signatures) == 2


def test_names_are_part_of_the_signature() -> None:
    fn, calls = counting(lambda x: x.sum("C"))
    f = nir.compile(fn, backend="reference")
    f(images())
    out = f(images().align_to("N", "H", "W", "C"))
    assert len(calls) == 2 and out.names == ("N", "H", "W")


def test_decorator_forms() -> None:
    @nir.compile
    def a(x):
        return x.exp()

    @nir.compile(backend="reference")
    def b(x):
        return x.exp()
    assert isinstance(a, nir.Compiled) and b(images()).names == ("N", "C", "H", "W")
    assert b.__name__ == "b"


def test_fixed_signature_checks_every_call() -> None:
    f = nir.compile(normalize, backend="reference", inputs=[nir.spec(N=2, C=3, H=4, W=5)])
    with pytest.raises(nir.SignatureError, match=r"names \('N', 'H', 'W', 'C'\) instead of \('N', 'C', 'H', 'W'\)"):
        f(images().align_to("N", "H", "W", "C"))
    with pytest.raises(nir.SignatureError, match=r"shape \(3, 3, 4, 5\) instead of \(2, 3, 4, 5\)"):
        f(images(3))
    with pytest.raises(nir.SignatureError, match="dtype float16 instead of float32"):
        f(images().to("float16"))


def test_fixed_signature_accepts_raw_arrays() -> None:
    f = nir.compile(lambda x: x.sum("C"), backend="reference", inputs=[nir.spec(N=2, C=3)])
    out = f(np.ones((2, 3), np.float32))
    assert out.names == ("N",) and out.numpy().tolist() == [3.0, 3.0]


def test_unnamed_raw_array_without_signature_is_refused() -> None:
    f = nir.compile(lambda x: x, backend="reference")
    with pytest.raises(TypeError, match=r"wrap it with nir.tensor\(data, names=...\)"):
        f(np.ones(3))


def test_ir_before_any_call_says_what_to_do() -> None:
    f = nir.compile(normalize, backend="reference")
    with pytest.raises(RuntimeError, match=r"call the function once, or .lower\(nir.spec"):
        f.ir


def test_ir_and_backend_ir() -> None:
    f = nir.compile(lambda x: x.sum("C"), backend="reference").lower(nir.spec(N=2, C=3))
    assert "reduce_sum[dims=('C',)]" in f.ir
    assert f.backend_ir() == f.ir


def test_multiple_outputs_keep_structure() -> None:
    f = nir.compile(lambda x: (x.sum("C"), {"m": x.max("C").values}), backend="reference")
    s, d = f(images())
    assert s.names == ("N", "H", "W") and d["m"].names == ("N", "H", "W")


def test_unknown_target() -> None:
    with pytest.raises(nir.TargetError, match="unknown target 'vulkan'; known kinds: llvm, cuda, tpu"):
        nir.compile(normalize, target="vulkan")


def test_malformed_target_option() -> None:
    with pytest.raises(nir.TargetError, match="should look like -key=value"):
        nir.compile(normalize, target="llvm mcpu")


def test_target_options_parse() -> None:
    t = nir.parse_target("llvm -mcpu=skylake-avx512 -num-cores=2")
    assert t.kind == "llvm" and t.get("mcpu") == "skylake-avx512" and t.get("num-cores") == "2"
    assert str(nir.parse_target("cuda -arch=sm_90")) == "cuda -arch=sm_90"
    with pytest.raises(nir.TargetError, match="sm_80"):
        nir.parse_target("cuda -arch=hopper")


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(BackendError, match="unknown backend 'mlir'; known backends: reference, tvm, xla"):
        nir.compile(normalize, backend="mlir")


def test_backend_that_cannot_serve_target() -> None:
    with pytest.raises(BackendError, match="backend 'reference' cannot serve target 'tpu'"):
        nir.compile(normalize, target="tpu", backend="reference")


def test_missing_backend_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(nir.backends.REGISTRY, "tvm", ("nir.backends.tvm", ("a_package_that_is_not_installed",)))
    with pytest.raises(BackendError, match=r'not installed; install it with pip install "named-ir\[tvm\]"'):
        nir.compile(normalize, backend="tvm")


def test_auto_picks_an_installed_backend() -> None:
    f = nir.compile(normalize, target="llvm")
    assert f.backend in nir.backends.available()


def test_reference_export_and_load(tmp_path) -> None:
    f = nir.compile(normalize, backend="reference").lower(nir.spec(N=2, C=3, H=4, W=5))
    f.export(tmp_path / "art")
    g = nir.load(tmp_path / "art")
    x = images()
    np.testing.assert_allclose(g(x).numpy(), f(x).numpy())
    assert g(x).names == ("N", "C", "H", "W")
    with pytest.raises(nir.SignatureError, match="shape"):
        g(images(3))


def test_load_of_a_directory_without_manifest(tmp_path) -> None:
    from nir.artifact import ArtifactError
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        nir.load(tmp_path)


def test_load_of_a_corrupt_manifest(tmp_path) -> None:
    from nir.artifact import ArtifactError
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        nir.load(tmp_path)


def test_compile_a_traced_program_directly() -> None:
    t = nir.trace(normalize, nir.spec(N=2, C=3, H=4, W=5))
    f = nir.compile(t, backend="reference")
    x = images()
    np.testing.assert_allclose(f(x).numpy(), normalize(x).numpy(), rtol=1e-6, atol=1e-6)


def test_dlpack_inputs_from_torch() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    x = nir.tensor(t, names=("N", "C"))
    assert x.sum("C").numpy().tolist() == [3.0, 12.0]


def test_demo_runs_and_reports_success(capsys) -> None:
    from nir.demo import main
    assert main(["--backends", "reference"]) == 0
    out = capsys.readouterr().out
    assert "accidental broadcast" in out and "ok" in out
