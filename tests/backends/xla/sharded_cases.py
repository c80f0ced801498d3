"""Sharding checks that need 8 host devices. Run by test_xla_backend.py::test_sharding_on_8_host_devices as

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest tests/backends/xla/sharded_cases.py

(the flag must be set before jax starts, hence a separate process; pytest does not collect this file itself).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import nir.backends.xla as xla  # noqa: E402
from nir.artifact import read_manifest  # noqa: E402
import nir  # noqa: E402
from nir.backends.xla.shard import ShardingError  # noqa: E402
from nir.interpret import interpret  # noqa: E402
from nir.ir import Builder, Program  # noqa: E402
from nir.testing import assert_close, random_inputs  # noqa: E402
from nir.types import TensorType  # noqa: E402

COLLECTIVES = re.compile(r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)\b")

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=8")


def T(dims: dict[str, int]) -> TensorType:
    return TensorType.of(dims, "float32")


def mlp(reduce_batch: bool = False) -> Program:
    """x{N, D} -> relu(x W1{D, H}) -> . W2{H, K}; optionally also sum over N."""
    b = Builder()
    x, w1, w2 = b.input(T({"N": 16, "D": 32})), b.input(T({"D": 32, "H": 64})), b.input(T({"H": 64, "K": 8}))
    h = b.add("relu", [b.add("contract", [x, w1], over=("D",))])
    o = b.add("contract", [h, w2], over=("H",))
    return b.build([b.add("reduce_sum", [o], dims=("N",))] if reduce_batch else [o])


def collectives(exe) -> set[str]:
    return set(COLLECTIVES.findall(exe.backend_ir("optimized_hlo")))


def check_equal_to_unsharded(program: Program, **sharding) -> "xla.build":
    inputs = random_inputs(program)
    exe = xla.build(program, "llvm", **sharding)
    got = exe(*inputs)
    assert_close(got, [np.asarray(a) for a in xla.build(program, "llvm")(*inputs)], "float32")
    assert_close(got, interpret(program, *inputs), "float32")
    return exe


def test_batch_sharding_needs_no_collectives():
    exe = check_equal_to_unsharded(mlp(), mesh={"data": 4}, shard={"N": "data"})
    out = exe(*random_inputs(mlp()))[0]
    assert out.sharding.spec == jax.sharding.PartitionSpec("data", None)
    hlo = exe.backend_ir("optimized_hlo")
    assert collectives(exe) == set()
    assert "f32[4,32]" in hlo  # each device holds a 4-row shard of x{N: 16, D: 32}
    assert 'sdy.sharding<@mesh, [{"data"}, {}]>' in exe.backend_ir("stablehlo")


def test_inputs_of_several_mebibytes_are_sharded_too():
    """Large numpy inputs go to XLA as they are (used in place when unsharded); a sharded program must
    split them instead."""
    x, w = nir.randn(8192, 64, names=("N", "D")), nir.randn(64, 16, names=("D", "H"))  # x: 2 MiB
    f = nir.compile(lambda x, w: x @ w, backend="xla", mesh={"data": 2, "model": 2}, shard={"N": "data", "H": "model"})
    assert_close([f(x, w).numpy()], [(x @ w).numpy()], "float32")


def test_reducing_a_sharded_dim_all_reduces():
    exe = check_equal_to_unsharded(mlp(reduce_batch=True), mesh={"data": 4}, shard={"N": "data"})
    assert "all-reduce" in collectives(exe)


def test_data_and_model_parallel():
    exe = check_equal_to_unsharded(mlp(), mesh={"data": 4, "model": 2}, shard={"N": "data", "H": "model"})
    assert "all-reduce" in collectives(exe)  # contracting over H, which is split across "model"
    assert 'sharding_constraint' in exe.backend_ir("stablehlo")


def test_partition_specs_follow_physical_layouts():
    program = mlp()
    hidden = program.eqns[1].out.id  # relu output {N, H}, stored as {H, N}
    exe = check_equal_to_unsharded(program.with_layouts({hidden: ("H", "N")}), mesh={"data": 4}, shard={"N": "data"})
    assert re.search(r'sdy.sharding_constraint %\d+ <@mesh, \[\{\}, \{"data"\}\]> : tensor<64x16xf32>',
                     exe.backend_ir("stablehlo"))


def test_conv_sharded_over_batch_and_channels():
    b = Builder()
    x, w = b.input(T({"N": 8, "C": 4, "H": 8, "W": 8})), b.input(T({"O": 8, "C": 4, "H": 3, "W": 3}))
    y = b.add("conv2d", [x, w], channels="C", out_channels="O", spatial=("H", "W"), stride=(1, 1),
              padding=(1, 1), dilation=(1, 1), groups=1)
    program = b.build([b.add("pool2d", [y], kind="avg", kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                             spatial=("H", "W"))])
    check_equal_to_unsharded(program, mesh={"data": 2, "model": 2}, shard={"N": "data", "O": "model"})


@pytest.mark.parametrize("sharding,message", [
    ({"mesh": {"data": 3}, "shard": {"N": "data"}}, r"dim 'N' of size 16 .* 3 does not divide 16"),
    ({"mesh": {"data": 4}, "shard": {"Q": "data"}}, r"dim 'Q', which no value of the program has"),
    ({"mesh": {"data": 4}, "shard": {"N": "rows"}}, r"unknown mesh axis 'rows'; the mesh has axes \['data'\]"),
    ({"mesh": {"data": 16}, "shard": {"N": "data"}}, r"needs 16 devices .*xla_force_host_platform_device_count=16"),
    ({"mesh": {"data": 2}, "shard": {"N": "data", "D": "data"}}, r"'N' and 'D' both sharded on mesh axis 'data'"),
    ({"mesh": {}, "shard": {"N": "data"}}, r"mesh= must map axis names to positive sizes"),
])
def test_invalid_requests_fail_before_compiling(sharding, message):
    with pytest.raises(ShardingError, match=message):
        xla.build(mlp(), "llvm", **sharding)
    assert issubclass(ShardingError, ValueError)


def test_sharded_exports(tmp_path):
    program = mlp()
    tpu = xla.build(program, "tpu", mesh={"data": 4}, shard={"N": "data"})
    assert tpu.exported.platforms == ("tpu",) and tpu.exported.nr_devices == 4
    exe = xla.build(program, "llvm", mesh={"data": 4}, shard={"N": "data"})
    exe.export(tmp_path)
    manifest = read_manifest(tmp_path)["signatures"][0]
    assert manifest["mesh"] == {"data": 4} and manifest["shard"] == {"N": "data"}
    inputs = random_inputs(program)
    loaded = xla.load(tmp_path, manifest)
    np.testing.assert_array_equal(np.asarray(loaded(*inputs)[0]), np.asarray(exe(*inputs)[0]))
