"""Trees of tensors (dicts, lists, tuples) as arguments and results: nir.tree, nir.trace, nir.compile."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import tree


def params():
    nir.manual_seed(0)
    return {"w": nir.randn(3, 4, names=("C", "D")), "b": nir.randn(4, names=("D",))}


def layer(p, x):
    return {"y": nir.contract(x, p["w"], over="C") + p["b"], "p": p}


def test_flatten_sorts_dict_keys_and_unflatten_rebuilds() -> None:
    leaves, t = tree.flatten({"z": 1, "a": [2, (3,)], "m": None})
    assert leaves == [2, 3, 1]
    assert tree.unflatten(t, [20, 30, 10]) == {"a": [20, (30,)], "m": None, "z": 10}


def test_map_applies_leaf_by_leaf_and_checks_structures() -> None:
    assert tree.map(lambda a, b: a + b, {"x": 1, "y": [2]}, {"y": [20], "x": 10}) == {"x": 11, "y": [22]}
    with pytest.raises(ValueError, match="tree 1 has structure"):
        tree.map(lambda a, b: a, {"x": 1}, {"y": 1})


def test_trace_takes_a_dict_of_specs() -> None:
    t = nir.trace(layer, {"w": nir.spec(C=3, D=4), "b": nir.spec(D=4)}, nir.spec(N=2, C=3))
    assert [v.type.user_names for v in t.program.inputs] == [("D",), ("C", "D"), ("N", "C")]  # b, w, x


@pytest.mark.parametrize("backend", [b for b in ("reference", "xla") if nir.backends.installed(b)])
def test_compiled_function_takes_and_returns_trees(backend: str) -> None:
    p, x = params(), nir.randn(2, 3, names=("N", "C"))
    out = nir.compile(layer, backend=backend)(p, x)
    want = layer(p, x)
    assert sorted(out) == ["p", "y"] and out["p"]["w"].names == ("C", "D")
    np.testing.assert_allclose(out["y"].numpy(), want["y"].numpy(), rtol=1e-5)


def test_each_argument_structure_compiles_once() -> None:
    f = nir.compile(lambda t: sum(v.sum() for v in t.values()), backend="reference")
    a, b = nir.randn(2, names=("N",)), nir.randn(3, names=("N",))
    f({"a": a}), f({"a": a}), f({"a": a, "b": b})
    assert len(f.signatures) == 2


def test_lower_and_inputs_take_trees() -> None:
    spec = ({"w": nir.spec(C=3, D=4), "b": nir.spec(D=4)}, nir.spec(N=2, C=3))
    f = nir.compile(layer, backend="reference", inputs=spec)
    assert "contract" in f.ir
    p, x = params(), nir.randn(2, 3, names=("N", "C"))
    assert f(p, x)["y"].names == ("N", "D")
