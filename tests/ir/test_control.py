"""scan and cond: eager semantics, tracing into sub-programs (closures included), the IR (verifier,
text form, fingerprint, interpreter) and their errors. Backends are tested in tests/backends."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nir
from nir.ir import Builder, Program
from nir.testing import random_inputs
from nir.types import TensorType

RNG = np.random.default_rng(0)


def t(*shape: int, names: tuple[str, ...], scale: float = 1.0) -> nir.NamedTensor:
    return nir.tensor((RNG.standard_normal(shape) * scale).astype(np.float32), names=names)


def rnn(x: nir.NamedTensor, h0: nir.NamedTensor, w: nir.NamedTensor, u: nir.NamedTensor):
    """The seed RNN, h = tanh(x_t W + h U), as a scan; w and u are captured by the step."""
    def step(h, x_t):
        h = (x_t @ w + h.rename(H="G") @ u).tanh()
        return h, h
    return nir.scan(step, h0, x, over="T")


def rnn_inputs(steps: int = 5):
    return (t(steps, 2, 3, names=("T", "N", "I")), t(2, 4, names=("N", "H")), t(3, 4, names=("I", "H")),
            t(4, 4, names=("G", "H"), scale=0.3))


def unrolled(x, h0, w, u):
    h, hs = h0.numpy(), []
    for i in range(x.shape[0]):
        h = np.tanh(x.numpy()[i] @ w.numpy() + h @ u.numpy())
        hs.append(h)
    return h, np.stack(hs)


# ---------------------------------------------------------------------------------------------
# eager
# ---------------------------------------------------------------------------------------------

def test_eager_scan_is_the_python_loop() -> None:
    args = rnn_inputs()
    h, hs = rnn(*args)
    want_h, want_hs = unrolled(*args)
    np.testing.assert_allclose(h.numpy(), want_h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hs.numpy(), want_hs, rtol=1e-6, atol=1e-6)


def test_ys_stack_along_the_scanned_dim_first() -> None:
    x = t(2, 5, 3, names=("N", "T", "I"))
    _, ys = nir.scan(lambda c, x_t: (c, x_t * 2), nir.zeros(1, names=("K",)), x, over="T")
    assert ys.names == ("T", "N", "I")
    np.testing.assert_allclose(ys.numpy(), np.moveaxis(x.numpy(), 1, 0) * 2)


def test_reverse_scans_from_the_last_index_and_keeps_ys_in_index_order() -> None:
    x = nir.tensor(np.arange(4, dtype=np.float32), names=("T",))
    total, partial = nir.scan(lambda c, x_t: (c + x_t, c + x_t), nir.tensor(0.0), x, over="T", reverse=True)
    assert total.item() == 6.0
    np.testing.assert_allclose(partial.numpy(), [6.0, 6.0, 5.0, 3.0])  # suffix sums


def test_trees_of_carries_xs_and_ys_and_none() -> None:
    xs = {"a": t(3, 2, names=("T", "N")), "b": t(2, 3, names=("M", "T"))}

    def step(carry, x):
        s, n = carry
        return (s + x["a"].sum(), n + 1), {"sq": x["b"] * x["b"], "none": None}
    (s, n), ys = nir.scan(step, (nir.tensor(0.0), nir.tensor(0)), xs, over="T")
    assert n.item() == 3 and n.dtype == "int64"
    np.testing.assert_allclose(s.item(), xs["a"].numpy().sum(), rtol=1e-6)
    assert ys["none"] is None and ys["sq"].names == ("T", "M")
    _, none = nir.scan(lambda c, x: (c, None), nir.tensor(1.0), xs["a"], over="T")
    assert none is None


def test_a_permuted_carry_is_put_back_in_order() -> None:
    x = t(3, 2, 4, names=("T", "N", "H"))
    h, _ = nir.scan(lambda h, x_t: ((h + x_t).align_to("H", "N"), None), nir.zeros(2, 4, names=("N", "H")), x,
                    over="T")
    assert h.names == ("N", "H")
    np.testing.assert_allclose(h.numpy(), x.numpy().sum(0), rtol=1e-6)


def test_stacked_layers_scan_over_a_layer_dim_of_weights() -> None:
    """Haliax's idiom: one weight tensor per role with a `layer` dim, scanned over."""
    w = t(3, 4, 4, names=("layer", "D", "E"), scale=0.5)
    b = t(3, 4, names=("layer", "E"))
    x = t(2, 4, names=("N", "D"))

    def layer(h, p):
        return (h @ p["w"] + p["b"]).relu().rename(E="D"), None
    out, _ = nir.scan(layer, x, {"w": w, "b": b}, over="layer")
    h = x.numpy()
    for i in range(3):
        h = np.maximum(h @ w.numpy()[i] + b.numpy()[i], 0)
    np.testing.assert_allclose(out.numpy(), h, rtol=1e-5, atol=1e-6)


def test_eager_cond_runs_the_chosen_branch_only() -> None:
    ran = []
    x = t(3, names=("N",))

    def true_fn(a):
        ran.append("true")
        return a * 2

    def false_fn(a):
        ran.append("false")
        return -a
    y = nir.cond(nir.tensor(False), true_fn, false_fn, x)
    assert ran == ["false"]
    np.testing.assert_allclose(y.numpy(), -x.numpy())


# ---------------------------------------------------------------------------------------------
# traced: the IR
# ---------------------------------------------------------------------------------------------

def traced_rnn(steps: int = 5) -> Program:
    return nir.trace(rnn, *rnn_inputs(steps)).program


def test_traced_scan_is_one_equation_with_a_body_sub_program() -> None:
    p = traced_rnn()
    assert [e.prim for e in p.eqns] == ["scan"]
    (e,) = p.eqns
    assert [name for name, _ in e.subprograms] == ["body"]
    assert len(e.outputs) == 2 and e.kwargs["num_carry"] == 1
    with pytest.raises(AttributeError, match="scan has 2 outputs; use .outputs"):
        _ = e.out


def test_captured_values_are_explicit_inputs_of_the_body() -> None:
    p = traced_rnn()
    (e,) = p.eqns
    assert e.kwargs["num_consts"] == 2  # w and u, captured by the step function
    assert [v.type.names for v in e.inputs[:2]] == [("I", "H"), ("G", "H")]
    body = e.kwargs["body"]
    assert [v.type for v in body.inputs[:2]] == [v.type for v in e.inputs[:2]]


def test_traced_scan_interprets_like_eager() -> None:
    args = rnn_inputs()
    got = nir.interpret(traced_rnn(), *[a.numpy() for a in args])
    want = unrolled(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_scan_and_cond_round_trip_through_text() -> None:
    def f(x, b):
        def step(c, x_t):
            y = nir.cond(x_t.sum() > 0, lambda a: a * b, lambda a: a - 1.0, x_t)
            return c + y, y.sum()
        return nir.scan(step, nir.zeros(2, names=("N",)), x, over="T", reverse=True)
    p = nir.trace(f, nir.spec(T=3, N=2), nir.spec(N=2)).program
    assert nir.parse(p.text) == p
    assert "body: program(" in p.text and "true_branch: program(" in p.text


def test_fingerprint_covers_the_body() -> None:
    def make(k: float):
        return nir.trace(lambda x: nir.scan(lambda c, x_t: (c + x_t * k, None), nir.zeros(2, names=("N",)), x,
                                            over="T")[0], nir.spec(T=3, N=2)).program
    assert make(2.0).fingerprint() == make(2.0).fingerprint()
    assert make(2.0).fingerprint() != make(3.0).fingerprint()


def test_nested_scans_capture_through_every_level() -> None:
    def f(x, w):
        def outer(c, x_t):
            inner, _ = nir.scan(lambda d, r: (d + r * w.sum(), None), c, x_t, over="N")
            return inner, None
        return nir.scan(outer, nir.tensor(0.0), x, over="T")[0]
    p = nir.trace(f, nir.spec(T=3, N=4), nir.spec(K=2)).program
    nir.verify(p)
    x, w = random_inputs(p, seed=2)
    np.testing.assert_allclose(nir.interpret(p, x, w)[0], x.sum() * w.sum(), rtol=1e-5)
    (inner,) = [e for e in p.eqns[-1].kwargs["body"].eqns if e.prim == "scan"]
    assert inner.kwargs["num_consts"] == 1


def test_eager_tensors_in_a_step_become_constants_of_the_outer_program() -> None:
    w = t(2, names=("N",))
    p = nir.trace(lambda x: nir.scan(lambda c, x_t: (c + x_t * w, None), nir.zeros(2, names=("N",)), x,
                                     over="T")[0], nir.spec(T=3, N=2)).program
    assert "constant" in {e.prim for e in p.eqns}
    assert "constant" not in {e.prim for e in p.eqns[-1].kwargs["body"].eqns}


def test_traced_cond_has_both_branches_and_their_captures() -> None:
    def f(p, x, a, b):
        return nir.cond(p.sum() > 0, lambda v: v * a, lambda v: v + b, x)
    prog = nir.trace(f, nir.spec(K=2), nir.spec(N=3), nir.spec(N=3), nir.spec(N=3)).program
    e = prog.eqns[-1]
    assert e.prim == "cond" and len(e.inputs) == 4  # pred, x, and the captured a and b
    for flag in (1.0, -1.0):
        pv, x, a, b = np.array([flag, 0.5], np.float32), *random_inputs(prog, seed=3)[1:]
        want = x * a if flag > 0 else x + b
        np.testing.assert_allclose(nir.interpret(prog, pv, x, a, b)[0], want, rtol=1e-6)


def test_map_subprograms_reaches_nested_bodies() -> None:
    p = nir.trace(lambda x: nir.scan(lambda c, x_t: (nir.cond(x_t.sum() > 0, lambda a: a, lambda a: -a, c), None),
                                     nir.zeros(2, names=("N",)), x, over="T")[0], nir.spec(T=3, N=2)).program
    seen = []
    p.map_subprograms(lambda sub: seen.append(len(sub.eqns)) or sub)
    assert len(seen) == 3  # the two branches, then the body
    assert {"scan", "cond", "neg"} <= p.prims()


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def test_carry_changing_type_shows_both_types() -> None:
    x = t(3, 2, names=("T", "N"))
    with pytest.raises(nir.NamedShapeError, match=r"scan: the carry must keep its named type float32\{N: 2\}, "
                                                  r"but it is float32\{N: 1\}"):
        nir.scan(lambda c, x_t: ((c + x_t).narrow("N", 0, 1), None), nir.zeros(2, names=("N",)), x, over="T")


def test_carry_changing_dtype_is_an_error_when_traced() -> None:
    def f(x):
        return nir.scan(lambda c, x_t: (c.to("int32"), None), nir.zeros(2, names=("N",)), x, over="T")[0]
    with pytest.raises(nir.NamedShapeError, match=r"carry must keep its named type float32\{N: 2\}, but it is "
                                                  r"int32\{N: 2\}"):
        nir.trace(f, nir.spec(T=3, N=2))


def test_scanned_dim_missing_names_the_dim_and_the_tensors_dims() -> None:
    with pytest.raises(nir.NamedShapeError, match=r"dim 'T' is not in the xs tensor float32\{N: 2, I: 3\} "
                                                  r"\(its dims: \['N', 'I'\]\)"):
        nir.scan(lambda c, x_t: (c, None), nir.tensor(0.0), t(2, 3, names=("N", "I")), over="T")


def test_ys_that_already_have_the_scanned_dim_are_refused() -> None:
    x = t(3, 2, names=("T", "N"))
    with pytest.raises(nir.NamedShapeError, match=r"already has the dim 'T' that scan stacks it along"):
        nir.scan(lambda c, x_t: (c, x_t.rename(N="T")), nir.tensor(0.0), x, over="T")


def test_carry_structure_change_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"the carry must keep its structure"):
        nir.scan(lambda c, x_t: ((c, c), None), nir.tensor(0.0), t(3, names=("T",)), over="T")


def test_cond_branches_with_different_types_show_both() -> None:
    def f(x):
        return nir.cond(x.sum() > 0, lambda a: a, lambda a: a.sum(), x)
    with pytest.raises(nir.NamedShapeError, match=r"cond: the false branch's output must keep its named type "
                                                  r"float32\{N: 3\}, but it is float32\{\}"):
        nir.trace(f, nir.spec(N=3))


def test_cond_needs_a_0d_bool_predicate() -> None:
    with pytest.raises(nir.NamedShapeError, match=r"predicate must be a 0-d bool NamedTensor, got "
                                                  r"bool\{N: 3\}"):
        nir.cond(t(3, names=("N",)) > 0, lambda: 1.0, lambda: 2.0)


def test_verifier_refuses_a_body_that_uses_an_outer_value() -> None:
    p = traced_rnn()
    (e,) = p.eqns
    body = e.kwargs["body"]
    leaky = Program(body.inputs[1:], body.eqns, body.outputs)  # drops an input the body uses
    bad = dataclasses.replace(e, params=tuple((k, leaky if k == "body" else v) for k, v in e.params))
    with pytest.raises(nir.VerifyError, match=r"equation 0 \(scan\), in its body: equation \d+ \(rename\): uses "
                                              r"%\d+ before it is defined"):
        nir.verify(Program(p.inputs, (bad,), p.outputs))


def test_verifier_checks_the_carry_type_of_a_hand_built_scan() -> None:
    b = Builder()
    c, x = b.input(TensorType.of({"N": 2})), b.input(TensorType.of({"T": 3, "N": 2}))
    body = Builder()
    bc, bx = body.input(TensorType.of({"N": 2})), body.input(TensorType.of({"N": 2}))
    total = body.add("reduce_sum", [body.add("add", [bc, bx])], dims=("N",))
    with pytest.raises(nir.NamedShapeError, match=r"goes in as \(float32\{N: 2\}\) and comes out of the step as "
                                                  r"\(float32\{\}\)"):
        b.add_multi("scan", [c, x], body=body.build([total]), over="T", reverse=False, num_consts=0, num_carry=1)


def test_a_value_leaking_out_of_a_step_is_a_clear_error() -> None:
    leaked = []

    def f(x):
        def step(c, x_t):
            leaked.append(x_t * 2)
            return c, None
        nir.scan(step, nir.tensor(0.0), x, over="T")
        return leaked[0] + 1
    with pytest.raises(nir.TraceError, match="a value made inside a scan step or a cond branch lives there"):
        nir.trace(f, nir.spec(T=3, N=2))
