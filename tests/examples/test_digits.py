"""The digits training example (nir train-digits) at CI size: compiled train steps reach >= 97% test
accuracy, and the loss curve is the same program's on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import nir

pytest.importorskip("sklearn")
from nir.examples import digits  # noqa: E402

DATA = digits.load()
XLA = pytest.mark.skipif(not nir.backends.installed("xla"), reason="xla is not installed")
TVM = pytest.mark.skipif(not nir.backends.installed("tvm"), reason="tvm is not installed")


@XLA
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_reaches_97_percent_test_accuracy_on_xla(model: str) -> None:
    r = digits.train(model, "xla", epochs=20, data=DATA)
    assert r.test_accuracy >= 0.97, r
    assert r.losses[-1] < 0.2 * r.losses[0]


@TVM
def test_mlp_reaches_97_percent_test_accuracy_on_tvm() -> None:
    assert digits.train("mlp", "tvm", epochs=20, data=DATA).test_accuracy >= 0.97


@pytest.mark.parametrize("model,backend", [pytest.param("cnn", "xla", marks=XLA),
                                           pytest.param("mlp", "tvm", marks=TVM)])
def test_the_loss_curve_is_the_reference_backends(model: str, backend: str) -> None:
    curves = [digits.train(model, b, batch=32, data=DATA, max_steps=12, evaluate=False).losses
              for b in (backend, "reference")]
    np.testing.assert_allclose(*curves, rtol=1e-3)


def test_parameters_gradients_and_moments_keep_their_names() -> None:
    params = digits.cnn_init()
    images = nir.tensor(DATA.train_images[:8], names=("N", "H", "W"))
    onehot = nir.tensor(np.eye(10, dtype=np.float32)[DATA.train_labels[:8]], names=("N", "class"))
    grads = nir.grad(lambda p: digits.cross_entropy(digits.cnn(p, images), onehot))(params)
    state = nir.optim.adam(1e-3).init(params)
    for k, p in params.items():
        assert grads[k].names == p.names == state["mu"][k].names


def test_command_line_writes_the_loss_plot(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "loss.png"
    assert digits.main(["--model", "mlp", "--backend", "reference", "--epochs", "1", "--plot", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "test accuracy" in capsys.readouterr().out
