"""`nir.extras`: optional packages are imported through one function that names the extra to install."""

from __future__ import annotations

import sys

import pytest

from nir.extras import MissingDependencyError, exit_unless_installed, install_hint, installed, require


def test_require_returns_the_module():
    assert require("json", "a feature").dumps([1]) == "[1]"


def test_missing_package_is_one_line_naming_the_extra():
    with pytest.raises(MissingDependencyError) as info:
        require("rich_no_such_module_xyz", "nir bench")
    assert str(info.value) == ("nir bench needs rich_no_such_module_xyz, which is not installed: "
                               "pip install rich_no_such_module_xyz")
    assert isinstance(info.value, ImportError)


def test_hints_name_the_extras_of_pyproject():
    assert install_hint("torch") == 'pip install "named-ir[torch]"'
    assert install_hint("matplotlib.pyplot") == 'pip install "named-ir[bench]"'
    assert install_hint("jax") == 'pip install "named-ir[xla]"'


def test_an_import_error_inside_an_installed_package_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "nir_broken_pkg_xyz.py").write_text("import nir_missing_inner_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("nir_broken_pkg_xyz", "a feature")
    assert not isinstance(info.value, MissingDependencyError) and info.value.name == "nir_missing_inner_xyz"
    sys.modules.pop("nir_broken_pkg_xyz", None)


def test_installed_does_not_import():
    assert installed("json") and not installed("nir_no_such_module_xyz")


def test_script_exits_with_one_line():
    with pytest.raises(SystemExit) as info:
        exit_unless_installed("python -m tool", "json", "nir_no_such_module_xyz")
    assert str(info.value.code) == ("python -m tool needs nir_no_such_module_xyz, which is not installed: "
                                    "pip install nir_no_such_module_xyz")
