"""Data-parallel training across processes: `nir launch -n 2 nir train-digits` on 127.0.0.1 (one host device
per process) trains on the same batches as one process, each process feeding its rows of every batch, and
reaches the same loss curve and test accuracy. The launcher bounds the run and stops its processes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("sklearn")

from nir.examples import digits  # noqa: E402
from nir.launch import launch  # noqa: E402

TIMEOUT_S = 300  # two processes start jax, compile the MLP and CNN train steps and train 5 epochs each
EPOCHS = 5


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str]:
    out = tmp_path_factory.mktemp("digits") / "runs.json"
    log = io.StringIO()
    status = launch(["-m", "nir.cli", "train-digits", "--model", "mlp,cnn", "--epochs", str(EPOCHS),
                     "--json", str(out)], 2, timeout_s=TIMEOUT_S, out=log)
    assert status == 0, log.getvalue()[-4000:]
    return json.loads(out.read_text()), log.getvalue()


@pytest.mark.parametrize("index,model", [(0, "mlp"), (1, "cnn")])
def test_two_processes_reach_the_accuracy_and_loss_curve_of_one(two_processes, index: int, model: str) -> None:
    runs, _ = two_processes
    two = runs[index]
    one = digits.train(model, "xla", epochs=EPOCHS)
    assert two["model"] == model and two["steps"] == one.steps and two["devices"] == 2
    # the same batches; only the order of the gradient sums differs (each process sums its rows, then gloo)
    np.testing.assert_allclose(two["losses"], one.losses, rtol=1e-3, atol=1e-5)
    assert abs(two["test_accuracy"] - one.test_accuracy) <= 1 / len(digits.load().test_labels) + 1e-9
    assert two["test_accuracy"] >= 0.9


def test_only_process_0_reports(two_processes) -> None:
    _, log = two_processes
    reports = [line for line in log.splitlines() if "test accuracy" in line]
    assert len(reports) == 2 and all(line.startswith("[0] ") for line in reports), log[-2000:]
    assert all("data parallel on 2 devices" in line for line in reports)


def test_a_batch_the_devices_cannot_split_is_refused_with_its_sizes() -> None:
    log = io.StringIO()
    status = launch(["-m", "nir.cli", "train-digits", "--model", "mlp", "--batch", "63"], 2, timeout_s=TIMEOUT_S,
                    out=log)
    assert status == 2, log.getvalue()[-3000:]
    assert "batch 63 does not split evenly across the run's 2 devices (2 process(es) of 1)" in log.getvalue()


def test_data_parallel_training_needs_the_xla_backend() -> None:
    with pytest.raises(ValueError, match="data parallel training runs on the xla backend.*not 'tvm'"):
        digits.train("mlp", "tvm", data_parallel=True, max_steps=1)
