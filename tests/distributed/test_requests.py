"""Sharding and multi-process requests refused in one process, before anything runs, with the named shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("jax")

import jax  # noqa: E402

import nir  # noqa: E402
from nir.backends.xla.shard import ShardingError  # noqa: E402
from nir.distributed import DistributedError  # noqa: E402


def mlp(x, w):
    return (x @ w).relu()


X = nir.randn(8, 6, names=("N", "D"))
W = nir.randn(6, 4, names=("D", "H"))


def test_a_shard_map_naming_a_dim_the_program_lacks_shows_the_inputs_named_shapes():
    f = nir.compile(mlp, backend="xla", mesh={"data": 1}, shard={"B": "data"})
    with pytest.raises(ShardingError, match=r"shard= names dim 'B', which no value of the program has; its dims are "
                                            r"\['D', 'H', 'N'\] \(inputs \{N: 8, D: 6\}, \{D: 6, H: 4\}\)"):
        f(X, W)


def test_a_dim_its_mesh_axis_does_not_divide_shows_the_value_named_shape():
    f = nir.compile(mlp, backend="xla", mesh={"data": 3}, shard={"N": "data"})
    with pytest.raises(ShardingError, match=r"cannot shard dim 'N' of size 8 in %0 \{N: 8, D: 6\} \(a program input\) "
                                            r"across mesh axes \['data'\] \(3 shards\): 3 does not divide 8"):
        f(X, W)


def test_local_inputs_without_a_shard_map_are_refused():
    f = nir.compile(mlp, backend="xla", local_inputs=True)
    with pytest.raises(ShardingError, match="local_inputs=True needs mesh= and shard="):
        f(X, W)


def test_one_process_runs_local_inputs_as_whole_ones():
    f = nir.compile(mlp, backend="xla", mesh={"data": 1}, shard={"N": "data"}, local_inputs=True, gather=True)
    assert f(X, W).shape == (8, 4)


def test_initialize_after_jax_started_says_to_call_it_first():
    jax.devices()  # jax has started in this process
    with pytest.raises(DistributedError, match=r"called after JAX had started .* Call it first thing in the script"):
        nir.distributed.initialize("127.0.0.1:1", 1, 0)


def test_initialize_refuses_an_address_without_a_port():
    with pytest.raises(DistributedError, match=r"coordinator_address='10.0.0.1' should be HOST:PORT"):
        nir.distributed.initialize("10.0.0.1", 2, 0)


def test_importing_nir_distributed_does_not_import_jax():
    code = "import sys, nir, nir.distributed, nir.launch; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120).stdout.strip() == "False"
