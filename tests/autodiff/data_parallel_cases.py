"""Data-parallel training by name on 4 host devices. Run by test_data_parallel.py as

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m pytest tests/autodiff/data_parallel_cases.py

(the flag must be set before jax starts, hence a separate process; pytest does not collect this file itself).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("sklearn")

import nir  # noqa: E402
from nir.examples import digits  # noqa: E402

pytestmark = pytest.mark.skipif(jax.device_count() < 4,
                                reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=4")
DATA = digits.load()
SHARDED = dict(mesh={"data": 4}, shard={"N": "data"})


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_loss_curve_with_the_batch_split_across_4_devices_matches_one_device(model: str) -> None:
    one = digits.train(model, "xla", batch=64, data=DATA, max_steps=40, evaluate=False)
    four = digits.train(model, "xla", batch=64, data=DATA, max_steps=40, evaluate=False, **SHARDED)
    np.testing.assert_allclose(four.losses, one.losses, rtol=2e-4)
    assert four.losses[-1] < 0.5 * four.losses[0]


def test_gradients_are_reduced_across_devices_by_xla() -> None:
    params = digits.mlp_init()
    opt = nir.optim.sgd(0.1)

    def step(params, images, onehot):
        grads = nir.grad(lambda p: digits.cross_entropy(digits.mlp(p, images), onehot))(params)
        return opt.update(grads, (), params)[0]

    compiled = nir.compile(step, backend="xla", **SHARDED)
    images = nir.tensor(DATA.train_images[:64], names=("N", "H", "W"))
    onehot = nir.tensor(np.eye(10, dtype=np.float32)[DATA.train_labels[:64]], names=("N", "class"))
    new = compiled(params, images, onehot)
    hlo = compiled.backend_ir("optimized_hlo")
    assert re.search(r"\ball-reduce\b", hlo), "no all-reduce: gradients were not reduced across devices"
    want = step(params, images, onehot)
    for k in params:
        assert new[k].names == params[k].names
        np.testing.assert_allclose(new[k].numpy(), want[k].numpy(), rtol=1e-4, atol=1e-6)


def test_data_parallel_option_splits_the_batch_across_the_host_devices() -> None:
    one = digits.train("mlp", "xla", batch=64, data=DATA, max_steps=20, evaluate=False)
    four = digits.train("mlp", "xla", batch=64, data=DATA, max_steps=20, evaluate=False, data_parallel=True)
    assert (one.devices, four.devices) == (1, 4)
    np.testing.assert_allclose(four.losses, one.losses, rtol=2e-4)
