"""nir.grad / nir.value_and_grad / nir.vjp: trees, names and dim order, argnums, aux, errors, and the
same gradients eagerly, under nir.trace and under nir.compile on every backend; grad of grad."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends

BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(not backends.installed(b), reason=f"{b} is not installed"))
            for b in ("reference", "tvm", "xla")]


def data(seed: int = 0):
    nir.manual_seed(seed)
    params = {"w1": nir.randn(6, 5, names=("pixel", "hidden")), "b1": nir.randn(5, names=("hidden",)),
              "w2": nir.randn(5, 3, names=("hidden", "class"))}
    x = nir.randn(4, 6, names=("N", "pixel"))
    return params, x


def loss(p, x):
    h = (nir.contract(x, p["w1"], over="pixel") + p["b1"]).tanh()
    return nir.contract(h, p["w2"], over="hidden").log_softmax("class").sum() * -0.25


def test_gradient_has_the_names_and_dim_order_of_its_parameter() -> None:
    params, x = data()
    params["w1"] = params["w1"].align_to("hidden", "pixel")
    g = nir.grad(loss)(params, x)
    assert g["w1"].names == ("hidden", "pixel") and g["w1"].shape == (5, 6)
    assert g["w2"].names == ("hidden", "class")


def test_gradient_of_a_dict_is_a_dict_with_the_same_keys() -> None:
    params, x = data()
    g = nir.grad(loss)(params, x)
    assert isinstance(g, dict) and sorted(g) == sorted(params)


def test_gradient_matches_central_differences() -> None:
    params, x = data()
    params = nir.tree.map(lambda p: p.to("float64"), params)
    x = x.to("float64")
    g = nir.grad(loss)(params, x)
    w = params["b1"].numpy()
    for i in range(w.shape[0]):
        d = np.zeros_like(w)
        d[i] = 1e-6
        up = loss({**params, "b1": nir.tensor(w + d, names=("hidden",))}, x).item()
        down = loss({**params, "b1": nir.tensor(w - d, names=("hidden",))}, x).item()
        assert g["b1"].numpy()[i] == pytest.approx((up - down) / 2e-6, rel=1e-6)


def test_argnums_tuple_gives_a_tuple_of_gradients() -> None:
    params, x = data()
    gp, gx = nir.grad(loss, argnums=(0, 1))(params, x)
    assert gx.names == x.names and sorted(gp) == sorted(params)


def test_value_and_grad_returns_the_loss() -> None:
    params, x = data()
    value, g = nir.value_and_grad(loss)(params, x)
    assert value.item() == pytest.approx(loss(params, x).item(), rel=1e-6)
    assert g["b1"].names == ("hidden",)


def test_has_aux_passes_the_auxiliary_outputs_through() -> None:
    params, x = data()

    def with_logits(p, x):
        logits = nir.contract(x, p["w1"], over="pixel")
        return logits.sum(), {"logits": logits}
    (value, aux), g = nir.value_and_grad(with_logits, has_aux=True)(params, x)
    assert aux["logits"].names == ("N", "hidden") and value.ndim == 0
    assert float(np.abs(g["w2"].numpy()).max()) == 0.0


def test_unused_parameter_gets_a_zero_gradient() -> None:
    params, x = data()
    g = nir.grad(lambda p, x: (x * 2.0).sum() + p["b1"].sum())(params, x)
    assert g["w1"].shape == (6, 5) and not g["w1"].numpy().any()


def test_vjp_returns_one_cotangent_per_primal_and_aligns_the_cotangent_by_name() -> None:
    params, x = data()
    out, back = nir.vjp(lambda w, x: nir.contract(x, w, over="pixel"), params["w1"], x)
    ct = nir.randn(5, 4, names=("hidden", "N"))
    dw, dx = back(ct)
    np.testing.assert_allclose(dx.numpy(), ct.numpy().T @ params["w1"].numpy().T, rtol=1e-5)
    assert dw.names == ("pixel", "hidden") and out.names == ("N", "hidden")


def test_vjp_gives_none_for_integer_inputs() -> None:
    table = nir.randn(5, 3, names=("V", "D"))
    tokens = nir.tensor(np.array([1, 4, 1]), names=("S",))
    _, back = nir.vjp(lambda t, i: nir.take(t, i, "V"), table, tokens)
    dt, di = back(nir.ones(3, 3, names=("S", "D")))
    assert di is None
    np.testing.assert_array_equal(dt.numpy()[:, 0], [0, 2, 0, 0, 1])


def test_gradient_through_a_cast_has_the_inputs_dtype() -> None:
    x = nir.randn(3, names=("N",))
    g = nir.grad(lambda x: (x.to("float64") ** 2).sum())(x)
    assert g.dtype == "float32"
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy(), rtol=1e-6)


def test_unnamed_dims_keep_their_positions() -> None:
    x = nir.randn(3, 4)
    g = nir.grad(lambda x: (x.softmax(1) * nir.arange(4.0)).sum())(x)
    assert g.names == (None, None) and g.shape == (3, 4)


def test_grad_of_grad() -> None:
    x = nir.randn(5, names=("N",), dtype="float64")
    second = nir.grad(lambda x: nir.grad(lambda y: (y * y * y).sum())(x).sum())(x)
    np.testing.assert_allclose(second.numpy(), 6 * x.numpy(), rtol=1e-12)


def test_inner_grad_may_close_over_the_outer_argument() -> None:
    w = nir.randn(4, names=("N",), dtype="float64")
    x = nir.randn(4, names=("N",), dtype="float64")
    # d/dw sum(d/dx sum(sin(x * w))) = d/dw sum(w cos(x w)) = cos(x w) - x w sin(x w)
    g = nir.grad(lambda w: nir.grad(lambda x: (x * w).sin().sum())(x).sum())(w)
    xw = x.numpy() * w.numpy()
    np.testing.assert_allclose(g.numpy(), np.cos(xw) - xw * np.sin(xw), rtol=1e-12)


def test_grad_inside_trace_is_one_program_of_primitives() -> None:
    traced = nir.trace(nir.grad(loss), {"w1": nir.spec(pixel=6, hidden=5), "b1": nir.spec(hidden=5),
                                        "w2": nir.spec(hidden=5, **{"class": 3})}, nir.spec(N=4, pixel=6))
    program = nir.verify(traced.program)
    assert "conv2d" not in program.prims() and "contract" in program.prims()
    assert [v.type.user_names for v in program.outputs] == [("hidden",), ("pixel", "hidden"), ("hidden", "class")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_gradient_matches_the_eager_one(backend: str) -> None:
    params, x = data()
    want = nir.grad(loss)(params, x)
    got = nir.compile(nir.grad(loss), backend=backend)(params, x)
    for k in params:
        assert got[k].names == params[k].names
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=1e-4, atol=1e-5)


def test_non_scalar_output_is_refused_with_the_named_shape() -> None:
    x = nir.randn(3, 2, names=("N", "C"))
    with pytest.raises(nir.NamedShapeError, match=r"grad needs a scalar output .* returned \{N: 3\} float32\. "
                                                  r"Reduce it to a scalar first \(e\.g\. \.sum\(\) .*nir\.vjp"):
        nir.grad(lambda x: x.sum("C"))(x)


def test_integer_input_is_refused() -> None:
    idx = nir.tensor(np.array([0, 1]), names=("N",))
    with pytest.raises(TypeError, match=r"argument 0 has a int64 tensor \{N: 2\}; only floating-point inputs have "
                                        r"gradients"):
        nir.grad(lambda i: i.to("float32").sum())(idx)


def test_argnums_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="argnums=2 does not fit a call with 1 positional arguments"):
        nir.grad(lambda x: x.sum(), argnums=2)(nir.randn(2))


def test_vjp_refuses_a_cotangent_with_other_names() -> None:
    _, back = nir.vjp(lambda x: x.exp(), nir.randn(2, 3, names=("N", "C")))
    with pytest.raises(nir.NamedShapeError, match=r"cotangent 0 has named shape \{N: 2, D: 3\} but the output has "
                                                  r"\{N: 2, C: 3\}"):
        back(nir.randn(2, 3, names=("N", "D")))


def test_non_tensor_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="leaf 1 is a float"):
        nir.grad(lambda x, s: x.sum() * s)(nir.randn(2), 2.0)
