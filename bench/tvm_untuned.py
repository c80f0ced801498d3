"""Untuned nir -> TVM (default CPU schedules) against numpy and torch, measured in the same run.

    python -m nir.bench.tvm_untuned [--threads N] [--rounds R] [--calls C] [--stat median|min]

Workloads: matmul 512^3, conv2d 1x64x56x56 (3x3, 64 filters, pad 1), and an MLP
(64x256 -> 512 -> relu -> 128 -> layer norm -> softmax), all float32. Every engine uses the same
number of threads: TVM_NUM_THREADS, OMP/OPENBLAS/MKL_NUM_THREADS and torch.set_num_threads are set
to N (default: the cores this process may use). numpy reads its thread count when it is first
imported, so the script re-executes itself once with those variables set.

Times are medians over R round-robin rounds of C calls per engine (engines interleaved, so that load
from other processes hits them alike). The TVM column calls the compiled program the way a user does
(numpy arrays in, numpy arrays out); its inputs are 64-byte aligned, so they pass without a copy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

_THREAD_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pin_threads(threads: int) -> None:
    """Re-execute this script with every engine's thread count set to ``threads`` (once)."""
    if os.environ.get("NIR_BENCH_THREADS") == str(threads):
        return
    env = dict(os.environ, NIR_BENCH_THREADS=str(threads), **{v: str(threads) for v in _THREAD_VARS})
    os.execve(sys.executable, [sys.executable, "-m", "nir.bench.tvm_untuned", *sys.argv[1:]], env)


# ---------------------------------------------------------------------------------------------
# workloads, built with nir.ir.Builder
# ---------------------------------------------------------------------------------------------

def matmul_program(n: int = 512, dtype: str = "float32"):
    """``{M, K} x {K, N} -> {M, N}`` with all sizes ``n``."""
    from nir.ir import Builder
    from nir.types import TensorType
    b = Builder()
    x = b.input(TensorType.of({"M": n, "K": n}, dtype))
    w = b.input(TensorType.of({"K": n, "N": n}, dtype))
    return b.build([b.add("contract", [x, w], over=("K",))])


def conv_program(dtype: str = "float32"):
    """conv2d of ``{N: 1, C: 64, H: 56, W: 56}`` with 64 3x3 filters, stride 1, padding 1."""
    from nir.ir import Builder
    from nir.types import TensorType
    b = Builder()
    x = b.input(TensorType.of({"N": 1, "C": 64, "H": 56, "W": 56}, dtype))
    w = b.input(TensorType.of({"O": 64, "C": 64, "H": 3, "W": 3}, dtype))
    y = b.add("conv2d", [x, w], channels="C", out_channels="O", spatial=("H", "W"), stride=(1, 1),
              padding=(1, 1), dilation=(1, 1), groups=1)
    return b.build([y])


def mlp_program(dtype: str = "float32"):
    """``{B: 64, I: 256}`` -> linear 512 -> relu -> linear 128 -> layer norm -> softmax."""
    from nir.ir import Builder
    from nir.types import TensorType
    b = Builder()
    x = b.input(TensorType.of({"B": 64, "I": 256}, dtype))
    w1 = b.input(TensorType.of({"I": 256, "H": 512}, dtype))
    b1 = b.input(TensorType.of({"H": 512}, dtype))
    w2 = b.input(TensorType.of({"H": 512, "O": 128}, dtype))
    b2 = b.input(TensorType.of({"O": 128}, dtype))
    h = b.add("relu", [b.add("add", [b.add("contract", [x, w1], over=("I",)), b1])])
    y = b.add("add", [b.add("contract", [h, w2], over=("H",)), b2])
    y = b.add("layer_norm", [y], dims=("O",), eps=1e-5)
    return b.build([b.add("softmax", [y], dim="O")])


WORKLOADS: dict[str, tuple[Callable[[], Any], float]] = {
    # name: (program builder, GFLOP per call, for the GFLOP/s column; 0 = not reported)
    "matmul 512^3": (matmul_program, 2 * 512 ** 3 / 1e9),
    "conv2d 1x64x56x56 3x3x64": (conv_program, 2 * 64 * 56 * 56 * 64 * 9 / 1e9),
    "mlp 64x256-512-128": (mlp_program, 2 * 64 * (256 * 512 + 512 * 128) / 1e9),
}


def aligned(a: Any, alignment: int = 64) -> Any:
    """A C-contiguous copy of numpy array ``a`` whose data starts on an ``alignment``-byte boundary."""
    import numpy as np
    buf = np.empty(a.nbytes + alignment, dtype=np.uint8)
    off = (-buf.ctypes.data) % alignment
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


# ---------------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------------

def numpy_fns(name: str) -> Callable[..., Any]:
    """The same computation in numpy (conv2d as im2col + one BLAS call)."""
    import numpy as np
    if name.startswith("matmul"):
        return lambda x, w: x @ w
    if name.startswith("conv2d"):
        def conv(x, w):
            xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N C H W kh kw
            return np.tensordot(w, win, axes=([1, 2, 3], [1, 4, 5])).transpose(1, 0, 2, 3)
        return conv

    def mlp(x, w1, b1, w2, b2):
        h = np.maximum(x @ w1 + b1, 0)
        y = h @ w2 + b2
        y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
        e = np.exp(y - y.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return mlp


def torch_fns(name: str) -> Callable[..., Any]:
    """The same computation in torch (eager, no autograd)."""
    import torch
    import torch.nn.functional as F
    if name.startswith("matmul"):
        return lambda x, w: x @ w
    if name.startswith("conv2d"):
        return lambda x, w: F.conv2d(x, w, padding=1)

    def mlp(x, w1, b1, w2, b2):
        h = torch.relu(x @ w1 + b1)
        y = F.layer_norm(h @ w2 + b2, (128,), eps=1e-5)
        return torch.softmax(y, -1)
    return mlp


def time_ms(fns: dict[str, Callable[[], Any]], rounds: int, calls: int, stat: str = "median") -> dict[str, float]:
    """Wall time in ms (median or min over all calls) of each of ``fns``, measured round-robin: each round times ``calls``
    calls of every engine in turn, with a pause between engines so that the thread pools of the
    previous one (OpenMP, OpenBLAS, TVM) stop spinning before the next one starts."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(0.02)
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    pick = statistics.median if stat == "median" else min
    return {k: pick(v) * 1e3 for k, v in samples.items()}


def run(threads: int, rounds: int, calls: int, stat: str = "median") -> list[dict[str, Any]]:
    """Build and time every workload; returns one row per workload."""
    import numpy as np
    import torch
    from nir.backends import tvm as tvm_backend
    from nir.interpret import interpret
    from nir.testing import random_inputs

    torch.set_num_threads(threads)
    rows = []
    for name, (make, gflop) in WORKLOADS.items():
        program = make()
        t = time.perf_counter()
        exe = tvm_backend.build(program, "llvm")
        compile_s = time.perf_counter() - t
        inputs = [aligned(a) for a in random_inputs(program, seed=1)]
        want = interpret(program, *inputs)[0]
        err = float(np.max(np.abs(exe(*inputs)[0] - want)))
        np_fn, th_fn = numpy_fns(name), torch_fns(name)
        th_inputs = [torch.from_numpy(np.array(a)) for a in inputs]
        assert np.allclose(np_fn(*inputs), want, rtol=1e-3, atol=1e-3), f"{name}: numpy peer disagrees"
        with torch.no_grad():
            assert np.allclose(th_fn(*th_inputs).numpy(), want, rtol=1e-3, atol=1e-3), f"{name}: torch peer disagrees"
            ms = time_ms({"tvm": lambda: exe(*inputs), "numpy": lambda: np_fn(*inputs),
                          "torch": lambda: th_fn(*th_inputs)}, rounds, calls, stat)
        rows.append(dict(name=name, **ms, gflop=gflop, compile_s=compile_s, err=err,
                         rules=sorted({r for r in exe.schedules.values() if r})))
    return rows


def table(rows: Sequence[dict[str, Any]], threads: int, stat: str = "median") -> str:
    """The results as a text table."""
    head = (f"{'workload':<26} {'tvm ms':>8} {'numpy ms':>9} {'torch ms':>9} {'tvm/np':>7} {'tvm/torch':>9} "
            f"{'tvm GFLOP/s':>11} {'compile s':>9}  max|err|")
    lines = [f"nir -> TVM untuned (default schedules) vs numpy and torch, float32, {threads} threads, "
             f"{stat} of the calls", head,
             "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<26} {r['tvm']:>8.3f} {r['numpy']:>9.3f} {r['torch']:>9.3f} "
                     f"{r['tvm'] / r['numpy']:>6.2f}x {r['tvm'] / r['torch']:>8.2f}x "
                     f"{r['gflop'] / r['tvm'] * 1e3:>11.1f} {r['compile_s']:>9.2f}  {r['err']:.1e}")
    lines.append("ratios > 1: TVM is slower. Schedules used: "
                 + "; ".join(f"{r['name']}: {', '.join(r['rules'])}" for r in rows))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, pin thread counts, run, print the table."""
    from nir.extras import exit_unless_installed
    exit_unless_installed("python -m nir.bench.tvm_untuned", "tvm", "torch")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=_cores(), help="threads for every engine (default: all cores)")
    ap.add_argument("--rounds", type=int, default=10, help="round-robin rounds over the engines")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per engine and round")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="median, or min (the uncontended time, on a machine other work shares)")
    args = ap.parse_args(argv)
    if argv is None:
        _pin_threads(args.threads)
    print(table(run(args.threads, args.rounds, args.calls, args.stat), args.threads, args.stat))


if __name__ == "__main__":
    main()
