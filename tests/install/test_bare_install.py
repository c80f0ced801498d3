"""`pip install named-ir` with no extras (issue 19): in a fresh venv that has numpy alone, every command
and public entry point either works (degrading where an optional package is missing, with a note) or
says in one line which extra to install, never with a traceback.

The venv is made once per run; numpy and setuptools come from a wheel directory (``$NIR_WHEELHOUSE``,
default ``~/.cache/nir/wheelhouse``) filled from the package index the first time, so later runs install
offline in seconds. Without the index and without those wheels the test skips, unless
``NIR_REQUIRE_BARE_INSTALL=1`` (set by `.ci/run`), where it fails. Deselect it with ``-m "not bare_install"``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import nir

pytestmark = pytest.mark.bare_install

REPO = pathlib.Path(nir.__file__).resolve().parents[1]
OPTIONAL = ("torch", "rich", "matplotlib", "jax", "tvm", "scipy", "ml_dtypes")


def _wheelhouse() -> pathlib.Path:
    """A directory holding numpy (this environment's version) and setuptools wheels."""
    path = pathlib.Path(os.environ.get("NIR_WHEELHOUSE", pathlib.Path.home() / ".cache" / "nir" / "wheelhouse"))
    if list(path.glob(f"numpy-{np.__version__}-*.whl")) and list(path.glob("setuptools-*.whl")):
        return path
    path.mkdir(parents=True, exist_ok=True)
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(path),
                          f"numpy=={np.__version__}", "setuptools>=68"], capture_output=True, text=True)
    if got.returncode != 0:
        why = f"cannot fetch numpy and setuptools wheels into {path}: {got.stderr.strip()[-300:]}"
        if os.environ.get("NIR_REQUIRE_BARE_INSTALL"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The bin directory of a fresh venv with `pip install -e <repo>` (no extras) done in it."""
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip(f"nir is not a source checkout here ({REPO})")
    wheels = _wheelhouse()
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                              "--no-index", "--find-links", str(wheels), "-e", str(REPO)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return venv / "bin"


def run(bare: pathlib.Path, *argv: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    exe = str(bare / argv[0]) if argv[0] in ("nir", "python") else argv[0]
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stdout + p.stderr, p.stdout + p.stderr


def test_the_venv_has_numpy_and_no_optional_package(bare, tmp_path):
    p = run(bare, "python", "-c", "import importlib.util as u, numpy; "
            f"print([m for m in {OPTIONAL!r} if u.find_spec(m)])", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_help(bare, tmp_path):
    p = run(bare, "nir", "--help", cwd=tmp_path)
    assert p.returncode == 0 and "bench" in p.stdout and "tune" in p.stdout
    no_traceback(p)


def test_demo_runs_on_the_reference_backend(bare, tmp_path):
    p = run(bare, "nir", "demo", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "reference" in p.stdout
    no_traceback(p)


def test_backends_say_what_to_install(bare, tmp_path):
    p = run(bare, "nir", "backends", cwd=tmp_path)
    assert p.returncode == 0
    assert 'tvm        not installed (pip install "named-ir[tvm]")' in p.stdout
    assert 'xla        not installed (pip install "named-ir[xla]")' in p.stdout
    no_traceback(p)


def test_bench_prints_plain_text_and_notes_what_it_skipped(bare, tmp_path):
    p = run(bare, "nir", "bench", "--quick", "--plot", str(tmp_path / "bench.png"), "--json",
            str(tmp_path / "bench.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "x best peer" in p.stdout and "nir-reference" in p.stdout and "DIFFERS" not in p.stdout
    assert "note: peer torch skipped: torch not installed" in p.stdout
    assert 'note: --plot skipped: it needs matplotlib (pip install "named-ir[bench]")' in p.stdout
    assert (tmp_path / "bench.json").is_file() and not (tmp_path / "bench.png").exists()
    no_traceback(p)


def test_tune_says_which_backend_to_install_in_one_line(bare, tmp_path):
    p = run(bare, "nir", "tune", "softmax", "--db", str(tmp_path / "db"), cwd=tmp_path)
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("nir tune: no installed backend serves target 'llvm'")
    assert 'pip install "named-ir[tvm]"' in line and 'pip install "named-ir[xla]"' in line
    no_traceback(p)


def test_fuzz_says_which_backend_to_install_in_one_line(bare, tmp_path):
    p = run(bare, "nir", "fuzz", "--minutes", "0.01", cwd=tmp_path)
    assert p.returncode == 2
    (line,) = (p.stdout + p.stderr).strip().splitlines()
    assert line.startswith("nir fuzz: no compiling backend installed") and '"named-ir[tvm]"' in line
    no_traceback(p)


def test_from_torch_names_the_torch_extra(bare, tmp_path):
    p = run(bare, "python", "-c", "import nir\ntry:\n    nir.from_torch(None, ())\nexcept ImportError as e:\n"
            "    print(type(e).__name__, e)", cwd=tmp_path)
    assert p.stdout.strip() == ('MissingDependencyError nir.from_torch needs torch, which is not installed: '
                                'pip install "named-ir[torch]"'), p.stdout + p.stderr


def test_compile_for_a_missing_backend_names_its_extra(bare, tmp_path):
    p = run(bare, "python", "-c", "import nir\ntry:\n    nir.compile(lambda x: x, backend='xla')\n"
            "except Exception as e:\n    print(e)", cwd=tmp_path)
    assert 'not installed; install it with pip install "named-ir[xla]"' in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("script, extra", [("xla_vs_jax", "xla"), ("tvm_untuned", "tvm"), ("tuned", "torch")])
def test_bench_scripts_name_their_extra(bare, tmp_path, script, extra):
    p = run(bare, "python", "-m", f"nir.bench.{script}", cwd=tmp_path)
    assert p.returncode == 1
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"python -m nir.bench.{script} needs") and f'pip install "named-ir[{extra}]"' in line


def test_distributed_initialize_names_the_xla_extra(bare, tmp_path):
    p = run(bare, "python", "-c", "import nir\ntry:\n    nir.distributed.initialize()\nexcept ImportError as e:\n"
            "    print(type(e).__name__, e)", cwd=tmp_path)
    assert p.stdout.strip() == ('MissingDependencyError nir.distributed needs jax, which is not installed: '
                                'pip install "named-ir[xla]"'), p.stdout + p.stderr
