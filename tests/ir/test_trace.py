"""Tracing records programs, refuses Python control flow on traced values, unrolls static loops, and
reports name errors at the user's line."""

from __future__ import annotations

import traceback

import numpy as np
import pytest

import nir


def test_trace_records_one_equation_per_op() -> None:
    t = nir.trace(lambda x: x.sum("C"), nir.spec(N=2, C=3))
    assert [e.prim for e in t.program.eqns] == ["reduce_sum"]
    assert t.program.outputs[0].type.names == ("N",)


def test_spec_keyword_order_is_dim_order() -> None:
    s = nir.spec(N=2, C=3, dtype="float16")
    assert s.names == ("N", "C") and s.shape == (2, 3) and s.dtype == "float16"


def test_spec_unnamed_and_mixed() -> None:
    assert nir.spec(4, 5).names == (None, None)
    assert nir.spec(names=("N", None), shape=(2, 3)).names == ("N", None)


def test_if_on_traced_value_is_a_clear_error() -> None:
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    with pytest.raises(nir.TraceError, match=r"use nir.where\(cond, a, b\) instead of `if`"):
        nir.trace(f, nir.spec(N=3))


def test_float_of_traced_value_is_a_clear_error() -> None:
    with pytest.raises(nir.TraceError, match=r"float\(\) needs a concrete value"):
        nir.trace(lambda x: float(x.sum()), nir.spec(N=3))


def test_numpy_of_traced_value_is_a_clear_error() -> None:
    with pytest.raises(nir.TraceError, match=r"numpy\(\) needs a concrete value"):
        nir.trace(lambda x: x.numpy(), nir.spec(N=3))


def test_static_loops_unroll() -> None:
    def f(x):
        for _ in range(4):
            x = x * 2.0
        return x
    t = nir.trace(f, nir.spec(N=3))
    assert [e.prim for e in t.program.eqns].count("mul") == 4


def test_name_error_points_at_the_users_line() -> None:
    def f(x, s):
        return x + s  # the offending line
    with pytest.raises(nir.NamedShapeError) as info:
        nir.trace(f, nir.spec(N=2, C=3, H=4, W=5), nir.spec(C=3))
    frames = traceback.extract_tb(info.tb)
    assert any(fr.line and "the offending line" in fr.line for fr in frames)


def test_equations_remember_the_users_line() -> None:
    def f(x):
        return x.exp()
    t = nir.trace(f, nir.spec(N=2))
    assert t.program.eqns[0].where.startswith("test_trace.py:")


def test_outputs_keep_their_structure() -> None:
    t = nir.trace(lambda x: {"a": x.exp(), "b": (x.sum(), x)}, nir.spec(N=2))
    out = t.unflatten(["A", "B", "C"])
    assert out == {"a": "A", "b": ("B", "C")}


def test_captured_eager_tensor_becomes_a_constant() -> None:
    w = nir.tensor(np.arange(3, dtype=np.float32), names=("C",))
    t = nir.trace(lambda x: x * w.align_as(x), nir.spec(N=2, C=3))
    assert "constant" in t.program.prims()
    (y,) = nir.interpret(t.program, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(y, np.tile(np.arange(3, dtype=np.float32), (2, 1)))


def test_returning_a_non_tensor_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="must return NamedTensors"):
        nir.trace(lambda x: 3, nir.spec(N=2))


def test_factories_inside_a_trace_are_recorded() -> None:
    t = nir.trace(lambda x: x + nir.ones(3, names=("C",)).align_as(x) + nir.arange(3, name="C").to("float32"),
                  nir.spec(N=2, C=3))
    assert {"full", "iota"} <= t.program.prims()
