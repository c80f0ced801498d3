"""nir -> XLA against the same functions written by hand as positional ``jax.jit`` code.

    python -m nir.bench.xla_vs_jax            # about a minute on 2 cores
    python -m nir.bench.xla_vs_jax --quick    # fewer rounds

Four workloads (an MLP, a conv layer, attention-like contraction + softmax, a normalize) are built
with `nir.ir.Builder`, compiled by the xla backend for ``llvm``, and timed in the same process against
hand-written JAX, interleaved round by round; the table shows medians and the ratio nir / hand
(1.0 means the lowering costs nothing), the largest difference between their results, and whether the
two optimized HLO modules have the same entry computation (opcodes), which holds even when a busy
machine makes the timings noisy. Then the per-call overhead on a tiny input (``x + 1`` on 4
floats) against bare ``jax.jit``. Inputs are jax arrays already on the device in both cases.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nir.extras import exit_unless_installed

if __name__ == "__main__":  # before the jax import below, for a one-line hint instead of a traceback
    exit_unless_installed("python -m nir.bench.xla_vs_jax", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import nir.backends.xla as xla  # noqa: E402
from nir.ir import Builder, Program  # noqa: E402
from nir.testing import random_inputs  # noqa: E402
from nir.types import TensorType  # noqa: E402


@dataclass
class Workload:
    """A nir program and a hand-written JAX function computing the same thing (logical order in and out)."""

    name: str
    program: Program
    hand: Callable[..., Any]


def _T(dims: dict[str, int]) -> TensorType:
    return TensorType.of(dims, "float32")


def mlp() -> Workload:
    """x{B, D} -> relu(x W1 + b1) -> relu(. W2 + b2) -> . W3: 256 x 512 -> 1024 -> 1024 -> 10."""
    b = Builder()
    x = b.input(_T({"B": 256, "D": 512}))
    w1, b1 = b.input(_T({"D": 512, "H1": 1024})), b.input(_T({"H1": 1024}))
    w2, b2 = b.input(_T({"H1": 1024, "H2": 1024})), b.input(_T({"H2": 1024}))
    w3 = b.input(_T({"H2": 1024, "K": 10}))
    h = b.add("relu", [b.add("add", [b.add("contract", [x, w1], over=("D",)), b1])])
    h = b.add("relu", [b.add("add", [b.add("contract", [h, w2], over=("H1",)), b2])])
    out = b.add("contract", [h, w3], over=("H2",))

    def hand(x, w1, b1, w2, b2, w3):
        h = jax.nn.relu(x @ w1 + b1)
        h = jax.nn.relu(h @ w2 + b2)
        return h @ w3
    return Workload("mlp", b.build([out]), hand)


def conv() -> Workload:
    """x{N, C, H, W} (NCHW) -> 3x3 conv, padding 1 -> relu -> 2x2 max pool: 16x32x56x56, 64 out channels."""
    b = Builder()
    x = b.input(_T({"N": 16, "C": 32, "H": 56, "W": 56}))
    w = b.input(_T({"O": 64, "C": 32, "H": 3, "W": 3}))
    y = b.add("conv2d", [x, w], channels="C", out_channels="O", spatial=("H", "W"), stride=(1, 1),
              padding=(1, 1), dilation=(1, 1), groups=1)
    y = b.add("relu", [y])
    y = b.add("pool2d", [y], kind="max", kernel=(2, 2), stride=(2, 2), padding=(0, 0), spatial=("H", "W"))

    def hand(x, w):
        y = lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NCHW", "OIHW", "NCHW"))
        y = jax.nn.relu(y)
        return lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return Workload("conv", b.build([y]), hand)


def attention() -> Workload:
    """softmax_T(q{B,S,D} . k{B,T,D} / sqrt(D)) . v{B,T,E}: B=8 (batch x heads), S=T=256, D=E=64."""
    b = Builder()
    q = b.input(_T({"B": 8, "S": 256, "D": 64}))
    k = b.input(_T({"B": 8, "T": 256, "D": 64}))
    v = b.input(_T({"B": 8, "T": 256, "E": 64}))
    scale = b.add("full", [], value=1 / 8.0, dims=(), dtype="float32")
    s = b.add("mul", [b.add("contract", [q, k], over=("D",)), scale])
    p = b.add("softmax", [s], dim="T")
    o = b.add("contract", [p, v], over=("T",))

    def hand(q, k, v):
        s = jnp.einsum("bsd,btd->bst", q, k) * (1 / 8.0)
        return jnp.einsum("bst,bte->bse", jax.nn.softmax(s, axis=-1), v)
    return Workload("attention", b.build([o]), hand)


def normalize() -> Workload:
    """layer_norm over D, then * gamma{D} + beta{D}: x{B, S, D} = 32 x 128 x 512."""
    b = Builder()
    x = b.input(_T({"B": 32, "S": 128, "D": 512}))
    g, be = b.input(_T({"D": 512})), b.input(_T({"D": 512}))
    y = b.add("layer_norm", [x], dims=("D",), eps=1e-5)
    y = b.add("add", [b.add("mul", [y, g]), be])

    def hand(x, g, be):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * lax.rsqrt(var + 1e-5) * g + be
    return Workload("normalize", b.build([y]), hand)


WORKLOADS: list[Callable[[], Workload]] = [mlp, conv, attention, normalize]


def _time(fn: Callable[..., Any], args: Sequence[Any], calls: int) -> float:
    """Seconds per call over ``calls`` calls, waiting for the last result."""
    t = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / calls


def interleaved(fns: dict[str, Callable[..., Any]], args: Sequence[Any], rounds: int,
                calls: int) -> dict[str, list[float]]:
    """Per-call times of each function, ``rounds`` rounds of ``calls`` calls, alternating every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm up: the first calls build jax's dispatch caches
        _time(fn, args, 3)
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            times[k].append(_time(fns[k], args, calls))
    return times


def entry_ops(optimized_hlo: str) -> list[str]:
    """The sorted opcodes of an optimized HLO module's entry computation (fusions, parameters, ...)."""
    entry = optimized_hlo[optimized_hlo.index("ENTRY"):]
    return sorted(re.findall(r"= \S+ ([\w-]+)\(", entry))


def compare(w: Workload, rounds: int) -> tuple[float, float, float, bool]:
    """(nir median s, hand median s, max abs difference, same entry opcodes) for one workload."""
    inputs = [jax.device_put(a) for a in random_inputs(w.program, seed=1)]
    nir_exe = xla.build(w.program, "llvm")
    hand = jax.jit(w.hand).lower(*inputs).compile()
    diff = float(np.max(np.abs(np.asarray(nir_exe(*inputs)[0]) - np.asarray(hand(*inputs)))))
    once = _time(hand, inputs, 1)
    calls = max(1, min(200, int(0.05 / max(once, 1e-6))))  # about 50 ms per round each
    t = interleaved({"nir": nir_exe, "hand": hand}, inputs, rounds, calls)
    same = entry_ops(nir_exe.backend_ir("optimized_hlo")) == entry_ops(hand.as_text())
    return statistics.median(t["nir"]), statistics.median(t["hand"]), diff, same


def overhead(rounds: int, calls: int = 10_000) -> dict[str, tuple[float, float]]:
    """(median, min) microseconds per call of ``x + 1`` on 4 floats: nir vs bare jax.jit."""
    b = Builder()
    x = b.input(_T({"N": 4}))
    one = b.add("full", [], value=1.0, dims=(), dtype="float32")
    program = b.build([b.add("add", [x, one])])
    xj = jax.device_put(np.arange(4, dtype=np.float32))
    xn = np.arange(4, dtype=np.float32)
    exe = xla.build(program, "llvm")
    fns = {
        "jax.jit(lambda x: x + 1)": jax.jit(lambda x: x + 1),
        "jax.jit(lambda x: [x + 1])": jax.jit(lambda x: [x + 1]),
        "nir xla executable": exe,
    }
    res = {k: [t * 1e6 for t in v] for k, v in interleaved(fns, [xj], rounds, calls).items()}
    res |= {k + " (numpy input)": [t * 1e6 for t in v]
            for k, v in interleaved({"jax.jit(lambda x: x + 1)": fns["jax.jit(lambda x: x + 1)"],
                                     "nir xla executable": exe}, [xn], rounds, calls).items()}
    return {k: (statistics.median(v), min(v)) for k, v in res.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Run every workload and the overhead probe; print two tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    args = ap.parse_args(argv)
    rounds = 5 if args.quick else 15
    print(f"jax {jax.__version__}, devices {jax.devices()}, {rounds} interleaved rounds, medians")
    print(f"{'workload':<10} {'nir->xla ms':>12} {'hand jax ms':>12} {'ratio':>7} {'max |diff|':>11} "
          f"{'same HLO ops':>13}")
    for make in WORKLOADS:
        w = make()
        t_nir, t_hand, diff, same = compare(w, rounds)
        print(f"{w.name:<10} {t_nir * 1e3:>12.3f} {t_hand * 1e3:>12.3f} {t_nir / t_hand:>7.3f} {diff:>11.2e} "
              f"{'yes' if same else 'no':>13}")
    print("\nper-call overhead, x + 1 on 4 floats (us per call, median / min over rounds of 10,000 calls)")
    for name, (med, low) in overhead(rounds).items():
        print(f"  {name:<42} {med:>7.2f} / {low:.2f}")


if __name__ == "__main__":
    main()
