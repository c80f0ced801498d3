"""The text form round-trips; the verifier catches malformed programs; fingerprints ignore layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nir
from nir.ir import Builder, Eqn, Program, Value
from nir.testing import op_samples
from nir.types import TensorType


@pytest.mark.parametrize("case", op_samples("float32"), ids=lambda c: c.id)
def test_every_primitive_round_trips_through_text(case) -> None:
    assert nir.parse(case.program.text) == case.program


def test_traced_program_round_trips_with_layouts_and_special_floats() -> None:
    def f(x):
        return x.masked_fill(x > 0, float("-inf")).softmax("C").sum(("H", "W"))
    p = nir.trace(f, nir.spec(N=2, C=3, H=4, W=5)).program
    p = p.with_layouts({p.inputs[0].id: ("N", "H", "W", "C")})
    q = nir.parse(p.text)
    assert q == p
    assert q.inputs[0].layout == ("N", "H", "W", "C")


def test_parse_error_names_the_line() -> None:
    text = "program(%0: float32{N:2}) {\n  %1: float32{N:2} = exp(%7)\n  return (%1)\n}"
    with pytest.raises(nir.ParseError, match=r"line 2: unknown value '%7'"):
        nir.parse(text)


def test_parse_rejects_non_program() -> None:
    with pytest.raises(nir.ParseError, match="starts with 'program"):
        nir.parse("hello")


def test_fingerprint_ignores_value_ids_and_layouts() -> None:
    p = nir.trace(lambda x: x.exp().sum("C"), nir.spec(N=2, C=3)).program
    q = nir.trace(lambda x: x.exp().sum("C"), nir.spec(N=2, C=3)).program  # fresh generated ids
    assert p.fingerprint() == q.fingerprint()
    assert p.with_layouts({p.eqns[0].outputs[0].id: ("C", "N")}).fingerprint() == p.fingerprint()


def test_fingerprint_changes_with_the_computation() -> None:
    p = nir.trace(lambda x: x.exp().sum("C"), nir.spec(N=2, C=3)).program
    q = nir.trace(lambda x: x.exp().sum("N"), nir.spec(N=2, C=3)).program
    assert p.fingerprint() != q.fingerprint()


def test_fingerprint_ignores_generated_names() -> None:
    p = nir.trace(lambda x: x.exp(), nir.spec(3, 4)).program
    q = nir.trace(lambda x: x.exp(), nir.spec(3, 4)).program
    assert p.inputs[0].type.names != q.inputs[0].type.names
    assert p.fingerprint() == q.fingerprint()


def _program() -> Program:
    b = Builder()
    x = b.input(TensorType.of({"N": 2, "C": 3}))
    return b.build([b.add("reduce_sum", [x], dims=("C",))])


def test_verifier_accepts_built_programs() -> None:
    assert nir.verify(_program()) == _program()


def test_verifier_catches_wrong_output_type() -> None:
    p = _program()
    bad_out = Value(p.eqns[0].outputs[0].id, TensorType.of({"N": 3}))
    bad = Program(p.inputs, (dataclasses.replace(p.eqns[0], outputs=(bad_out,)),), (bad_out,))
    with pytest.raises(nir.VerifyError, match=r"equation 0 \(reduce_sum\): output type float32\{N:3\} but the rule "
                                              r"gives float32\{N:2\}"):
        nir.verify(bad)


def test_verifier_catches_use_before_definition() -> None:
    p = _program()
    ghost = Value(99, TensorType.of({"N": 2, "C": 3}))
    bad = Program(p.inputs, (dataclasses.replace(p.eqns[0], inputs=(ghost,)),), p.outputs)
    with pytest.raises(nir.VerifyError, match="uses %99 before it is defined"):
        nir.verify(bad)


def test_verifier_catches_double_definition() -> None:
    p = _program()
    e = p.eqns[0]
    dup = dataclasses.replace(e, outputs=(Value(p.inputs[0].id, e.out.type),))
    with pytest.raises(nir.VerifyError, match="defined twice"):
        nir.verify(Program(p.inputs, (dup,), p.outputs))


def test_verifier_catches_broken_rule() -> None:
    p = _program()
    e = dataclasses.replace(p.eqns[0], params=(("dims", ("X",)),))
    with pytest.raises(nir.VerifyError, match=r"dims \['X'\] are not in the input"):
        nir.verify(Program(p.inputs, (e,), p.outputs))


def test_verifier_catches_unknown_primitive() -> None:
    p = _program()
    e = dataclasses.replace(p.eqns[0], prim="frobnicate")
    with pytest.raises(nir.VerifyError, match="unknown primitive 'frobnicate'"):
        nir.verify(Program(p.inputs, (e,), p.outputs))


def test_layout_must_be_a_permutation() -> None:
    p = _program()
    with pytest.raises(nir.NamedShapeError, match="not a permutation"):
        p.with_layouts({p.inputs[0].id: ("N", "X")})


def test_builder_rejects_rule_violations_with_named_shapes() -> None:
    b = Builder()
    x = b.input(TensorType.of({"N": 2, "C": 3}))
    y = b.input(TensorType.of({"N": 3}))
    with pytest.raises(nir.NamedShapeError, match=r"add: dim 'N' has size 2 in one operand and 3 in another "
                                                  r"\(named shapes \{N: 2, C: 3\} and \{N: 3\}\)"):
        b.add("add", [x, y])


def test_duplicate_dim_names_are_refused() -> None:
    with pytest.raises(nir.NamedShapeError, match="two dims with the same name"):
        TensorType.of([("N", 2), ("N", 3)])


def test_describe_lists_every_primitive() -> None:
    text = nir.ops.describe()
    for name in nir.ops.PRIMITIVES:
        assert name in text
