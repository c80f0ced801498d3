"""The TVM backend against the reference interpreter: every primitive (float32, float16, bfloat16),
default CPU schedules on shapes large enough to trigger them, physical layouts, the Relax it emits,
the calling convention (misaligned, strided, torch and jax inputs), export/load and CUDA artifacts.

Tolerances are nir.testing's per dtype, unscaled: contractions and convolutions accumulate in float32
for float16/bfloat16 (as the reference does), so low precision needs no extra slack.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402
from tvm.relax import op as R  # noqa: E402

import nir.backends  # noqa: E402
from nir import ops  # noqa: E402
from nir.ops import _ad as ad  # noqa: E402
from nir.artifact import read_manifest  # noqa: E402
from nir.backends import BackendError  # noqa: E402
from nir.interpret import interpret  # noqa: E402
from nir.ir import Builder, Program  # noqa: E402
from nir.target import parse_target  # noqa: E402
from nir.testing import assert_close, op_samples, random_inputs  # noqa: E402
from nir.types import TensorType  # noqa: E402

backend = nir.backends.get("tvm")
build_module = importlib.import_module("nir.backends.tvm.build")  # the package exports a function `build`
lower_module = importlib.import_module("nir.backends.tvm.lower")
schedule_module = importlib.import_module("nir.backends.tvm.schedule")


def T(dims: dict[str, int], dtype: str = "float32") -> TensorType:
    """A tensor type from ``{name: size}``."""
    return TensorType.of(dims, dtype)


def one(prim: str, types: list[TensorType], **params) -> Program:
    """A program of one equation."""
    b = Builder()
    vs = [b.input(t) for t in types]
    return b.build([b.add(prim, vs, **params)])


def reference(program: Program, inputs) -> list[np.ndarray]:
    """What the program means: the reference interpreter's outputs."""
    return interpret(program, *inputs)


def check(program: Program, inputs=None, dtype: str = "float32", **options) -> "backend.TVMExecutable":
    """Build for llvm with ``options``, run on ``inputs`` (random by default), compare with the reference."""
    inputs = random_inputs(program, seed=7) if inputs is None else inputs
    exe = backend.build(program, parse_target("llvm"), **options)
    assert_close(exe(*inputs), reference(program, inputs), dtype)
    return exe


# ---------------------------------------------------------------------------------------------
# coverage and every primitive
# ---------------------------------------------------------------------------------------------

def test_lowerings_and_unsupported_cover_every_primitive():
    lowered, unsupported = set(backend.LOWERINGS), set(backend.unsupported())
    assert lowered | unsupported == set(ops.PRIMITIVES)
    assert not lowered & unsupported, "a primitive is both lowered and listed as unsupported"


def test_a_primitive_without_lowering_fails_at_build_naming_it_and_the_backend(monkeypatch):
    monkeypatch.delitem(lower_module.LOWERINGS, "erf")
    with pytest.raises(BackendError, match=r"tvm backend cannot compile primitive\(s\) erf"):
        backend.build(one("erf", [T({"N": 3})]), parse_target("llvm"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_every_primitive_matches_the_reference(dtype):
    failures = []
    for case in op_samples(dtype):
        exe = backend.build(case.program, parse_target("llvm"))
        try:
            assert_close(exe(*case.inputs), reference(case.program, case.inputs), dtype)
        except AssertionError as e:
            failures.append(f"{case.id}: {e}")
    assert not failures, "\n".join(failures)


def test_every_primitive_under_random_physical_layouts():
    """Each sample with every value (inputs, outputs too) given a random physical order."""
    rng = np.random.default_rng(0)
    failures = []
    for case in op_samples("float32"):
        layouts = {v.id: tuple(rng.permutation(v.type.names)) for v in case.program.values() if v.type.ndim > 1}
        program = case.program.with_layouts(layouts)
        exe = backend.build(program, parse_target("llvm"))
        try:
            assert_close(exe(*case.inputs), reference(case.program, case.inputs), "float32")
        except AssertionError as e:
            failures.append(f"{case.id} with layouts {layouts}: {e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_nan_and_inf_propagate_like_the_reference(dtype):
    b = Builder()
    x, y = b.input(T({"A": 6, "B": 32}, dtype)), b.input(T({"A": 6, "B": 32}, dtype))
    outs = [b.add("relu", [x]), b.add("maximum", [x, y]), b.add("minimum", [x, y]),
            b.add("reduce_max", [x], dims=("B",)), b.add("reduce_min", [x], dims=("A",)),
            b.add("argmax", [x], dim="B"), b.add("argmin", [x], dim="A")]
    program = b.build(outs)
    xs, ys = random_inputs(program, seed=9)
    xs[0, 3], xs[1, 0], xs[2, 5], ys[3, 3], xs[4, 31] = np.nan, np.inf, -np.inf, np.nan, np.nan
    check(program, [xs, ys], dtype=dtype)


def _clamps_against_constants() -> Program:
    """ReLU6-style clamps: maximum and minimum with a constant (0 stays a bound 0-d buffer, 6 and -2 become
    literals) on either side."""
    b = Builder()
    x = b.input(T({"A": 6, "B": 32}))
    zero, six, low = (b.add("full", [], value=v, dims=(), dtype="float32") for v in (0.0, 6.0, -2.0))
    return b.build([b.add("minimum", [b.add("maximum", [x, zero]), six]), b.add("maximum", [low, x]),
                    b.add("minimum", [six, x])])


def test_clamps_against_constants_keep_nan_and_inf():
    program = _clamps_against_constants()
    (xs,) = random_inputs(program, seed=3)
    xs *= 8
    xs[0, 3], xs[1, 0], xs[2, 5] = np.nan, np.inf, -np.inf
    check(program, [xs])


def test_clamps_against_constants_need_no_nan_test():
    # a bound that is not NaN makes one compare and select enough: the compare is false for a NaN input
    assert "isnan" not in backend.build(_clamps_against_constants(), parse_target("llvm")).backend_ir("relax")


def test_epilogue_of_a_reduction_over_a_size_one_dim():
    """An outer product (contraction over a dim of size 1) followed by an add: TVM hides the unit
    reduction loop, and inlining the add into it would add the scalar twice."""
    b = Builder()
    x, y = b.input(T({"B": 1, "C": 7})), b.input(T({"B": 1, "A": 5}))
    quarter = b.add("full", [], value=0.25, dims=(), dtype="float32")
    program = b.build([b.add("add", [b.add("contract", [x, y], over=("B",)), quarter])])
    check(program)


def test_scalars_and_infinite_fills():
    b = Builder()
    s = b.input(T({}))
    inf = b.add("full", [], value=-np.inf, dims=(("A", 3),), dtype="float32")
    program = b.build([b.add("maximum", [b.add("align", [s], dims=(("A", 3),)), inf]), b.add("neg", [s]),
                       b.add("full", [], value=np.nan, dims=(), dtype="float32")])
    check(program, [np.array(2.5, np.float32)])


# ---------------------------------------------------------------------------------------------
# default schedules: shapes big enough for each rule
# ---------------------------------------------------------------------------------------------

CONV = dict(channels="C", out_channels="O", spatial=("H", "W"), dilation=(1, 1))
SCHEDULED = {
    # name: (program, a rule that must have scheduled one of its PrimFuncs)
    "matmul": (one("contract", [T({"M": 128, "K": 96}), T({"K": 96, "N": 64})], over=("K",)), "contraction"),
    "matmul-odd": (one("contract", [T({"M": 33, "K": 17}), T({"K": 17, "N": 40})], over=("K",)), "contraction"),
    "matmul-w-transposed": (one("contract", [T({"M": 64, "K": 96}), T({"N": 48, "K": 96})], over=("K",)),
                            "transpose"),
    "batched": (one("contract", [T({"B": 4, "M": 32, "K": 16}), T({"B": 4, "K": 16, "N": 64})], over=("K",)),
                "contraction"),
    "matmul-prime-rows": (one("contract", [T({"M": 197, "K": 64}), T({"K": 64, "N": 48})], over=("K",)),
                          "contraction"),  # ViT's 197 tokens: rows padded to a whole tile
    "matmul-long-k": (one("contract", [T({"M": 20, "K": 768}), T({"K": 768, "N": 64})], over=("K",)),
                      "contraction"),  # K blocked
    "batched-prime": (one("contract", [T({"B": 3, "M": 37, "K": 16}), T({"B": 3, "K": 16, "N": 37})], over=("K",)),
                      "contraction"),  # Q.K^T at 197 tokens, smaller: both output dims padded
    "row-vector": (one("contract", [T({"K": 96}), T({"K": 96, "N": 1000})], over=("K",)), "contraction"),
    "matvec": (one("contract", [T({"M": 256, "K": 128}), T({"K": 128})], over=("K",)), "row_reduction"),
    "conv-nchw": (one("conv2d", [T({"N": 2, "C": 16, "H": 20, "W": 20}), T({"O": 32, "C": 16, "H": 3, "W": 3})],
                      stride=(1, 1), padding=(1, 1), groups=1, **CONV), "contraction"),
    "conv-nhwc": (one("conv2d", [T({"N": 2, "H": 20, "W": 20, "C": 16}), T({"H": 3, "W": 3, "C": 16, "O": 32})],
                      stride=(1, 1), padding=(1, 1), groups=1, **CONV), "contraction"),
    "conv-stride2": (one("conv2d", [T({"N": 1, "C": 8, "H": 33, "W": 31}), T({"O": 16, "C": 8, "H": 5, "W": 5})],
                         stride=(2, 2), padding=(2, 1), groups=1, **CONV), "contraction"),
    "conv-prime-channels": (one("conv2d", [T({"N": 2, "C": 4, "H": 9, "W": 16}), T({"O": 37, "C": 4, "H": 3, "W": 3})],
                                stride=(1, 1), padding=(1, 1), groups=1, **CONV), "contraction"),  # no row tile
    "conv-groups": (one("conv2d", [T({"N": 1, "C": 16, "H": 24, "W": 24}), T({"O": 32, "C": 4, "H": 3, "W": 3})],
                        stride=(1, 1), padding=(1, 1), groups=4, **CONV), "contraction"),
    "softmax": (one("softmax", [T({"B": 64, "D": 256})], dim="D"), "row_reduction"),
    "softmax-outer": (one("softmax", [T({"B": 64, "D": 256})], dim="B"), "transpose"),  # D made innermost
    "layer_norm": (one("layer_norm", [T({"B": 64, "D": 256})], dims=("D",), eps=1e-5), "row_reduction"),
    "layer_norm-chw": (one("layer_norm", [T({"N": 4, "C": 16, "H": 8, "W": 8})], dims=("C", "H", "W"), eps=1e-5),
                       "row_reduction"),
    "sum-middle": (one("reduce_sum", [T({"A": 16, "B": 64, "C": 32})], dims=("B",)), "column_reduction"),
    "sum-first": (one("reduce_sum", [T({"A": 16, "B": 64, "C": 32})], dims=("A", "B")), "column_reduction"),
    "max-middle-odd": (one("reduce_max", [T({"A": 5, "B": 7, "C": 3})], dims=("B",)), "column_reduction"),
    "max-inner": (one("reduce_max", [T({"A": 64, "B": 512})], dims=("B",)), "generic"),
    "argmax": (one("argmax", [T({"A": 64, "B": 512})], dim="B"), "row_reduction"),
    "add-broadcast": (one("add", [T({"B": 64, "D": 512}), T({"D": 512})]), "generic"),
    "mul-transposed": (one("mul", [T({"B": 64, "D": 512}), T({"D": 512, "B": 64})]), "transpose"),
    "gelu": (one("gelu", [T({"B": 128, "D": 300})]), "generic"),
    "transpose": (one("align", [T({"B": 128, "D": 300})], dims=(("D", 300), ("B", 128))), "transpose"),
    "max-pool": (one("pool2d", [T({"N": 2, "C": 16, "H": 32, "W": 32})], kind="max", kernel=(3, 3), stride=(2, 2),
                     padding=(1, 1), spatial=("H", "W")), "generic"),
    "concat": (one("concat", [T({"B": 64, "D": 256}), T({"D": 256, "B": 32})], dim="B"), "transpose"),
}


@pytest.mark.parametrize("name", SCHEDULED)
def test_default_schedules_are_applied_and_correct(name):
    program, rule = SCHEDULED[name]
    exe = check(program)
    assert rule in exe.schedules.values(), exe.schedules
    assert all(r is not None for r in exe.schedules.values()), f"unscheduled PrimFuncs: {exe.schedules}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_scheduled_contractions_in_low_precision(dtype):
    for name in ("matmul", "conv-nchw"):
        eqn = SCHEDULED[name][0].eqns[0]
        program = one(eqn.prim, [v.type.with_dtype(dtype) for v in eqn.inputs], **eqn.kwargs)
        exe = check(program, dtype=dtype)
        assert "contraction" in exe.schedules.values()


def test_a_schedule_rule_that_raises_is_skipped(monkeypatch):
    def broken(sch, target):
        raise RuntimeError("this rule always fails")
    monkeypatch.setattr(schedule_module, "RULES", [("broken", broken), *schedule_module.RULES])
    exe = check(SCHEDULED["matmul"][0])
    assert exe.schedules == {"matmul": "contraction"}


def _vectorized_bfloat16_accumulation(sch, target):
    """A schedule TVM accepts but cannot compile: a vectorized bfloat16 accumulation."""
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    a, c, b = sch.get_loops(block)
    sch.reorder(a, b, c)
    sch.vectorize(c)
    sch.decompose_reduction(block, b)
    return True


def test_a_schedule_that_does_not_compile_falls_back_to_plain_loops(monkeypatch):
    monkeypatch.setattr(schedule_module, "RULES", [("uncompilable", _vectorized_bfloat16_accumulation)])
    program = one("reduce_max", [T({"A": 4, "B": 8, "C": 16}, "bfloat16")], dims=("B",))
    with pytest.warns(RuntimeWarning, match="failed to compile.*unscheduled loops"):
        exe = check(program, dtype="bfloat16")
    assert set(exe.schedules.values()) == {None}


def test_fast_math_is_close_and_replaces_the_transcendentals():
    b = Builder()
    x = b.input(T({"B": 64, "D": 256}))
    program = b.build([b.add("softmax", [x], dim="D"), b.add("gelu", [x]), b.add("exp", [x]), b.add("tanh", [x])])
    exe = check(program, fast_math=True)
    tir = exe.backend_ir("tir")
    assert "fast_erf" in tir and "fast_softmax" in tir and "fast_exp" in tir and "fast_tanh" in tir


def test_unscheduled_build_still_runs():
    exe = check(SCHEDULED["softmax"][0], schedule=False)
    assert exe.schedules == {}


def test_an_empty_tuning_database_leaves_the_default_schedules(tmp_path):
    exe = check(SCHEDULED["matmul"][0], tuning_db=tmp_path)
    assert exe.schedules == {"matmul": "contraction"}
    with pytest.raises(BackendError, match="is not a directory"):
        backend.build(SCHEDULED["matmul"][0], parse_target("llvm"), tuning_db=tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# the Relax module (structural goldens)
# ---------------------------------------------------------------------------------------------

def test_relax_for_broadcast_by_name_then_softmax():
    b = Builder()
    x, bias = b.input(T({"N": 2, "C": 3})), b.input(T({"C": 3}))
    program = b.build([b.add("softmax", [b.add("add", [x, bias])], dim="C")])

    bb = relax.BlockBuilder()
    rx = relax.Var("x", relax.TensorType((2, 3), "float32"))
    rb = relax.Var("b", relax.TensorType((3,), "float32"))
    with bb.function("main", [rx, rb]):
        with bb.dataflow():
            s = bb.emit(R.add(rx, rb))  # {C} broadcasts against {N, C} with no reshape
            y = bb.emit(R.nn.softmax(s, axis=1))
            gv = bb.emit_output(y)  # one output: returned bare, not in a tuple
        bb.emit_func_output(gv)
    tvm.ir.assert_structural_equal(backend.lower_program(program), bb.get())


def test_relax_for_physical_layouts_permutes_at_the_boundary_and_composes_permutes():
    b = Builder()
    x, w = b.input(T({"M": 4, "K": 3})), b.input(T({"K": 3, "N": 5}))
    y = b.add("contract", [x, w], over=("K",))
    r = b.add("relu", [y])
    program = b.build([r]).with_layouts({x.id: ("K", "M"), y.id: ("N", "M"), r.id: ("N", "M")})

    bb = relax.BlockBuilder()
    rx = relax.Var("x", relax.TensorType((4, 3), "float32"))
    rw = relax.Var("w", relax.TensorType((3, 5), "float32"))
    with bb.function("main", [rx, rw]):
        with bb.dataflow():
            # x enters as (M, K) and is laid out (K, M); contract wants (M, K) again: the two permutes cancel
            mm = bb.emit(R.matmul(rx, rw, out_dtype=None))
            nm = bb.emit(R.permute_dims(mm, [1, 0]))  # y laid out (N, M)
            zero = relax.const(0, "float32")
            rl = bb.emit(R.where(R.less(nm, zero), zero, nm))  # relu in (N, M), keeping NaN like numpy
            out = bb.emit(R.permute_dims(rl, [1, 0]))  # returned in logical order (M, N)
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    tvm.ir.assert_structural_equal(backend.lower_program(program), bb.get())


def test_backend_ir_kinds():
    exe = backend.build(SCHEDULED["matmul"][0], parse_target("llvm"))
    assert "R.matmul" in exe.backend_ir() and exe.backend_ir() == exe.backend_ir("relax")
    assert "T.parallel" in exe.backend_ir("tir")
    with pytest.raises(ValueError, match="'relax' or 'tir'"):
        exe.backend_ir("llvm")


# ---------------------------------------------------------------------------------------------
# layouts on intermediates
# ---------------------------------------------------------------------------------------------

def _convnet() -> Program:
    b = Builder()
    x = b.input(T({"N": 2, "C": 4, "H": 8, "W": 8}))
    w = b.input(T({"O": 8, "C": 4, "H": 3, "W": 3}))
    fc = b.input(T({"F": 128, "K": 10}))
    y = b.add("conv2d", [x, w], stride=(1, 1), padding=(1, 1), groups=1, **CONV)
    y = b.add("relu", [y])
    y = b.add("pool2d", [y], kind="max", kernel=(2, 2), stride=(2, 2), padding=(0, 0), spatial=("H", "W"))
    y = b.add("flatten", [y], dims=("O", "H", "W"), into="F")
    logits = b.add("contract", [y, fc], over=("F",))
    return b.build([b.add("log_softmax", [logits], dim="K"), b.add("reduce_max", [y], dims=("F",))])


def test_layouts_on_intermediates_give_the_same_results():
    program = _convnet()
    inputs = random_inputs(program, seed=3)
    plain = backend.build(program, parse_target("llvm"))(*inputs)
    conv, relu, pool = (e.out for e in program.eqns[:3])
    laid_out = program.with_layouts({conv.id: ("N", "H", "W", "O"), relu.id: ("W", "N", "O", "H"),
                                     pool.id: ("H", "W", "O", "N"), program.inputs[0].id: ("N", "H", "W", "C")})
    got = backend.build(laid_out, parse_target("llvm"))(*inputs)
    assert_close(got, plain, "float32")
    assert_close(got, reference(program, inputs), "float32")


# ---------------------------------------------------------------------------------------------
# calling convention
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def matmul_exe():
    """A vectorized, parallel matmul: the kind of kernel a misaligned pointer used to crash."""
    program = SCHEDULED["matmul"][0]
    exe = backend.build(program, parse_target("llvm"))
    assert exe.schedules == {"matmul": "contraction"}
    return program, exe


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = np.empty(a.size + 17, a.dtype)
    start = next(i for i in range(1, 17) if (buf.ctypes.data + i * a.itemsize) % 64)
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 != 0
    return out


def _aligned(a: np.ndarray) -> np.ndarray:
    buf = np.empty(a.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_numpy_inputs_misaligned_and_strided(matmul_exe):
    program, exe = matmul_exe
    x, w = random_inputs(program, seed=1)
    want = reference(program, [x, w])
    assert_close(exe(_misaligned(x), _misaligned(w)), want, "float32")
    xf, wt = np.asfortranarray(x), np.ascontiguousarray(w.T).T  # same values, not C-contiguous
    assert not xf.flags.c_contiguous and not wt.flags.c_contiguous
    assert_close(exe(xf, wt), want, "float32")
    big = np.zeros((x.shape[0], 2 * x.shape[1]), np.float32)
    big[:, ::2] = x
    assert_close(exe(big[:, ::2], w), want, "float32")


def test_read_only_numpy_inputs(matmul_exe):
    program, exe = matmul_exe
    x, w = (_aligned(a) for a in random_inputs(program, seed=6))
    want = reference(program, [x, w])
    x.setflags(write=False)
    assert_close(exe(x, w), want, "float32")


def test_aligned_contiguous_numpy_inputs_are_not_copied():
    a = _aligned(np.arange(64 * 48, dtype=np.float32).reshape(64, 48))
    t = build_module.to_tvm(a, build_module.Signature(("A", "B"), (64, 48), "float32"), 0, tvm.cpu())
    assert np.from_dlpack(t).ctypes.data == a.ctypes.data
    m = _misaligned(a)
    t = build_module.to_tvm(m, build_module.Signature(("A", "B"), (64, 48), "float32"), 0, tvm.cpu())
    assert np.from_dlpack(t).ctypes.data % 64 == 0


def test_the_executable_shares_aligned_writeable_inputs_and_copies_the_rest(matmul_exe):
    program, exe = matmul_exe
    x, w = (_aligned(a) for a in random_inputs(program, seed=7))
    assert np.shares_memory(np.from_dlpack(exe._input(x, 0)), x)
    read_only = _aligned(x)
    read_only.setflags(write=False)
    for a in (_misaligned(x), np.asfortranarray(x), read_only):
        t = exe._input(a, 0)
        assert t.data_ptr() % 64 == 0 and not np.shares_memory(np.from_dlpack(t), a)
        np.testing.assert_array_equal(np.from_dlpack(t), x)


def test_one_output_comes_back_bare_and_several_in_a_tuple():
    b = Builder()
    x = b.input(T({"N": 4, "C": 8}))
    one = backend.build(b.build([b.add("exp", [x])]), parse_target("llvm"))
    b = Builder()
    x = b.input(T({"N": 4, "C": 8}))
    two = backend.build(b.build([b.add("exp", [x]), b.add("neg", [x])]), parse_target("llvm"))
    arg = tvm.runtime.tensor(np.ones((4, 8), np.float32))
    assert isinstance(one.vm_function()(arg), tvm.runtime.Tensor)
    assert len(two.vm_function()(arg)) == 2


def test_single_reads_a_one_element_tuple_as_older_artifacts_return():
    bb = relax.BlockBuilder()
    rx = relax.Var("x", relax.TensorType((4, 8), "float32"))
    with bb.function("main", [rx]):
        with bb.dataflow():
            gv = bb.emit_output(relax.Tuple([bb.emit(R.exp(rx))]))
        bb.emit_func_output(gv)
    lib = tvm.compile(bb.get(), target="llvm")
    sig = build_module.Signature(("N", "C"), (4, 8), "float32")
    exe = build_module.TVMExecutable(lib, parse_target("llvm"), [sig], [sig])
    x = _aligned(np.random.default_rng(8).standard_normal((4, 8)).astype(np.float32))
    np.testing.assert_allclose(exe.single(x), np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(exe(x)[0], np.exp(x), rtol=1e-6)


def test_torch_inputs_misaligned_and_strided(matmul_exe):
    torch = pytest.importorskip("torch")
    program, exe = matmul_exe
    x, w = random_inputs(program, seed=2)
    want = reference(program, [x, w])
    assert_close(exe(torch.from_numpy(x.copy()), torch.from_numpy(w.copy())), want, "float32")
    tm = torch.from_numpy(_misaligned(x))
    assert tm.data_ptr() % 64 != 0
    assert_close(exe(tm, torch.from_numpy(w)), want, "float32")
    tt = torch.from_numpy(np.ascontiguousarray(x.T)).t()
    assert not tt.is_contiguous()
    assert_close(exe(tt, torch.from_numpy(w).requires_grad_()), want, "float32")


def test_jax_inputs(matmul_exe):
    jnp = pytest.importorskip("jax.numpy")
    program, exe = matmul_exe
    x, w = random_inputs(program, seed=4)
    assert_close(exe(jnp.asarray(x), jnp.asarray(w)), reference(program, [x, w]), "float32")


def test_outputs_are_numpy_arrays_and_kernels_can_be_timed(matmul_exe):
    program, exe = matmul_exe
    inputs = random_inputs(program)
    out = exe(*inputs)
    assert isinstance(out, list) and all(isinstance(o, np.ndarray) for o in out)
    assert 0 < exe.time_ms(*inputs, number=2, repeat=2) < 1e3


def test_wrong_inputs_give_clear_errors(matmul_exe):
    program, exe = matmul_exe
    x, w = random_inputs(program)
    with pytest.raises(BackendError, match=r"input 0 should be float32\{M: 128, K: 96\}.*got shape \(96, 128\)"):
        exe(x.T.copy(), w)
    with pytest.raises(BackendError, match=r"got shape \(96, 64\) float64.*astype\('float32'\)"):
        exe(x, w.astype(np.float64))
    with pytest.raises(BackendError, match="takes 2 inputs"):
        exe(x)


# ---------------------------------------------------------------------------------------------
# targets and threads
# ---------------------------------------------------------------------------------------------

def test_llvm_target_uses_the_host_cpu_and_honours_options():
    host = backend.tvm_target(parse_target("llvm"))
    assert str(host.attrs["mcpu"]) == tvm.target.codegen.llvm_get_system_cpu()
    chosen = backend.tvm_target(parse_target("llvm -mcpu=skylake-avx512 -num-cores=3"))
    assert str(chosen.attrs["mcpu"]) == "skylake-avx512" and int(chosen.attrs["num-cores"]) == 3
    with pytest.raises(BackendError, match="cannot use target"):
        backend.tvm_target(parse_target("llvm -no-such-option=1"))


def test_cuda_target_arch():
    t = backend.tvm_target(parse_target("cuda -arch=sm_90"))
    assert t.kind.name == "cuda" and str(t.attrs["arch"]) == "sm_90" and t.host.kind.name == "llvm"
    assert backend.serves(parse_target("cuda")) and backend.serves(parse_target("llvm"))
    assert not backend.serves(parse_target("tpu"))


_THREADS_PROBE = """
import json, os, sys
import numpy as np
import nir, tvm
from nir.target import parse_target
p = nir.trace(lambda x: (x * 2.0).sum("C"), nir.spec(N=64, C=64)).program
nir.backends.get("tvm").build(p, parse_target(sys.argv[1]))(np.ones((64, 64), np.float32))
print(json.dumps({"env": os.environ["TVM_NUM_THREADS"], "threads": tvm.runtime.num_threads()}))
"""


def _threads_in_a_fresh_process(target: str, tvm_num_threads: str | None) -> dict:
    """TVM's thread count after one run, in a process whose environment this test sets (TVM reads it once)."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    if tvm_num_threads is not None:
        env["TVM_NUM_THREADS"] = tvm_num_threads
    run = subprocess.run([sys.executable, "-c", _THREADS_PROBE, target], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_tvm_uses_every_core_unless_told_otherwise():
    cores = str(build_module._cores())
    assert _threads_in_a_fresh_process("llvm", None) == {"env": cores, "threads": int(cores)}


def test_num_cores_option_sets_the_thread_count():
    assert _threads_in_a_fresh_process("llvm -num-cores=1", None)["threads"] == 1


def test_tvm_num_threads_set_by_the_user_wins_over_num_cores():
    assert _threads_in_a_fresh_process(f"llvm -num-cores={build_module._cores()}", "1") == {"env": "1", "threads": 1}


# ---------------------------------------------------------------------------------------------
# outputs' memory between calls
# ---------------------------------------------------------------------------------------------

def _doubled(rows: int) -> Program:
    return one("mul", [T({"N": rows, "D": 256}), T({"N": rows, "D": 256})])


def test_a_big_output_dropped_by_the_caller_is_reused_by_the_next_call():
    """The VM's last return value no longer holds a 1 MiB output: the next call gets the same memory
    (otherwise two buffers take turns, twice the cache footprint)."""
    program = _doubled(1024)
    inputs = random_inputs(program, seed=3)
    exe = backend.build(program, parse_target("llvm"))
    first = exe(*inputs)[0]
    address = first.ctypes.data
    del first
    assert exe(*inputs)[0].ctypes.data == address


def test_a_big_output_the_caller_keeps_is_not_overwritten_by_the_next_call():
    program = _doubled(1024)
    inputs = random_inputs(program, seed=4)
    exe = backend.build(program, parse_target("llvm"))
    first = exe(*inputs)[0]
    kept = first.copy()
    second = exe(*[x * 2 for x in inputs])[0]
    np.testing.assert_array_equal(first, kept)
    assert second.ctypes.data != first.ctypes.data


def test_an_artifact_without_the_release_function_still_runs(monkeypatch, tmp_path: pathlib.Path):
    """Artifacts exported before `RELEASE` existed lack it: calls go on without it."""
    monkeypatch.setattr(build_module, "_with_release", lambda mod: mod)
    program = _doubled(1024)
    inputs = random_inputs(program, seed=5)
    exe = backend.build(program, parse_target("llvm"))
    for _ in range(2):
        assert_close(exe(*inputs), reference(program, inputs), "float32")
    assert exe._release is False


# ---------------------------------------------------------------------------------------------
# export / load, CUDA
# ---------------------------------------------------------------------------------------------

def test_export_load_round_trip(tmp_path: pathlib.Path):
    program = _convnet()
    inputs = random_inputs(program, seed=5)
    exe = backend.build(program, parse_target("llvm"))
    exe.export(tmp_path)
    manifest = read_manifest(tmp_path)["signatures"][0]
    assert manifest["backend"] == "tvm" and manifest["files"] == {"library": "sig0/model.so", "program": "sig0/program.nir"}
    assert (tmp_path / "sig0" / "model.so").is_file() and manifest["tvm_version"] == tvm.__version__
    loaded = backend.load(tmp_path, manifest)
    assert loaded.program is None  # the runtime alone: no program, no lowering
    for got, want in zip(loaded(*inputs), exe(*inputs)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(BackendError, match="not kept in a loaded artifact"):
        loaded.backend_ir()


def test_loading_an_artifact_built_for_another_cpu_warns(tmp_path: pathlib.Path):
    program = SCHEDULED["softmax"][0]
    exe = backend.build(program, parse_target("llvm -mcpu=x86-64"))  # generic code runs on any x86-64
    exe.export(tmp_path)
    with pytest.warns(RuntimeWarning, match="compiled for CPU x86-64"):
        loaded = backend.load(tmp_path, read_manifest(tmp_path)["signatures"][0])
    inputs = random_inputs(program)
    assert_close(loaded(*inputs), reference(program, inputs), "float32")


@pytest.fixture(scope="module")
def cuda_export(tmp_path_factory):
    """A matmul + softmax built for cuda and exported (built here; no GPU needed)."""
    b = Builder()
    x, w = b.input(T({"M": 64, "K": 32})), b.input(T({"K": 32, "N": 48}))
    program = b.build([b.add("softmax", [b.add("contract", [x, w], over=("K",))], dim="N")])
    exe = backend.build(program, parse_target("cuda -arch=sm_80"))
    path = tmp_path_factory.mktemp("cuda")
    exe.export(path)
    return path, read_manifest(path)["signatures"][0], exe, program


def test_cuda_artifacts_contain_kernels(cuda_export):
    path, manifest, exe, _ = cuda_export
    assert manifest["target"] == "cuda -arch=sm_80"
    assert "__global__" in (path / manifest["files"]["cuda_source"]).read_text()
    if "ptx" in manifest["files"]:
        ptx = (path / manifest["files"]["ptx"]).read_text()
        assert ".entry" in ptx and ".target sm_80" in ptx
    else:  # nvcc is missing or failed: the manifest says why
        assert "nvcc" in manifest["ptx_note"]
    assert "blockIdx" in exe.backend_ir("tir") and "dlight" in exe.schedules.values()


@pytest.mark.skipif(tvm.cuda().exist, reason="this machine has a CUDA device")
def test_calling_cuda_code_without_a_gpu_raises(cuda_export):
    path, manifest, exe, program = cuda_export
    with pytest.raises(BackendError, match="no CUDA device"):
        exe(*random_inputs(program))
    with pytest.raises(BackendError, match="no CUDA device"):
        backend.load(path, manifest)


@pytest.mark.parametrize("n,c,o,h,w,nhwc", [(1, 64, 40, 14, 14, False), (2, 37, 20, 5, 7, False),
                                              (1, 48, 33, 7, 7, True), (3, 5, 24, 6, 9, True)])
def test_pointwise_convs_are_scheduled_matmuls_over_the_pixels(n, c, o, h, w, nhwc):
    """A 1x1 conv (stride 1, no padding) is one matmul of the weights and the H*W pixels, with ragged
    sizes (pixels, channels and filters that no tile divides), batches, NCHW and NHWC."""
    x, k = ({"N": n, "H": h, "W": w, "C": c}, {"H": 1, "W": 1, "C": c, "O": o}) if nhwc else \
        ({"N": n, "C": c, "H": h, "W": w}, {"O": o, "C": c, "H": 1, "W": 1})
    program = one("conv2d", [T(x), T(k)], stride=(1, 1), padding=(0, 0), groups=1, **CONV)
    exe = check(program)
    assert "matmul" in exe.backend_ir("relax") and "conv2d" not in exe.backend_ir("relax")
    assert "contraction" in exe.schedules.values() and None not in exe.schedules.values(), exe.schedules


def _block(n: int, c: int, o: int, h: int, w: int, extra: dict[str, int]) -> Program:
    """relu(conv1x1(x) * scale{O} + shift{extra}), a ResNet block's tail after a 1x1 conv."""
    b = Builder()
    x, k = b.input(T({"N": n, "C": c, "H": h, "W": w})), b.input(T({"O": o, "C": c, "H": 1, "W": 1}))
    scale, shift = b.input(T({"O": o})), b.input(T(extra))
    y = b.add("conv2d", [x, k], stride=(1, 1), padding=(0, 0), groups=1, **CONV)
    return b.build([b.add("relu", [b.add("add", [b.add("mul", [y, scale]), shift])])])


@pytest.mark.parametrize("n,c,o,h,w", [(1, 32, 48, 14, 14), (2, 19, 40, 7, 5)])
def test_elementwise_ops_after_a_pointwise_conv_run_in_its_kernel(n, c, o, h, w):
    """The per-channel affine, a residual of the output's shape and the relu are computed on the
    matmul's (N, O, H*W) shape, in its kernel (`SinkReshape`), with the reference's results."""
    program = _block(n, c, o, h, w, {"N": n, "O": o, "H": h, "W": w})
    exe = check(program)
    assert any(k.startswith("fused_matmul") and k.endswith("_where") for k in exe.schedules), exe.schedules
    assert not any("reshape" in k and rule != "view" for k, rule in exe.schedules.items()), exe.schedules


def test_an_operand_along_part_of_the_merged_pixels_stays_after_the_reshape():
    """A shift along W alone (of the pixels H*W, which the matmul merged) cannot be computed on the
    matmul's shape: the reshape stays before it, with the reference's results."""
    program = _block(1, 16, 24, 6, 10, {"W": 10})
    exe = check(program)
    assert any("reshape" in k and k.endswith("_where") for k in exe.schedules), exe.schedules


def test_a_bias_after_a_batched_matmul_runs_in_its_kernel():
    """contract of {B, T, D} with {D, F} is a (B*T, D) matmul reshaped to {B, T, F}: the bias{F} is added
    on the matmul's shape."""
    b = Builder()
    x, wt, bias = b.input(T({"B": 2, "T": 37, "D": 24})), b.input(T({"D": 24, "F": 40})), b.input(T({"F": 40}))
    program = b.build([b.add("add", [b.add("contract", [x, wt], over=("D",)), bias])])
    exe = check(program)
    assert any(k.startswith("fused_matmul") and "add" in k for k in exe.schedules), exe.schedules


@pytest.mark.parametrize("stride,nhwc", [((2, 2), False), ((3, 2), False), ((2, 2), True)])
def test_strided_pointwise_convs_slice_the_pixels_then_multiply(stride, nhwc):
    """A strided 1x1 conv (ragged: 15x13 pixels at stride 2 or 3) is a strided slice of the image then
    one matmul, with the reference's results."""
    x, k = ({"N": 2, "H": 15, "W": 13, "C": 24}, {"H": 1, "W": 1, "C": 24, "O": 40}) if nhwc else \
        ({"N": 2, "C": 24, "H": 15, "W": 13}, {"O": 40, "C": 24, "H": 1, "W": 1})
    program = one("conv2d", [T(x), T(k)], stride=stride, padding=(0, 0), groups=1, **CONV)
    exe = check(program)
    assert "matmul" in exe.backend_ir("relax") and "conv2d" not in exe.backend_ir("relax")


@pytest.mark.parametrize("n,c,o,hw,k,stride,padding,dilation", [
    (1, 32, 40, 7, 3, 1, 1, 1), (2, 5, 24, 14, 3, 2, 1, 1), (1, 8, 16, 8, 5, 1, 2, 1), (1, 6, 20, 10, 3, 1, 1, 2),
    (3, 7, 9, 8, 2, 1, 0, 1)])
def test_convs_with_small_outputs_are_im2col_matmuls(n, c, o, hw, k, stride, padding, dilation):
    """Output images of at most 64 pixels (7x7, ragged, strided, dilated, batched, even kernels) are
    a matmul of the weights and the image's columns, with the reference's results."""
    program = one("conv2d", [T({"N": n, "C": c, "H": hw, "W": hw}), T({"O": o, "C": c, "H": k, "W": k})],
                  stride=(stride, stride), padding=(padding, padding), groups=1, channels="C", out_channels="O",
                  spatial=("H", "W"), dilation=(dilation, dilation))
    exe = check(program)
    assert "matmul" in exe.backend_ir("relax") and "conv2d" not in exe.backend_ir("relax")
    assert None not in exe.schedules.values(), exe.schedules


def test_convs_with_large_kernels_and_small_outputs_stay_convolutions():
    """A weight gradient's shape (a 14x14 image, a 10x10 kernel: 5x5 outputs) is no im2col: one slice per
    tap, 100 of them, cost 14x the convolution in lenet5_train."""
    program = one("conv2d", [T({"N": 2, "C": 6, "H": 14, "W": 14}), T({"O": 16, "C": 6, "H": 10, "W": 10})],
                  stride=(1, 1), padding=(0, 0), groups=1, **CONV)
    assert "conv2d" in check(program).backend_ir("relax")


def test_padded_1x1_convs_stay_convolutions():
    """Only 1x1 convs without padding are matmuls over the pixels."""
    program = one("conv2d", [T({"N": 1, "C": 8, "H": 9, "W": 9}), T({"O": 16, "C": 8, "H": 1, "W": 1})],
                  stride=(1, 1), padding=(1, 1), groups=1, **CONV)
    assert "conv2d" in check(program).backend_ir("relax")


@pytest.mark.parametrize("width,stride", [(28, 1), (14, 2), (7, 1)])
def test_nchw_conv_output_width_is_padded_to_whole_vectors(width, stride):
    """28 -> 32 columns (14 -> 16 and 7 -> 8 likewise), computed then sliced: same results. (12 output
    channels, which no vector divides: TVM's conv2d, not `_conv2d_by_channel`.)"""
    program = one("conv2d", [T({"N": 2, "C": 8, "H": 12, "W": width * stride}), T({"O": 12, "C": 8, "H": 3, "W": 3})],
                  stride=(stride, stride), padding=(1, 1), groups=1, **CONV)
    exe = check(program)
    lanes = schedule_module.lanes(backend.tvm_target(parse_target("llvm")), "float32")
    padded = -(-width // lanes) * lanes if width >= lanes else -(-width // (lanes // 2)) * (lanes // 2)
    assert f"T.int64({padded})" in exe.backend_ir("tir") and "strided_slice" in exe.backend_ir("tir")
    assert "contraction" in exe.schedules.values()


@pytest.mark.parametrize("shape", [
    dict(C=8, O=32, H=12, W=28, k=3, stride=1, pad=1, dilation=1, N=2),
    dict(C=5, O=16, H=17, W=23, k=3, stride=2, pad=1, dilation=1, N=1),
    dict(C=3, O=32, H=30, W=30, k=7, stride=2, pad=3, dilation=1, N=1),
    dict(C=6, O=48, H=15, W=15, k=3, stride=1, pad=2, dilation=2, N=3),
    dict(C=4, O=16, H=9, W=10, k=2, stride=1, pad=0, dilation=1, N=1),
], ids=["3x3-batch2", "stride2-odd-sizes", "7x7-stem", "dilated", "2x2-unpadded"])
def test_nchw_convs_run_along_blocks_of_output_channels(shape):
    """Output channels that vectors divide: the convolution is `_conv2d_by_channel` (weights packed in
    channel blocks, the NCHW output written from the blocked one), scheduled by the contraction rule,
    and matches the reference for strides, dilations, odd sizes and kernels."""
    d = shape
    program = one("conv2d", [T({"N": d["N"], "C": d["C"], "H": d["H"], "W": d["W"]}),
                             T({"O": d["O"], "C": d["C"], "H": d["k"], "W": d["k"]})],
                  stride=(d["stride"],) * 2, padding=(d["pad"],) * 2, groups=1, channels="C", out_channels="O",
                  spatial=("H", "W"), dilation=(d["dilation"],) * 2)
    exe = check(program)
    tir = exe.backend_ir("tir")
    assert "conv2d_by_channel" in tir and "strided_slice" not in tir
    assert "contraction" in exe.schedules.values(), exe.schedules


def test_nchw_conv_by_channel_vectorizes_the_channel_block():
    """The innermost loop of the blocked convolution is a vector of output channels, inside a register
    tile of output columns."""
    program = one("conv2d", [T({"N": 1, "C": 16, "H": 14, "W": 14}), T({"O": 64, "C": 16, "H": 3, "W": 3})],
                  stride=(1, 1), padding=(1, 1), groups=1, **CONV)
    tir = check(program).backend_ir("tir")
    update = tir[tir.index('T.sblock("conv2d_by_channel_update")') - 400:tir.index('T.sblock("conv2d_by_channel_update")')]
    assert "T.vectorized" in update and "T.unroll" in update


@pytest.mark.parametrize("kind", ["grouped", "bfloat16", "weight-gradient-sized kernel"])
def test_convs_the_channel_blocks_do_not_serve_keep_tvms_conv2d(kind):
    """Grouped (depthwise) convolutions, 16-bit floats and kernels of more than 49 taps stay TVM's conv2d."""
    dtype = "bfloat16" if kind == "bfloat16" else "float32"
    groups, c = (4, 4) if kind == "grouped" else (1, 8)
    k, size, pad = (10, 14, 0) if kind.startswith("weight") else (3, 12, 1)
    program = one("conv2d", [T({"N": 1, "C": 8, "H": size, "W": size}, dtype),
                             T({"O": 32, "C": 8 // groups if kind == "grouped" else c, "H": k, "W": k}, dtype)],
                  stride=(1, 1), padding=(pad, pad), groups=groups, **CONV)
    exe = check(program, dtype=dtype)
    assert "conv2d_by_channel" not in exe.backend_ir("tir")


def _by_constant(rows: dict[str, int], k: int, cols: dict[str, int], seed: int = 0) -> Program:
    """``x[rows..., K] @ w[K, cols...]`` with ``w`` a constant of the program (as `nir.from_torch` bakes weights)."""
    b = Builder()
    x = b.input(T({**rows, "K": k}))
    w = np.random.default_rng(seed).standard_normal((k, *cols.values())).astype(np.float32)
    c = b.add("constant", [], data=w.tobytes(), dims=(("K", k), *cols.items()), dtype="float32")
    return b.build([b.add("contract", [x, c], over=("K",))])


@pytest.mark.parametrize("rows,k,cols", [({"M": 40}, 96, {"N": 128}), ({"B": 2, "T": 37}, 300, {"H": 4, "D": 32}),
                                         ({"M": 16}, 64, {"N": 64})],
                         ids=["matmul", "unflattened-rows-and-columns", "smallest"])
def test_matmuls_by_constants_stream_packed_panels(rows, k, cols):
    """A constant right operand with whole 64-column panels is packed ``[N/64, K, 64]`` when built (no
    permute at run time), the product written in the result's own shape, with the reference's results."""
    exe = check(_by_constant(rows, k, cols))
    tir = exe.backend_ir("tir")
    assert "matmul_panels" in tir and not re.search(r"def \w*transpose", tir)  # (folded when built)
    assert "contraction" in exe.schedules.values(), exe.schedules


@pytest.mark.parametrize("kind", ["columns-not-whole-panels", "few-rows", "operand-not-constant"])
def test_matmuls_the_panels_do_not_serve_stay_relax_matmuls(kind):
    """Columns no panel divides, fewer than 16 rows, or a right operand computed at run time: R.matmul."""
    if kind == "operand-not-constant":
        program = one("contract", [T({"M": 40, "K": 96}), T({"K": 96, "N": 128})], over=("K",))
    else:
        program = _by_constant({"M": 40 if kind != "few-rows" else 8}, 96, {"N": 100 if kind != "few-rows" else 128})
    exe = check(program)
    assert "matmul_panels" not in exe.backend_ir("tir") and "R.matmul" in exe.backend_ir("relax")


@pytest.mark.parametrize("cpu,lanes", [("haswell", 8), ("znver3", 8), ("skylake-avx512", 16), ("x86-64", 4)])
def test_vector_lanes_follow_the_target_cpu(cpu, lanes):
    """TVM 0.27's llvm_get_vector_width answers 512 bits for every x86 CPU; the schedules read the features."""
    assert schedule_module.lanes(backend.tvm_target(parse_target(f"llvm -mcpu={cpu}")), "float32") == lanes


@pytest.mark.parametrize("cpu", ["haswell", "skylake-avx512"])
def test_register_tiles_fit_the_vector_registers(cpu):
    """Accumulators, one row's loaded vectors and a broadcast: within 16 (AVX2) or 32 (AVX-512) registers."""
    target = backend.tvm_target(parse_target(f"llvm -mcpu={cpu}"))
    lanes, registers = schedule_module.lanes(target, "float32"), schedule_module._registers(target)
    accumulators = schedule_module._accumulators(target)
    for n in (8, 16, 24, 32, 40, 64, 100, 128, 197, 256, 512, 768, 3072):
        for m in (2, 3, 7, 12, 37, 96, 128, 197, 1024):
            for can_pad in (True, False):
                tile = schedule_module._register_tile(n, m, lanes, accumulators, can_pad, registers)
                if tile is not None:
                    nv, _, rows, _, _ = tile
                    assert rows * nv + nv + 1 <= registers, (n, m, can_pad, tile)


@pytest.mark.parametrize("n,lanes", [(196, 16), (49, 16), (197, 16), (100, 8)])
def test_ragged_columns_take_tiles_of_several_vectors(n, lanes):
    """Columns no vector divides are padded for 2-4 vectors per row (not 1) when that costs little
    more than padding to whole vectors."""
    nv, vec, rows, pad_n, _ = schedule_module._register_tile(n, 256, lanes, 24 if lanes == 16 else 12, True,
                                                             32 if lanes == 16 else 16)
    assert nv >= 2 and pad_n % (nv * vec) == 0 and pad_n <= -(-n // lanes) * lanes * 1.15


@pytest.mark.parametrize("m,k,n", [(40, 300, 49), (24, 520, 196), (33, 64, 100)])
def test_contractions_with_widened_ragged_tiles_match_the_reference(m, k, n):
    """Padded columns (49 -> 64, 196 -> 224, 100 -> 128) and K not a multiple of the block."""
    program = one("contract", [T({"M": m, "K": k}), T({"K": k, "N": n})], over=("K",))
    exe = check(program)
    assert "contraction" in exe.schedules.values(), exe.schedules


needs_avx2 = pytest.mark.skipif(
    not tvm.target.codegen.target_has_features("avx2", backend.tvm_target(parse_target("llvm"))),
    reason="runs AVX2 code")


@needs_avx2
@pytest.mark.parametrize("m,k,n", [(64, 24, 256), (1024, 16, 128), (96, 40, 64), (37, 16, 48)])
def test_avx2_contractions_match_the_reference(m, k, n):
    """AVX2's register tiles (4 rows x 3 vectors with the columns padded, 6 x 2 with the rows padded,
    6 x 2, 2 x 3 with 37 rows padded to 38) give the reference's results."""
    program = one("contract", [T({"M": m, "K": k}), T({"K": k, "N": n})], over=("K",))
    inputs = random_inputs(program, seed=8)
    exe = backend.build(program, parse_target("llvm -mcpu=haswell"))
    assert_close(exe(*inputs), reference(program, inputs), "float32")
    assert "contraction" in exe.schedules.values() and None not in exe.schedules.values(), exe.schedules


@needs_avx2
@pytest.mark.parametrize("name", ["softmax", "layer_norm-chw", "conv-nchw", "conv-groups", "batched-prime",
                                  "matmul-prime-rows"])
def test_avx2_builds_of_the_default_schedules_match_the_reference(name):
    """8-lane vectors in every rule (row reductions, convolution widths padded to whole vectors, tiles)."""
    program, rule = SCHEDULED[name]
    inputs = random_inputs(program, seed=9)
    exe = backend.build(program, parse_target("llvm -mcpu=haswell"))
    assert_close(exe(*inputs), reference(program, inputs), "float32")
    assert rule in exe.schedules.values(), exe.schedules


def test_elementwise_rows_no_vector_divides_are_vectorized_across_rows():
    """Rows of 28 (no multiple of 8 or 16 floats; 28 x 28 is 49 vectors of 16): the row loops are fused
    and vectorized, and the result is the reference's."""
    program = one("relu", [T({"N": 64, "C": 6, "H": 28, "W": 28})])
    exe = check(program)
    assert "T.vectorized" in exe.backend_ir("tir"), exe.backend_ir("tir")


def test_elementwise_rows_with_a_broadcast_operand_are_not_fused_into_a_gather():
    """A {W} operand read across fused rows would be a gather: those loops stay apart (and correct)."""
    b = Builder()
    x, w = b.input(T({"N": 64, "H": 28, "W": 28})), b.input(T({"W": 28}))
    program = b.build([b.add("add", [x, b.add("align", [w], dims=(("N", 64), ("H", 28), ("W", 28)))])])
    exe = check(program)
    assert not re.search(r"ax\d_ax\d_fused_1 in T.vectorized", exe.backend_ir("tir")), exe.backend_ir("tir")


# interior padding (the spread of a strided window's gradient) with an edge: out[h] = x[(h - 1) // 2] where
# 1 <= h and h - 1 is even; 4 x 6 x 28 x 28 outputs, enough for a parallel loop
_SPREAD = one("pad", [T({"N": 4, "C": 6, "H": 14, "W": 14})], pads=(("H", 1, 0, 1), ("W", 0, 1, 1)), value=0.0)


# W = 14 + 13 + 2 = 29: no split by 2 (`blocks._strided`) takes h out of the fused loop; with the loops
# fused past h and a floor-division index (the pad reads by a truncating one since), TVM 0.27 computed a
# wrong answer here
_SPREAD_ODD = one("pad", [T({"N": 4, "C": 6, "H": 13, "W": 14})], pads=(("H", 1, 0, 1), ("W", 1, 1, 1)), value=0.0)


@pytest.mark.parametrize("program", [_SPREAD, _SPREAD_ODD], ids=["even", "odd"])
def test_reads_by_a_divided_index_match_the_reference_in_parallel_loops(program):
    """TVM 0.27 flattens ``x[n, c, (h - 1) // 2, ...]`` wrongly when h comes out of a fused loop (a whole
    plane off): the loops are not fused past h, and the result is the reference's."""
    check(program)


def test_an_interior_pad_read_through_dims_a_reshape_merged_matches_the_reference():
    """Found by `nir fuzz`: a contraction over (F, E) after an interior pad of E flattens F and E into one
    loop; with a floor-division index TVM 0.27 read ``x[(v + 2) // 3 - 11]`` for ``x[(v + 2) // 3 - 1]``
    (10 rows off), so the pad reads by a truncating division."""
    b = Builder()
    x, w = b.input(T({"F": 13, "E": 10})), b.input(T({"E": 30, "B": 3, "F": 13}))
    spread = b.add("pad", [x], pads=(("E", 1, 1, 2),), value=-1.5)
    check(b.build([b.add("contract", [spread, w], over=("F", "E"))]))


def test_loops_read_by_half_their_index_are_split_by_two_and_unrolled():
    """``h // 2`` and ``h % 2`` of h = 2 * ho + a with a unrolled: constant offsets, no conditions left."""
    tir = check(_SPREAD).backend_ir("tir")
    assert len(re.findall(r"in T.unroll\(T.int64\(2\)\)", tir)) == 2, tir
    assert "T.parallel(T.int64(24))" in tir, tir  # N x C, not fused with H


def _tiled_max_pool_gradient() -> Program:
    """LeNet's first max-pool gradient through a relu (2x2 windows tiling 8 x 6 x 28 x 28)."""
    def loss(x, ct):
        return (nir.max_pool2d(x.relu(), 2) * ct).sum()
    return nir.trace(nir.grad(loss), nir.spec(N=8, C=6, H=28, W=28), nir.spec(N=8, C=6, H=14, W=14)).program


def test_a_select_read_by_half_its_index_is_vectorized_across_the_split_loop():
    """A max-pool gradient reads its window at ``h // 2, w // 2``: the loop over ``w // 2`` is vectorized
    inside the unrolled ``w % 2`` (a scalar loop's selects were branches, mispredicted on random data)."""
    exe = check(_tiled_max_pool_gradient())
    kernel = _prim_func_text(exe.backend_ir("tir"), "equal")  # (is this window's maximum here?)
    assert "T.vectorized(T.int64(14))" in kernel and "T.unroll(T.int64(2))" in kernel, kernel


def test_conv_bias_and_relu_run_as_one_kernel():
    """relu is ``where(x < 0, 0, x)`` (NaN stays NaN), computed with the 0 as a literal (`scalars`): its
    select reads x at the output's own index, batch of 1 included, so TVM fuses it into the convolution."""
    program = nir.trace(lambda x, w, b: nir.conv2d(x, w, b, padding=1).relu(), nir.spec(N=1, C=8, H=14, W=14),
                        nir.spec(O=8, C=8, H=3, W=3), nir.spec(O=8)).program
    kernels = [k for k, rule in check(program).schedules.items() if rule != "view"]
    assert len(kernels) == 1 and "conv2d" in kernels[0] and "where" in kernels[0], kernels


def test_a_contraction_epilogue_of_several_blocks_runs_inside_its_parallel_loop():
    """A depthwise conv with batch norm's multiply-add and hardswish (MobileNetV3's block): the epilogue
    keeps several blocks (the normalized value is read twice); each runs inside the convolution's parallel
    loop on the tile just computed, so the kernel is two parallel loop nests (padding, convolution) where
    the epilogue used to be serial loops of its own."""
    def block(x, w, scale, shift):
        y = nir.conv2d(x, w, padding=2, groups=48) * scale + shift
        return y * nir.clamp(y + 3.0, 0.0, 6.0) / 6.0
    program = nir.trace(block, nir.spec(N=8, C=48, H=14, W=14), nir.spec(O=48, C=1, H=5, W=5),
                        nir.spec(O=48, H=1, W=1), nir.spec(O=48, H=1, W=1)).program
    exe = check(program)
    kernel = _prim_func_text(exe.backend_ir("tir"), "conv2d")
    nests = re.findall(r"\n {8}for [^\n]*", kernel)  # the loop nests at the top of the function
    assert len(nests) == 2 and all("T.parallel" in n for n in nests), nests
    assert kernel.count("T.vectorized") >= 4, kernel  # the convolution's init and update, epilogue blocks


def test_an_epilogue_block_that_reads_no_tile_runs_apart_from_the_contraction():
    """``(x @ w) * exp(z)`` (a GELU gradient's shape): the exp reads no element of the product, so it is
    not computed inside the matmul's parallel loop (where every iteration computed all of it, racing the
    others: a wrong answer at 2 threads), and the result is the reference's."""
    b = Builder()
    x, w, z = b.input(T({"M": 256, "K": 64})), b.input(T({"K": 64, "N": 128})), b.input(T({"M": 256, "N": 128}))
    program = b.build([b.add("mul", [b.add("contract", [x, w], over=("K",)), b.add("exp", [z])])])
    kernel = _prim_func_text(check(program).backend_ir("tir"), "matmul")
    nests = re.split(r"\n {8}for ", kernel)[1:]  # the loop nests at the top of the function
    assert not any("matmul_update" in n and "exp" in n for n in nests), kernel


def test_a_where_with_a_scalar_constant_branch_holds_it_as_a_literal():
    """``where(c, x, 0.0)`` reads no 0-d buffer for the 0.0 (a select between two loads became branches)."""
    b = Builder()
    c, x = b.input(T({"N": 16, "D": 24}, "bool")), b.input(T({"N": 16, "D": 24}))
    zero = b.add("full", [], value=0.0, dims=(), dtype="float32")
    program = b.build([b.add("where", [c, x, zero]), b.add("where", [c, zero, x])])
    tir = check(program).backend_ir("tir")
    assert "T.Buffer((), " not in tir and "T.float32(0.0)" in tir, tir


def test_interior_pads_read_nothing_but_their_input():
    """The filler between elements is the pad's value in the kernel, not a constant tensor of the output's
    size (which TVM's FoldConstant made of a broadcast fill): the kernel reads one buffer, writes one."""
    tir = check(_SPREAD).backend_ir("tir")
    assert len(re.findall(r"T.Buffer\(\(T.int64", tir)) == 2, tir


def _max_pool_gradient_then(reduce, n: int) -> Program:
    """A max-pool gradient as the general rule builds it (2x2 windows over n x 6 x 28 x 28: the sum of one
    interior-padded tensor per window position, which reads the pooled tensors at ``(h - 1) // 2`` where
    ``1 <= h``), through a relu's mask, then ``reduce``, which TVM fuses into the gradient's kernel.
    (nir's own rule for windows that tile the input reads them at ``h // 2`` only, and pads read by a
    truncating division since: with a floor division and the loops fused past h, these were wrong.)"""
    def spread(x, ct, first):
        dx = None
        for j, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            hit = ad.emit("eq", first, ad.scalar(j, "int64"))
            part = ad.pad(ad.mask(hit, ct), {"H": (a, 1 - a, 1), "W": (b, 1 - b, 1)})
            dx = part if dx is None else ad.add(dx, part)
        return reduce(ad.mask(ad.emit("gt", x, ad.scalar(0.0, "float32")), dx))
    pooled = {"N": n, "C": 6, "H": 14, "W": 14}
    return nir.trace(spread, nir.spec(N=n, C=6, H=28, W=28), nir.spec(**pooled),
                     nir.spec(**pooled, dtype="int64")).program


@pytest.mark.parametrize("n", [1, 4])
def test_row_reductions_of_reads_by_a_divided_index_match_the_reference(n):
    """The row rule runs the gradient per row under the row loops: they are not fused past h (see
    `test_reads_by_a_divided_index_match_the_reference_in_parallel_loops`)."""
    exe = check(_max_pool_gradient_then(lambda g: g.sum("W"), n))
    assert "row_reduction" in exe.schedules.values(), exe.schedules


def test_column_reductions_of_reads_by_a_divided_index_match_the_reference():
    """The column rule reads the gradient inlined into the sum over N: its parallel loops are not fused
    past h."""
    exe = check(_max_pool_gradient_then(lambda g: g.sum("N"), 4))
    assert "column_reduction" in exe.schedules.values(), exe.schedules


def _row_op(prim: str, rows: int, d: int) -> Program:
    if prim in ("softmax", "log_softmax"):
        return one(prim, [T({"B": rows, "D": d})], dim="D")
    return one("layer_norm", [T({"B": rows, "D": d})], dims=("D",), eps=1e-5)


# rows no whole vector divides: 1000 (40 = 2.5 AVX-512 vectors), 100 (20), 12 (one part-vector step), 197 (prime:
# scalar); 1024 (4 whole vectors); 24 rows of 1000 or 1024 run the row loop in parallel, the others below the
# parallel threshold
@pytest.mark.parametrize("d", [1000, 1024, 100, 12, 197])
@pytest.mark.parametrize("prim", ["softmax", "log_softmax", "layer_norm"])
def test_row_reductions_over_rows_no_vector_divides_match_the_reference(prim, d):
    exe = check(_row_op(prim, 24, d))
    assert "row_reduction" in exe.schedules.values(), exe.schedules


@pytest.mark.parametrize("prim", ["softmax", "layer_norm"])
def test_row_reductions_over_rows_of_whole_quarter_vectors_are_vectorized(prim):
    """Rows of 1000 floats (no 16- or 8-float vector multiple) run as vector steps of 40, not scalar chains."""
    exe = backend.build(_row_op(prim, 24, 1000), parse_target("llvm"))
    assert "T.vectorized" in exe.backend_ir("tir")


def _prim_func_text(tir: str, name: str) -> str:
    """The TVMScript of the one PrimFunc of a module's text whose name contains ``name``."""
    funcs = tir.split("@T.prim_func")
    return next(f for f in funcs[1:] if name in re.search(r"def (\w+)\(", f).group(1))


def test_per_row_statistics_run_as_passes_and_softmax_exponentials_row_by_row():
    """layer_norm's sum, mean, sum of squares and output each run as a parallel loop over the rows of
    their own; softmax's max too, but its exponentials, sum and output share one loop, a row at a time
    (see `row_reduction`)."""
    norm = backend.build(_row_op("layer_norm", 24, 1024), parse_target("llvm"))
    assert _prim_func_text(norm.backend_ir("tir"), "layer_norm").count("T.parallel") == 4
    soft = backend.build(_row_op("softmax", 24, 1024), parse_target("llvm"))
    assert _prim_func_text(soft.backend_ir("tir"), "softmax").count("T.parallel") == 2


@pytest.mark.parametrize("prim,buffer", [("softmax", "softmax_sum"), ("softmax", "softmax_max"),
                                         ("layer_norm", "layer_norm_var_sum")])
def test_row_reductions_fold_their_vector_partials_to_four_before_the_scalar_sum(prim, buffer):
    """A row of 1024 reduces into several vectors of partial results, folded in vector steps down to
    4 values (`_fold_lanes`; AVX-512: 64, 16, 4; AVX2: 32, 8, 4), not summed as one scalar chain."""
    tir = backend.build(_row_op(prim, 24, 1024), parse_target("llvm")).backend_ir("tir")
    assert f"{buffer}_rf_2 = T.sblock_alloc_buffer((T.int64(4)," in tir, tir


def test_layer_norm_without_affine_reads_no_gamma_or_beta():
    """TVM's own layer_norm multiplies by gamma and adds beta even with scale/center off; vmath's (for
    float32 over the last axis) reads neither: the output block reads the input and the row statistics."""
    func = _prim_func_text(backend.build(_row_op("layer_norm", 24, 1024), parse_target("llvm")).backend_ir("tir"),
                           "layer_norm")
    gamma, beta = re.findall(r"(\w+): T.Buffer", func)[1:3]  # (input, gamma, beta, output)
    assert f"{gamma}[" not in func and f"{beta}[" not in func, func


def test_layer_norm_over_a_prime_row_is_vectorized_up_to_a_scalar_tail():
    """197 features: vmath's layer_norm sums the first 192 as vector partials, then the 5 left."""
    tir = backend.build(_row_op("layer_norm", 24, 197), parse_target("llvm")).backend_ir("tir")
    assert "layer_norm_sum_head_rf" in tir and "layer_norm_var_sum_head_rf" in tir and "T.vectorized" in tir


def test_softmax_over_a_prime_row_is_vectorized_up_to_a_scalar_tail():
    """197 keys (ViT): max and sum over the first 192 as vector partials, then the 5 left; exp and the
    scaling as 192 in vectors and a scalar tail (vmath splits the reductions, the row rule the rest)."""
    tir = backend.build(_row_op("softmax", 24, 197), parse_target("llvm")).backend_ir("tir")
    assert "softmax_max_head_rf" in tir and "softmax_sum_head_rf" in tir and "T.vectorized" in tir


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_row_reductions_match_the_reference_at_each_thread_count(threads):
    """The row loop (split across TVM's thread pool) gives the reference's rows on one thread and on two."""
    program = _row_op("layer_norm", 64, 1000)
    inputs = random_inputs(program, seed=11)
    exe = backend.build(program, parse_target("llvm"))
    config = tvm.get_global_func("runtime.config_threadpool")
    before = tvm.runtime.num_threads()
    config(1, threads)
    try:
        assert_close(exe(*inputs), reference(program, inputs), "float32")
    finally:
        config(1, before)


@needs_avx2
@pytest.mark.parametrize("prim", ["softmax", "layer_norm"])
def test_avx2_builds_of_row_reductions_over_rows_no_vector_divides_match_the_reference(prim):
    program = _row_op(prim, 24, 1000)  # 8 lanes: steps of 20 (2.5 ymm vectors)
    inputs = random_inputs(program, seed=12)
    exe = backend.build(program, parse_target("llvm -mcpu=haswell"))
    assert_close(exe(*inputs), reference(program, inputs), "float32")


# ---------------------------------------------------------------------------------------------
# int8 on CPUs with AVX-512 VNNI (backends/tvm/int8.py)
# ---------------------------------------------------------------------------------------------

int8_module = importlib.import_module("nir.backends.tvm.int8")
HAS_VNNI = int8_module.has_vnni(build_module.tvm_target(parse_target("llvm")))


def _int8_programs() -> dict[str, Program]:
    conv = dict(channels="C", out_channels="O", spatial=("H", "W"), dilation=(1, 1), groups=1)
    return {"matmul": one("contract_wide", [T({"M": 37, "K": 70}, "int8"), T({"K": 70, "N": 50}, "int8")], over=("K",)),
            "conv-nchw": one("conv2d_wide", [T({"N": 2, "C": 5, "H": 9, "W": 7}, "int8"),
                                             T({"O": 20, "C": 5, "H": 3, "W": 3}, "int8")],
                             stride=(2, 1), padding=(1, 0), **conv),
            "conv-nhwc": one("conv2d_wide", [T({"N": 1, "H": 6, "W": 6, "C": 8}, "int8"),
                                             T({"H": 3, "W": 3, "C": 8, "O": 16}, "int8")],
                             stride=(1, 1), padding=(1, 1), **conv)}


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI")
@pytest.mark.parametrize("name", ["matmul", "conv-nchw", "conv-nhwc"])
def test_int8_contractions_use_vpdpbusd_and_are_exact(name):
    program = _int8_programs()[name]
    exe = check(program, random_inputs(program, seed=3))
    assert any(k.startswith("nir_int8_gemm") for k in exe.schedules)
    (llvm,) = [m for m in exe.library.mod.imports if m.kind == "llvm"]
    assert "vpdpbusd" in llvm.inspect_source("asm")


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI")
def test_int8_constant_weights_are_packed_at_compile_time():
    b = Builder()
    x = b.input(T({"M": 8, "K": 64}, "int8"))
    w = np.random.default_rng(0).integers(-128, 128, (64, 32)).astype(np.int8)
    c = b.add("constant", [], data=w.tobytes(), dims=(("K", 64), ("N", 32)), dtype="int8")
    program = b.build([b.add("contract_wide", [x, c], over=("K",))])
    exe = check(program, random_inputs(program, seed=4))
    assert "permute_dims" not in exe.backend_ir("relax") and "R.sum" not in exe.backend_ir("relax")


@pytest.mark.parametrize("name", ["matmul", "conv-nchw"])
def test_int8_on_a_cpu_without_vnni_runs_the_generic_loops_exactly(name):
    program = _int8_programs()[name]
    exe = backend.build(program, parse_target("llvm -mcpu=haswell"))
    inputs = random_inputs(program, seed=5)
    assert not any(k.startswith("nir_int8_gemm") for k in exe.schedules)
    np.testing.assert_array_equal(exe(*inputs)[0], reference(program, inputs)[0])


@pytest.mark.parametrize("m,k", [(2, 0), (0, 4)])
def test_int8_contract_wide_with_no_elements_gives_int32(m: int, k: int) -> None:
    """An empty operand skips the VNNI kernel (it cannot pack zero rows) and sums no terms into int32."""
    b = Builder()
    x = b.input(TensorType((("M", m), ("K", k)), "int8"))
    w = b.input(TensorType((("K", k), ("N", 3)), "int8"))
    program = b.build([b.add("contract_wide", [x, w], over=("K",))])
    ins = [np.ones((m, k), np.int8), np.ones((k, 3), np.int8)]
    got = np.asarray(nir.backends.get("tvm").build(program, "llvm")(*ins)[0])
    want = interpret(program, *ins)[0]
    assert got.dtype == np.int32 and got.shape == (m, 3)
    np.testing.assert_array_equal(got, want)
