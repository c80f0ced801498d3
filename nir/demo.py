"""`nir demo`: the examples that motivate named tensors, run eagerly and then compiled on every installed
backend, with a short table of what happened."""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Sequence

import numpy as np

import nir


def channel_sum(images: nir.NamedTensor) -> nir.NamedTensor:
    """Per-channel sum of an image batch, by name: works whatever the dim order."""
    return images.sum(("N", "H", "W"))


def green_channel(images: nir.NamedTensor) -> nir.NamedTensor:
    """Select channel 1 by name."""
    return images.select("C", 1)


def normalize(images: nir.NamedTensor, mean: nir.NamedTensor, std: nir.NamedTensor) -> nir.NamedTensor:
    """Per-channel normalization. ``mean``/``std`` are ``{C}``; `align_as` broadcasts them by name, so the
    same function serves NCHW and NHWC images."""
    return (images - mean.align_as(images)) / std.align_as(images)


def std_gradient(images: nir.NamedTensor, mean: nir.NamedTensor, std: nir.NamedTensor) -> nir.NamedTensor:
    """The gradient of a loss through `normalize` with respect to ``std``: a nir program too, named ``{C}``."""
    return nir.grad(lambda s: normalize(images, mean, s).tanh().sum())(std)


def _refused(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except nir.NamedShapeError as e:
        return str(e)
    raise AssertionError("the mistake was not refused")


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns a process exit code (1 if any backend disagrees with eager)."""
    parser = argparse.ArgumentParser(prog="nir demo", description=__doc__)
    parser.add_argument("--backends", default=",".join(nir.backends.available()),
                        help="comma-separated backends to compile on (default: every installed one)")
    parser.add_argument("--no-ir", dest="show_ir", action="store_false", help="do not print the nir program")
    args = parser.parse_args(list(argv or []))
    backends = [b for b in args.backends.split(",") if b]

    rng = np.random.default_rng(0)
    nchw = nir.tensor(rng.standard_normal((8, 3, 32, 32), dtype=np.float32), names=("N", "C", "H", "W"))
    nhwc = nchw.align_to("N", "H", "W", "C")
    mean = nir.tensor(np.array([0.1, -0.2, 0.3], np.float32), names=("C",))
    std = nir.tensor(np.array([1.5, 0.5, 2.0], np.float32), names=("C",))

    print("nir demo: named tensors, checked while tracing, compiled on", ", ".join(backends))
    print()
    print("1. names instead of positions")
    print(f"   images{nchw.type.pretty()}.sum(('N', 'H', 'W'))  -> names {channel_sum(nchw).names}")
    print(f"   images.select('C', 1)                  -> names {green_channel(nchw).names}")
    print()
    print("2. mistakes refused before anything runs")
    print("   accidental broadcast: images + mean (a {C} tensor lines up with W, not C)")
    print("   ->", _refused(lambda: nchw + mean))
    square = nir.tensor(rng.standard_normal((3, 3), dtype=np.float32), names=("N", "C"))
    swapped = square.align_to("C", "N")
    print("   accidental alignment: x{N, C} + x.align_to('C', 'N') (same shape, different meaning)")
    print("   ->", _refused(lambda: square + swapped))
    print("   the fix: broadcast by name ->", (square + swapped.align_as(square)).names)
    print()

    cases: list[tuple[str, Callable[..., Any], list[nir.NamedTensor]]] = [
        ("channel_sum NCHW", channel_sum, [nchw]),
        ("channel_sum NHWC", channel_sum, [nhwc]),
        ("select C=1", green_channel, [nchw]),
        ("normalize NCHW", normalize, [nchw, mean, std]),
        ("normalize NHWC", normalize, [nhwc, mean, std]),
        ("grad wrt std NHWC", std_gradient, [nhwc, mean, std]),
    ]
    print("3. one program per function, compiled on each backend (max difference to eager, relative to the largest value; compile time)")
    widths = [18, 16] + [24] * len(backends)
    print(_row(["example", "eager names"] + backends, widths))
    failed = False
    for label, fn, inputs in cases:
        want = fn(*inputs)
        cells = [label, ",".join(str(n) for n in want.names)]
        for b in backends:
            try:
                t0 = time.perf_counter()
                compiled = nir.compile(fn, target="llvm", backend=b, inputs=inputs)
                ms = (time.perf_counter() - t0) * 1e3
                got = compiled(*inputs)
                ref = want.numpy().astype(np.float64)
                err = float(np.max(np.abs(got.numpy().astype(np.float64) - ref)) / max(1.0, np.max(np.abs(ref))))
                ok = got.names == want.names and err < 1e-5
                failed |= not ok
                cells.append(f"{'ok' if ok else 'MISMATCH'} {err:.1e} ({ms:.0f} ms)")
            except Exception as e:  # noqa: BLE001 - the demo reports every failure in its table
                failed = True
                cells.append(f"error: {type(e).__name__}")
                print(f"   [{b}] {label}: {e}")
        print(_row(cells, widths))
    if args.show_ir:
        print()
        print("4. the nir program of normalize (NHWC): dims keyed by name, no axis numbers")
        print(nir.trace(normalize, nhwc, mean, std).program.text)
    return 1 if failed else 0
