"""scan and cond on every installed compiling backend: results equal the reference interpreter's
(float32 tolerance), loops stay loops (compile time and program size flat in the trip count), deep
loops run, and what a backend cannot run is refused with a clear error."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import nir
from nir import backends
from nir.backends import BackendError
from nir.fuzz import random_layouts
from nir.ir import Builder, Program
from nir.testing import assert_close, random_inputs
from nir.types import TensorType

BACKENDS = [b for b in ("xla", "tvm") if backends.installed(b)]
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no compiling backend installed")


def build(backend: str, program: Program):
    return backends.get(backend).build(program, "llvm")


def rnn(x, h0, w, u, b):
    """The seed RNN: h = tanh(x_t W + h U + b) over T; returns the last h and every h."""
    def step(h, x_t):
        h = (x_t @ w + h.rename(H="G") @ u + b).tanh()
        return h, h
    return nir.scan(step, h0, x, over="T")


def rnn_program(steps: int, n: int = 2, i: int = 3, h: int = 4) -> Program:
    return nir.trace(rnn, nir.spec(T=steps, N=n, I=i), nir.spec(N=n, H=h), nir.spec(I=i, H=h), nir.spec(G=h, H=h),
                     nir.spec(H=h)).program


def control_mix(x, w, b):
    """A reverse scan whose step branches (cond), runs an inner scan over another dim, and returns a
    tree of per-step outputs; w and b are captured at two depths."""
    def step(h, x_t):
        y = nir.cond(x_t.sum() > 0, lambda a: (a @ w).tanh(), lambda a: -a @ w * 0.5 + b, x_t)
        _, inner = nir.scan(lambda c, r: (c + r * h.sum(), c * 2), h.sum("N").rename(H="J") * 0,
                            y.rename(H="J"), over="N")
        return h * 0.9 + y, (inner, y.sum())
    h, (ys, s) = nir.scan(step, nir.zeros(2, 4, names=("N", "H")), x, over="T", reverse=True)
    return h, ys, s


def mix_program() -> Program:
    return nir.trace(control_mix, nir.spec(T=5, N=2, I=3), nir.spec(I=3, H=4), nir.spec(H=4)).program


@pytest.mark.parametrize("backend", BACKENDS)
def test_rnn_scan_matches_the_reference(backend: str) -> None:
    p = rnn_program(7)
    inputs = random_inputs(p, seed=1)
    assert_close(build(backend, p)(*inputs), nir.interpret(p, *inputs), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_scans_conds_and_captures_match_the_reference(backend: str) -> None:
    p = mix_program()
    for seed in (1, 2):  # both branches are taken across these inputs
        inputs = random_inputs(p, seed=seed)
        assert_close(build(backend, p)(*inputs), nir.interpret(p, *inputs), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_scans_keep_their_stacked_outputs_apart(backend: str) -> None:
    """Found by fuzzing: TVM folded two zero-filled output buffers of one type into one shared
    constant, so the inner scan's rows overwrote the outer scan's."""
    def f(x):
        def outer(c, x_t):
            c2, ys = nir.scan(lambda d, r: (d * 0.5 + r, d * 2), c, x, over="E")
            return c + x_t + c2, ys.sum()
        return nir.scan(outer, x.select("E", 0), x, over="E")
    p = nir.trace(f, nir.spec(E=3)).program
    inputs = random_inputs(p, seed=0)
    exe = build(backend, p)
    for _ in range(2):
        assert_close(exe(*inputs), nir.interpret(p, *inputs), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_equal_branches_and_equal_loops_compile(backend: str) -> None:
    """Found by fuzzing: TVM's builder merges structurally equal functions (two equal branches, the
    steps of two equal scans), so they must be looked up by what the builder returns, not by name."""
    def f(x):
        same = nir.cond(x.sum() > 0, lambda a: a * 0.5 + a.mean(), lambda a: a * 0.5 + a.mean(), x)
        loop = lambda y: nir.scan(lambda c, r: (c + r, c), nir.tensor(0.0), y, over="C")  # noqa: E731
        (c1, ys1), (c2, ys2) = loop(same), loop(same)
        return c1 + c2, ys1 - ys2
    p = nir.trace(f, nir.spec(C=7)).program
    inputs = random_inputs(p, seed=0)
    assert_close(build(backend, p)(*inputs), nir.interpret(p, *inputs), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_stacked_outputs_survive_the_computation_after_the_loop(backend: str) -> None:
    """The buffer a scan fills in place must not be reused for values computed after it."""
    def f(x):
        c, ys = nir.scan(lambda d, r: (d * 0.5 + r, d * 2 + r), x.select("T", 0), x, over="T")
        a = (x * 3).tanh()
        return ys + a * 2 - a + (a * 2 + 1).exp(), c
    p = nir.trace(f, nir.spec(T=6, N=5)).program
    inputs = random_inputs(p, seed=0)
    assert_close(build(backend, p)(*inputs), nir.interpret(p, *inputs), "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_control_flow_under_random_physical_layouts(backend: str) -> None:
    p = mix_program()
    inputs = random_inputs(p, seed=1)
    want = nir.interpret(p, *inputs)
    for seed in range(3):
        q = random_layouts(p, np.random.default_rng(seed))
        assert_close(build(backend, nir.verify(q))(*inputs), want, "float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_cond_takes_either_branch_at_run_time(backend: str) -> None:
    p = nir.trace(lambda flag, x: nir.cond(flag.sum() > 0, lambda a: a.exp(), lambda a: -a, x),
                  nir.spec(K=1), nir.spec(N=3)).program
    exe = build(backend, p)
    x = np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(exe(np.array([1.0], np.float32), x)[0]), np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(exe(np.array([-1.0], np.float32), x)[0]), -x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_scan_through_nir_compile_returns_named_trees(backend: str) -> None:
    f = nir.compile(rnn, backend=backend)
    args = [nir.randn(5, 2, 3, names=("T", "N", "I")), nir.randn(2, 4, names=("N", "H")),
            nir.randn(3, 4, names=("I", "H")), nir.randn(4, 4, names=("G", "H")), nir.randn(4, names=("H",))]
    h, hs = f(*args)
    want_h, want_hs = rnn(*args)
    assert hs.names == ("T", "N", "H")
    assert_close([h.numpy(), hs.numpy()], [want_h.numpy(), want_hs.numpy()], "float32")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps", [0, 3])
def test_integer_carries_bool_outputs_captured_outputs_and_zero_steps(backend: str, steps: int) -> None:
    def f(x, w):
        (total, count), (ws, signs) = nir.scan(lambda c, x_t: ((c[0] + x_t, c[1] + 1), (w, x_t > 0)),
                                               (x.sum("T"), nir.tensor(0)), x, over="T")
        return total, count, ws, signs
    p = nir.trace(f, nir.spec(T=steps, N=2), nir.spec(K=2)).program
    inputs = random_inputs(p, seed=0)
    got, want = build(backend, p)(*inputs), nir.interpret(p, *inputs)
    assert int(np.asarray(got[1])) == steps
    assert_close(got, want, "float32")


def _build_seconds(backend: str, program: Program) -> float:
    t0 = time.perf_counter()
    build(backend, program)
    return time.perf_counter() - t0


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_time_does_not_grow_with_the_trip_count(backend: str) -> None:
    short, long = rnn_program(20), rnn_program(2000)
    _build_seconds(backend, short)  # warm-up: first builds load libraries
    t_short = min(_build_seconds(backend, short) for _ in range(2))
    t_long = min(_build_seconds(backend, long) for _ in range(2))
    assert t_long < 3 * t_short + 0.2, f"T=2000 built in {t_long:.3f} s, T=20 in {t_short:.3f} s"


def test_xla_keeps_one_while_loop() -> None:
    if "xla" not in BACKENDS:
        pytest.skip("xla not installed")
    texts = [build("xla", rnn_program(t)).backend_ir("optimized_hlo") for t in (20, 2000)]
    assert all("while" in t for t in texts)
    assert abs(len(texts[0].splitlines()) - len(texts[1].splitlines())) <= 2
    assert texts[1].count(" tanh(") <= 2


def test_tvm_keeps_the_loop_body_once() -> None:
    if "tvm" not in BACKENDS:
        pytest.skip("tvm not installed")
    relax_text = build("tvm", rnn_program(2000)).backend_ir("relax")
    # tanh is R.tanh, or on CPUs a call of nir's vectorizable form (backends/tvm/vmath.py)
    assert relax_text.count("R.tanh(") + relax_text.count('T.sblock("nir_tanh")') == 1
    assert "scan0_loop2" in relax_text and "scan0_loop3" not in relax_text  # 2000 <= 32**3


def test_tvm_runs_a_long_scan_without_overflowing_the_stack() -> None:
    """One Relax recursion per step would segfault past ~2,000 steps; the nested loops must not."""
    if "tvm" not in BACKENDS:
        pytest.skip("tvm not installed")
    code = (
        "import numpy as np, nir\n"
        "from nir.backends import tvm\n"
        "p = nir.trace(lambda x, h: nir.scan(lambda c, x_t: ((c * 0.5 + x_t).tanh(), None), h, x, over='T')[0],\n"
        "              nir.spec(T=50000, N=2), nir.spec(N=2)).program\n"
        "x = np.random.default_rng(0).standard_normal((50000, 2)).astype(np.float32)\n"
        "h = np.zeros(2, np.float32)\n"
        "got = tvm.build(p, 'llvm')(x, h)[0]\n"
        "for t in range(50000): h = np.tanh(h * 0.5 + x[t])\n"
        "assert np.allclose(got, h, atol=1e-5), (got, h)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"


def _nested_scans(depth: int, steps: int) -> Program:
    """``depth`` nested scans of ``steps`` steps: each body fills a vector and scans over it."""
    b = Builder()
    c, x = b.input(TensorType.of({})), b.input(TensorType.of({}))
    body = b.build([b.add("add", [c, x])])
    for level in range(depth):
        b = Builder()
        c, x = b.input(TensorType.of({})), b.input(TensorType.of({}))
        xs = b.add("full", [], value=1.0, dims=((f"T{level}", steps),), dtype="float32")
        outs = b.add_multi("scan", [b.add("add", [c, x]), xs], body=body, over=f"T{level}", reverse=False,
                           num_consts=0, num_carry=1)
        body = b.build(outs)
    return body


def test_tvm_refuses_loops_nested_deeper_than_its_stack() -> None:
    if "tvm" not in BACKENDS:
        pytest.skip("tvm not installed")
    p = nir.verify(_nested_scans(16, 2000))
    with pytest.raises(BackendError, match=r"need \d+ of them at once, more than the 1500 that fit TVM's native "
                                           r"stack safely\. Nest fewer loops, or use backend='xla'"):
        build("tvm", p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exported_scan_loads_and_runs(backend: str, tmp_path) -> None:
    f = nir.compile(rnn, backend=backend)
    args = [nir.randn(4, 2, 3, names=("T", "N", "I")), nir.randn(2, 4, names=("N", "H")),
            nir.randn(3, 4, names=("I", "H")), nir.randn(4, 4, names=("G", "H")), nir.randn(4, names=("H",))]
    want = f(*args)
    f.export(tmp_path)
    got = nir.load(tmp_path)(*args)
    assert_close([g.numpy() for g in got], [w.numpy() for w in want], "float32")
