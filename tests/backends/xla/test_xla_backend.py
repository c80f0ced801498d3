"""The xla backend against the reference interpreter: every primitive, layouts, targets and exports,
inputs, compiler options; sharding runs in a subprocess with 8 host devices (sharded_cases.py)."""

from __future__ import annotations

import os
import pathlib
import random
import re
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
from jax import export as jax_export  # noqa: E402

import nir.backends.xla as xla  # noqa: E402
from nir import ops  # noqa: E402
from nir.artifact import read_manifest  # noqa: E402
from nir.backends import BackendError  # noqa: E402
from nir.backends.xla.shard import ShardingError  # noqa: E402
from nir.interpret import interpret  # noqa: E402
from nir.ir import Builder, Program  # noqa: E402
from nir.testing import assert_close, op_samples, random_inputs, tolerance  # noqa: E402
from nir.types import NamedShapeError, TensorType  # noqa: E402

HERE = pathlib.Path(__file__).parent
REPO = HERE.parents[2]
SAMPLES = op_samples("float32") + op_samples("bfloat16")


def T(dims: dict[str, int], dtype: str = "float32") -> TensorType:
    return TensorType.of(dims, dtype)


def mlp() -> Program:
    b = Builder()
    x, w = b.input(T({"N": 8, "D": 16})), b.input(T({"D": 16, "H": 32}))
    h = b.add("relu", [b.add("contract", [x, w], over=("D",))])
    return b.build([b.add("softmax", [h], dim="H")])


def conv_net() -> Program:
    """conv -> relu -> pool -> flatten -> contract -> softmax, plus an unflatten/reduce branch."""
    b = Builder()
    x, w = b.input(T({"N": 2, "C": 3, "H": 8, "W": 8})), b.input(T({"O": 4, "C": 3, "H": 3, "W": 3}))
    y = b.add("conv2d", [x, w], channels="C", out_channels="O", spatial=("H", "W"), stride=(1, 1),
              padding=(1, 1), dilation=(1, 1), groups=1)
    p = b.add("pool2d", [b.add("relu", [y])], kind="max", kernel=(2, 2), stride=(2, 2), padding=(0, 0),
              spatial=("H", "W"))
    f = b.add("flatten", [p], dims=("O", "H", "W"), into="F")
    v = b.input(T({"F": 64, "K": 5}))
    s = b.add("softmax", [b.add("contract", [f, v], over=("F",))], dim="K")
    r = b.add("reduce_sum", [b.add("unflatten", [f], dim="F", parts=(("A", 8), ("B", 8)))], dims=("A",))
    return b.build([s, r])


# ------------------------------------------------------------------------------------------------
# every primitive against the reference
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", SAMPLES, ids=[c.id for c in SAMPLES])
def test_primitive_matches_reference(case):
    """Tolerances are nir.testing's: float32 rtol=atol=2e-5, bfloat16 rtol=atol=6e-2; ints/bools exact."""
    got = xla.build(case.program, "llvm")(*case.inputs)
    want = interpret(case.program, *case.inputs)
    assert_close(got, want, case.dtype)
    assert [np.asarray(g).dtype for g in got] == [w.dtype for w in want]


def test_tolerances_are_the_stated_ones():
    assert tolerance("float32") == (2e-5, 2e-5) and tolerance("bfloat16") == (6e-2, 6e-2)


def test_lowerings_and_unsupported_cover_every_primitive():
    assert set(xla.LOWERINGS) | set(xla.UNSUPPORTED) == set(ops.PRIMITIVES)
    assert not set(xla.LOWERINGS) & set(xla.UNSUPPORTED)


def test_a_primitive_without_lowering_fails_at_build(monkeypatch):
    monkeypatch.delitem(xla.LOWERINGS, "softmax")
    with pytest.raises(BackendError, match=r"xla backend does not support primitive 'softmax'"):
        xla.build(mlp(), "llvm")


def test_jax_is_imported_only_under_backends_xla():
    pattern = re.compile(r"^\s*(import jax|from jax)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for d in ("nir", "frontends", "backends") for p in (REPO / d).rglob("*.py")
                 if "backends/xla" not in p.as_posix() and pattern.search(p.read_text())]
    assert offenders == []
    code = "import sys, nir.backends.xla as x; assert x.available() and 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------

def test_layouts_keep_results_and_change_stablehlo():
    program = conv_net()
    inputs = random_inputs(program)
    want = interpret(program, *inputs)
    base = xla.build(program, "llvm").backend_ir("stablehlo")
    rng = random.Random(0)
    for _ in range(3):
        layouts = {v.id: rng.sample(v.type.names, len(v.type.names)) for v in program.values()}
        exe = xla.build(program.with_layouts(layouts), "llvm")
        assert_close(exe(*inputs), want, "float32")
        assert exe.backend_ir("stablehlo") != base
    # a layout on one intermediate only: the conv output stored NHWC ({N, H, W, O})
    conv_out = program.eqns[0].out.id
    nhwc = xla.build(program.with_layouts({conv_out: ("N", "H", "W", "O")}), "llvm")
    assert_close(nhwc(*inputs), want, "float32")
    assert "tensor<2x8x8x4xf32>" in nhwc.backend_ir() and "tensor<2x8x8x4xf32>" not in base


@pytest.mark.parametrize("label", ["nchw-pad1", "nhwc-stride2"])
def test_conv_takes_its_dimension_numbers_from_the_names(label):
    case = next(c for c in SAMPLES if c.prim == "conv2d" and c.label == label and c.dtype == "float32")
    ir = xla.build(case.program, "llvm").backend_ir("stablehlo")
    assert "stablehlo.convolution" in ir and "stablehlo.transpose" not in ir


# ------------------------------------------------------------------------------------------------
# targets, IR, export and load
# ------------------------------------------------------------------------------------------------

def test_backend_ir_kinds():
    exe = xla.build(mlp(), "llvm")
    assert "stablehlo.dot_general" in exe.backend_ir("stablehlo")
    assert "HloModule" in exe.backend_ir("hlo") and " dot(" in exe.backend_ir("hlo")
    assert "is_scheduled=true" in exe.backend_ir("optimized_hlo")
    with pytest.raises(ValueError, match="optimized_hlo"):
        exe.backend_ir("llvm")


@pytest.mark.parametrize("target,platform", [("tpu", "tpu"), ("cuda -arch=sm_90", "cuda")])
def test_accelerator_targets_export_for_their_platform(tmp_path, target, platform):
    program = mlp()
    exe = xla.build(program, target)
    assert exe.exported.platforms == (platform,)
    assert "stablehlo.dot_general" in exe.backend_ir("stablehlo") and "HloModule" in exe.backend_ir("hlo")
    with pytest.raises(BackendError, match=f"no {platform} device is present.*export"):
        exe(*random_inputs(program))
    with pytest.raises(BackendError, match="optimized HLO"):
        exe.backend_ir("optimized_hlo")
    exe.export(tmp_path)
    manifest = read_manifest(tmp_path)["signatures"][0]
    assert manifest["backend"] == "xla" and manifest["platforms"] == [platform]
    blob = (tmp_path / manifest["files"]["exported"]).read_bytes()
    assert jax_export.deserialize(bytearray(blob)).platforms == (platform,)
    with pytest.raises(BackendError, match=f"no {platform} device"):
        xla.load(tmp_path, manifest)(*random_inputs(program))


def test_cpu_artifact_round_trip(tmp_path):
    program = conv_net().with_layouts({2: ("N", "H", "W", "O")})
    inputs = random_inputs(program)
    exe = xla.build(program, "llvm", compiler_options={"xla_cpu_enable_fast_math": False})
    exe.export(tmp_path)
    loaded = xla.load(tmp_path, read_manifest(tmp_path)["signatures"][0])
    for a, b in zip(loaded(*inputs), exe(*inputs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_manifest(tmp_path)["signatures"][0]["compiler_options"] == {"xla_cpu_enable_fast_math": False}


def test_compiler_options_reach_xla():
    program = mlp()
    inputs = random_inputs(program)
    fast = xla.build(program, "llvm", compiler_options={"xla_cpu_enable_fast_math": True})
    assert_close(fast(*inputs), interpret(program, *inputs), "float32", scale=10)
    with pytest.raises(BackendError, match="xla_no_such_option"):
        xla.build(program, "llvm", compiler_options={"xla_no_such_option": True})
    with pytest.raises(ValueError, match="precision"):
        xla.build(program, "llvm", precision="fast")


def test_precision_is_recorded_in_stablehlo():
    assert "HIGHEST" in xla.build(mlp(), "tpu").backend_ir()
    assert "HIGHEST" not in xla.build(mlp(), "tpu", precision="default").backend_ir()


# ------------------------------------------------------------------------------------------------
# calling: inputs, errors, 64-bit values
# ------------------------------------------------------------------------------------------------

def test_inputs_numpy_jax_and_torch():
    torch = pytest.importorskip("torch")
    program = mlp()
    inputs = random_inputs(program)
    exe = xla.build(program, "llvm")
    want = interpret(program, *inputs)
    assert_close(exe(*inputs), want, "float32")
    assert_close(exe(*[jax.device_put(a) for a in inputs]), want, "float32")
    assert_close(exe(torch.from_numpy(inputs[0]), torch.tensor(inputs[1], requires_grad=True)), want, "float32")
    assert isinstance(exe(*inputs)[0], jax.Array)


def test_wrong_inputs_are_explained():
    exe = xla.build(mlp(), "llvm")
    x, w = random_inputs(mlp())
    with pytest.raises(NamedShapeError, match=r"input 0 \(%0\) should be float32 \{N: 8, D: 16\}.*got float32 array "
                                              r"of shape \(16, 8\)"):
        exe(x.T, w)
    with pytest.raises(NamedShapeError, match="got int32 array"):
        exe(x.astype(np.int32), w)
    with pytest.raises(NamedShapeError, match="takes 2 inputs"):
        exe(x)


def test_64_bit_values_stay_64_bit():
    b = Builder()
    x = b.input(T({"N": 3, "C": 5}, "float64"))
    i = b.add("argmax", [x], dim="C")
    r = b.add("iota", [], dim="K", size=4, start=2**40, step=3.0, dtype="int64")
    program = b.build([i, b.add("mul", [x, x]), r])
    inputs = random_inputs(program)
    got = xla.build(program, "llvm")(*inputs)
    want = interpret(program, *inputs)
    assert [np.asarray(g).dtype for g in got] == [np.int64, np.float64, np.int64]
    assert_close(got, want, "float64")
    assert not jax.config.jax_enable_x64  # the backend does not flip the process-wide flag


def test_bfloat16_contract_accumulates_in_float32():
    b = Builder()
    a, c = b.input(T({"M": 4, "K": 512}, "bfloat16")), b.input(T({"K": 512, "N": 4}, "bfloat16"))
    program = b.build([b.add("contract", [a, c], over=("K",))])
    inputs = random_inputs(program)
    exe = xla.build(program, "llvm")
    assert re.search(r"dot_general .*-> tensor<4x4xf32>", exe.backend_ir())
    assert_close(exe(*inputs), interpret(program, *inputs), "bfloat16")


# ------------------------------------------------------------------------------------------------
# sharding
# ------------------------------------------------------------------------------------------------

def test_mesh_larger_than_the_machine_says_how_to_fake_devices():
    with pytest.raises(ShardingError, match="xla_force_host_platform_device_count=2"):
        xla.build(mlp(), "llvm", mesh={"data": 2}, shard={"N": "data"})


def test_sharding_on_8_host_devices():
    """sharded_cases.py under XLA_FLAGS=--xla_force_host_platform_device_count=8, in a fresh process."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "sharded_cases.py")]
    run = subprocess.run(cmd + ["-rs"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    # the flag gives every CPU 8 host devices: a skipped case means the cases did not run at all
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, run.stdout[-3000:]


GROUPED = [  # (x dims, weight dims, groups, stride, padding, dilation): depthwise NCHW, NHWC, channel
    # multiplier 2, no batch; 2 and 4 input channels per group
    ({"N": 2, "C": 6, "H": 9, "W": 8}, {"O": 6, "C": 1, "H": 3, "W": 3}, 6, (2, 2), (1, 1), (1, 1)),
    ({"N": 2, "H": 9, "W": 8, "C": 6}, {"H": 5, "W": 5, "C": 1, "O": 6}, 6, (1, 1), (2, 2), (1, 1)),
    ({"N": 1, "C": 3, "H": 8, "W": 8}, {"O": 6, "C": 1, "H": 3, "W": 2}, 3, (1, 2), (0, 1), (2, 1)),
    ({"C": 4, "H": 6, "W": 5}, {"O": 4, "C": 1, "H": 3, "W": 3}, 4, (1, 1), (1, 1), (1, 1)),
    ({"N": 2, "C": 8, "H": 7, "W": 6}, {"O": 12, "C": 2, "H": 3, "W": 3}, 4, (1, 1), (1, 1), (1, 1)),
    ({"N": 1, "H": 6, "W": 6, "C": 8}, {"C": 4, "O": 4, "H": 3, "W": 3}, 2, (2, 1), (1, 0), (1, 1)),
]


@pytest.mark.parametrize("case", range(len(GROUPED)))
def test_grouped_conv_with_few_channels_per_group_is_slices_not_xla_grouped_conv(case):
    xd, wd, groups, stride, padding, dilation = GROUPED[case]
    b = Builder()
    x, w = b.input(T(xd)), b.input(T(wd))
    program = b.build([b.add("conv2d", [x, w], channels="C", out_channels="O", spatial=("H", "W"), stride=stride,
                             padding=padding, dilation=dilation, groups=groups)])
    inputs = random_inputs(program, seed=case)
    exe = xla.build(program, "llvm")
    assert_close(exe(*inputs), interpret(program, *inputs), "float32")
    assert "convolution" not in exe.backend_ir("optimized_hlo")
