"""Artifacts you can trust: every compiled signature exported and dispatched on load; every file checked
against the manifest's SHA-256 before any library is loaded; an export that dies leaves nothing `load`
accepts; files follow the umask; plain arrays are treated alike by compiled and loaded functions."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nir
from nir.artifact import MANIFEST, ArtifactError, read_manifest

BACKENDS = nir.backends.available()
EXPORTERS = [b for b in BACKENDS if b in ("reference", "tvm", "xla")]


def normalize(x):
    return (x - x.mean(("H", "W"), keepdim=True)).relu()


def images(layout: str = "NCHW", seed: int = 0) -> nir.NamedTensor:
    sizes = {"N": 2, "C": 3, "H": 4, "W": 5}
    arr = np.random.default_rng(seed).standard_normal([sizes[d] for d in layout]).astype(np.float32)
    return nir.tensor(arr, names=tuple(layout))


@pytest.fixture(scope="module", params=EXPORTERS)
def exported(request, tmp_path_factory):
    """A function called with two layouts, exported: (compiled function, artifact path)."""
    f = nir.compile(normalize, backend=request.param)
    f(images("NCHW")), f(images("NHWC"))
    path = f.export(tmp_path_factory.mktemp(request.param) / "model")
    return f, path


def copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def a_file(path: pathlib.Path, suffix: str) -> pathlib.Path:
    return next(p for p in sorted(path.rglob("*")) if p.is_file() and p.name.endswith(suffix))


# ---- every signature, dispatched by signature

def test_every_compiled_signature_is_exported_and_dispatched(exported) -> None:
    f, path = exported
    g = nir.load(path)
    assert len(g.signatures) == 2
    for layout in ("NCHW", "NHWC"):
        got = g(images(layout, seed=1))
        assert got.names == tuple(layout)
        np.testing.assert_array_equal(got.numpy(), f(images(layout, seed=1)).numpy())


def test_export_of_one_signature(tmp_path) -> None:
    f = nir.compile(normalize, backend="reference")
    f(images("NCHW")), f(images("NHWC"))
    g = nir.load(f.export(tmp_path / "m", signature=[images("NHWC")]))
    assert [s[0].names for s in g.signatures] == [tuple("NHWC")]
    with pytest.raises(nir.SignatureError, match=r"names \('N', 'C', 'H', 'W'\) instead of \('N', 'H', 'W', 'C'\)"):
        g(images("NCHW"))


def test_export_of_a_signature_never_compiled_is_refused(tmp_path) -> None:
    f = nir.compile(normalize, backend="reference")
    f(images("NCHW"))
    with pytest.raises(nir.SignatureError, match=r"float32\{N: 2, H: 4, W: 5, C: 3\}\) is not compiled"):
        f.export(tmp_path / "m", signature=[nir.spec(N=2, H=4, W=5, C=3)])


def test_loaded_functions_keep_the_output_structure(tmp_path) -> None:
    f = nir.compile(lambda x: {"y": x * 2.0, "pair": (x.sum("C"), [x.relu()])}, backend="reference")
    want = f(images())
    got = nir.load(f.export(tmp_path / "m"))(images())
    assert set(got) == {"y", "pair"} and isinstance(got["pair"], tuple) and isinstance(got["pair"][1], list)
    np.testing.assert_array_equal(got["pair"][1][0].numpy(), want["pair"][1][0].numpy())


# ---- verification before loading

def test_a_missing_file_is_refused_by_name(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    victim = a_file(path / "sig1", ".nir")
    victim.unlink()
    with pytest.raises(ArtifactError, match=f"{victim} is missing"):
        nir.load(path)


def test_a_truncated_file_is_refused_by_name(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    victim = max((p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match=f"{victim} has .* bytes, the manifest says .*truncated"):
        nir.load(path)


def test_a_swapped_file_is_refused_by_name(exported, tmp_path) -> None:
    """The two signatures' files swapped: same sizes possible, contents differ."""
    path = copy(exported[1], tmp_path / "m")
    names = sorted(p.name for p in (path / "sig0").iterdir())
    a = path / "sig0" / names[-1]
    b = path / "sig1" / names[-1]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(ArtifactError, match=r"(does not match its SHA-256|bytes, the manifest says)"):
        nir.load(path)


def test_a_file_altered_in_place_is_refused(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    victim = a_file(path / "sig0", ".nir")
    data = bytearray(victim.read_bytes())
    data[-2] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{victim} does not match its SHA-256"):
        nir.load(path)


def test_an_extra_file_is_refused_by_name(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    (path / "sig0" / "evil.so").write_bytes(b"\x7fELF")
    with pytest.raises(ArtifactError, match=r"evil.so is not part of the artifact"):
        nir.load(path)


def test_a_manifest_naming_a_file_outside_the_artifact_is_refused(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["contents"]["../outside.so"] = {"size": 1, "sha256": "0" * 64}
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="lists a file outside the artifact"):
        nir.load(path)


def test_verification_happens_before_any_backend_loads(exported, tmp_path, monkeypatch) -> None:
    path = copy(exported[1], tmp_path / "m")
    (path / "extra").write_text("x")
    loaded = []
    backend = nir.backends.get(read_manifest(path)["signatures"][0]["backend"])
    monkeypatch.setattr(backend, "load", lambda *a: loaded.append(a))
    with pytest.raises(ArtifactError):
        nir.load(path)
    assert loaded == []


def test_a_file_replaced_after_verification_is_not_loaded(exported, tmp_path, monkeypatch) -> None:
    """Another process rewriting a file between the hash check and the load (time of check, time of use):
    load works from a private copy of the bytes it hashed, so the change is caught, never loaded."""
    import nir.artifact as artifact
    path = copy(exported[1], tmp_path / "m")
    victim = a_file(path / "sig0", ".nir")
    real_verify = artifact.verify_files

    def verify_then_tamper(p, manifest):
        real_verify(p, manifest)
        data = bytearray(victim.read_bytes())
        data[-2] ^= 1
        victim.write_bytes(bytes(data))

    monkeypatch.setattr(artifact, "verify_files", verify_then_tamper)
    with pytest.raises(ArtifactError, match=f"{victim} changed while it was being loaded"):
        nir.load(path)


def test_a_loaded_artifact_keeps_working_after_its_directory_is_removed(exported, tmp_path) -> None:
    f, src = exported
    path = copy(src, tmp_path / "m")
    g = nir.load(path)
    subprocess.run(["rm", "-rf", str(path)], check=True)
    x = images("NCHW", seed=3)
    np.testing.assert_allclose(np.asarray(g(x)), np.asarray(f(x)), rtol=1e-6, atol=1e-6)


# ---- atomic writes

def test_an_export_that_fails_midway_leaves_the_previous_artifact(tmp_path, monkeypatch) -> None:
    f = nir.compile(normalize, backend="reference")
    f(images())
    path = f.export(tmp_path / "m")
    f(images("NHWC"))
    exe = f._last.executable
    monkeypatch.setattr(type(exe), "save", lambda self, p: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        f.export(path)
    assert len(nir.load(path).signatures) == 1  # the old artifact, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no partial directory left


def test_a_killed_export_leaves_no_directory_load_accepts(tmp_path) -> None:
    """The process dies (no cleanup runs) while writing the files: the target does not exist, and the
    partial directory has no manifest."""
    script = textwrap.dedent(f"""
        import os, numpy as np, nir
        from nir.backends import reference
        f = nir.compile(lambda x: x * 2.0, backend="reference")
        f(nir.tensor(np.ones((2, 3), np.float32), names=("N", "C")))
        reference.ReferenceExecutable.save = lambda self, p: os._exit(3)
        f.export({str(tmp_path / "m")!r})
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 3
    assert not (tmp_path / "m").exists()
    for leftover in tmp_path.iterdir():
        with pytest.raises(ArtifactError, match="manifest.json is missing"):
            nir.load(leftover)


def test_export_refuses_to_replace_a_directory_that_is_not_an_artifact(tmp_path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    f = nir.compile(normalize, backend="reference")
    f(images())
    with pytest.raises(ArtifactError, match="exists and is not a nir artifact or an empty directory"):
        f.export(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_artifact_files_follow_the_umask(tmp_path) -> None:
    f = nir.compile(normalize, backend="reference")
    f(images())
    old = os.umask(0o022)
    try:
        path = f.export(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE((path / MANIFEST).stat().st_mode) == 0o644
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE(a_file(path, ".nir").stat().st_mode) == 0o644


# ---- plain arrays: one rule for compiled and loaded functions

@pytest.fixture
def declared(tmp_path):
    f = nir.compile(normalize, backend="reference", inputs=[nir.spec(N=2, C=3, H=4, W=5)])
    return f, nir.load(f.export(tmp_path / "m"))


def test_plain_arrays_take_the_declared_names_in_both(declared) -> None:
    arr = images().numpy()
    outs = [fn(arr) for fn in declared]
    assert outs[0].names == outs[1].names == ("N", "C", "H", "W")
    np.testing.assert_array_equal(outs[0].numpy(), outs[1].numpy())


def test_a_plain_array_of_the_wrong_shape_gets_the_same_error_from_both(declared) -> None:
    messages = []
    for fn in declared:
        with pytest.raises(nir.SignatureError) as info:
            fn(np.ones((2, 3, 4, 6), np.float32))
        messages.append(str(info.value))
    assert messages[0] == messages[1] and r"shape (2, 3, 4, 6) instead of (2, 3, 4, 5)" in messages[0]


def test_a_plain_array_matching_no_exported_signature_is_refused(exported) -> None:
    g = nir.load(exported[1])
    with pytest.raises(nir.SignatureError, match=r"plain arrays carry no names.*matches none"):
        g(np.ones((2, 3, 4, 6), np.float32))


def test_a_plain_array_is_dispatched_by_its_shape(exported) -> None:
    f, path = exported
    arr = images("NHWC").numpy()
    got = nir.load(path)(arr)
    assert got.names == tuple("NHWC")
    np.testing.assert_array_equal(got.numpy(), f(images("NHWC")).numpy())


def test_a_function_without_a_declared_signature_refuses_plain_arrays() -> None:
    f = nir.compile(normalize, backend="reference")
    f(images())
    with pytest.raises(TypeError, match=r"wrap it with nir.tensor\(data, names=...\).*accepted where the signature "
                                        "is declared"):
        f(images().numpy())


def test_a_manifest_with_a_broken_entry_is_refused(exported, tmp_path) -> None:
    path = copy(exported[1], tmp_path / "m")
    manifest = json.loads((path / MANIFEST).read_text())
    del manifest["signatures"][1]["inputs"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="signature 1 has no inputs"):
        nir.load(path)
