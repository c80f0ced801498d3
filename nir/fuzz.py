"""Differential fuzzing: random well-named programs, compiled on every installed backend with random
physical layouts, compared with the program's float64 answer at the tolerance its conditioning allows
(`nir.precision`: about the per-primitive tolerance for a well-conditioned program).

Programs are generated through the public NamedTensor API inside a trace, so nir's own name rules keep
them well formed. A disagreement is shrunk to the first equation whose value differs (with everything
it does not depend on removed) and printed with its program text and a one-line reproducer:

    nir fuzz --minutes 30 --seed 0
    nir fuzz --seed 0 --case 17 --backends tvm     # reproduce one case
    nir fuzz --grad --minutes 10                    # gradient mode

Gradient mode (``--grad``) differentiates each generated program (its backward program, `nir.autodiff.
vjp_program`, with random cotangents), compares the backends with the reference on it, and checks the
reference gradient against central differences in float64 (a check is skipped as inconclusive when two
step sizes disagree, i.e. a kink of relu/max/where lies within the step). Its programs have no scan or
cond (no VJP rules yet) and draw pad and take/scatter_add steps too.

In both modes about half the programs end with a strided window chain (`_strided`) on a new input with
spatial dims of 6-14: pools, convolutions (kernels 1-3, strides 1-3, padding 0-1), interior pads and
strided slices, then reductions, contractions or layout changes. These and their gradients read by a
divided index, ``x[(h - 1) // 2]`` under ``1 <= h``, which TVM 0.27's FlattenBuffer has got wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

import nir

from . import backends as _backends
from .ir import Program, Value
from .interpret import interpret
from .precision import expected, mismatch
from .target import parse_target
from .tensor import NamedTensor, bind
from .testing import random_inputs

NAMES = ("A", "B", "C", "D", "E", "F")
SIZES = (1, 2, 3, 4, 5, 7)
CONTROL_RATE = 0.3  # share of programs with a scan or a cond
QUANT_RATE = 0.25  # share of programs with a quantize/dequantize or int8 contract_wide step (forward mode)
STRIDED_RATE = 0.5  # share of programs with a strided window chain on a new input (both modes)
SPATIAL = tuple(range(6, 15))  # its spatial sizes, even and odd: reads by a divided index (h - 1) // 2


@dataclass
class _Gen:
    """State of one program being generated: the random stream and the extra inputs it adds."""

    rng: np.random.Generator
    extra: list[nir.Spec] = field(default_factory=list)
    extra_tensors: list[NamedTensor] = field(default_factory=list)
    live: list[NamedTensor] = field(default_factory=list)
    constants: bool = False  # new weights are constants, not program inputs (inside scan and cond)
    inputs: list[NamedTensor] = field(default_factory=list)  # the program's inputs (for cond predicates)
    dtype: str = "float32"

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def subset(self, seq: Sequence[Any], min_size: int = 1) -> list[Any]:
        k = int(self.rng.integers(min_size, len(seq) + 1))
        idx = sorted(self.rng.choice(len(seq), size=k, replace=False))
        return [seq[i] for i in idx]


def _unary(g: _Gen, x: NamedTensor) -> NamedTensor:
    op = g.choice(["tanh", "sigmoid", "relu", "neg", "abs", "sin", "cos", "gelu", "exp_tanh", "log1p_abs",
                   "sqrt1p_abs", "rsqrt1p_abs", "clamp"])
    if op == "exp_tanh":
        return x.tanh().exp()
    if op == "log1p_abs":
        return (x.abs() + 1.0).log()
    if op == "sqrt1p_abs":
        return (x.abs() + 1.0).sqrt()
    if op == "rsqrt1p_abs":
        return (x.abs() + 1.0).rsqrt()
    if op == "clamp":
        return x.clamp(min=-0.5, max=0.7)
    return getattr(x, op)()


def _partner(g: _Gen, x: NamedTensor) -> NamedTensor:
    """Another live tensor whose named dims are a subset of x's (same sizes), aligned to x by name."""
    ok = [t for t in g.live if t is not x and set(t.names) <= set(x.names) and None not in t.names
          and all(x.size(n) == s or s == 1 for n, s in zip(t.names, t.shape))]
    if ok and g.rng.random() < 0.7:
        return g.choice(ok).align_as(x)
    return x.tanh() * 0.5


def _binary(g: _Gen, x: NamedTensor) -> NamedTensor:
    y = _partner(g, x)
    op = g.choice(["add", "sub", "mul", "maximum", "minimum", "div", "where", "scalar"])
    if op == "div":
        return x / (y.abs() + 1.0)
    if op == "where":
        return nir.where(x > y, x, y * 2.0)
    if op == "scalar":
        return g.choice([lambda: x * 1.5, lambda: 2.0 - x, lambda: x + 0.25])()
    return getattr(nir, op)(x, y)


def _reduce(g: _Gen, x: NamedTensor) -> NamedTensor:
    if x.ndim == 0:
        return x
    dims = g.subset(x.names)
    keep = bool(g.rng.random() < 0.3)
    op = g.choice(["sum", "mean", "amax", "amin", "logsumexp", "softmax", "log_softmax", "layer_norm", "std",
                   "argmax_onehot"])
    if op in ("softmax", "log_softmax"):
        return getattr(x, op)(g.choice(x.names))
    if op == "layer_norm":
        return nir.layer_norm(x, dims)
    if op == "std":
        return x.var(dims, correction=0, keepdim=keep)
    if op == "argmax_onehot":
        d = g.choice(x.names)
        return (x.argmax(d, keepdim=True).to("float32") * 0.1) + x.amax(d, keepdim=True)
    return getattr(x, op)(dims, keepdim=keep)


def _new_input(g: _Gen, dims: Sequence[tuple[str, int]]) -> NamedTensor:
    if g.constants:
        data = g.rng.standard_normal(tuple(s for _, s in dims)).astype(g.dtype)
        return nir.tensor(data, names=tuple(n for n, _ in dims))
    from .tensor import current_trace
    tr = current_trace()
    spec = nir.spec(names=tuple(n for n, _ in dims), shape=tuple(s for _, s in dims), dtype=g.dtype)
    v = tr.builder.input(nir.TensorType(tuple(dims), g.dtype))  # type: ignore[union-attr]
    g.extra.append(spec)
    return NamedTensor._traced(v, tr)  # type: ignore[arg-type]


def _contract(g: _Gen, x: NamedTensor) -> NamedTensor:
    if x.ndim == 0:
        return x
    over = g.subset(x.names)
    keep = [n for n in x.names if n not in over and g.rng.random() < 0.3]
    new = [n for n in NAMES if n not in x.names][:1]
    dims = [(n, x.size(n)) for n in over + keep] + [(n, int(g.choice(SIZES))) for n in new]
    order = list(g.rng.permutation(len(dims)))
    w = _new_input(g, [dims[i] for i in order])
    return nir.contract(x, w, over=over)


def _layout(g: _Gen, x: NamedTensor) -> NamedTensor:
    op = g.choice(["align_to", "flatten", "select", "narrow", "cat", "transpose"])
    if x.ndim == 0:
        return x
    if op == "align_to":
        return x.align_to(*[x.names[i] for i in g.rng.permutation(x.ndim)])
    if op == "transpose" and x.ndim >= 2:
        i, j = g.rng.choice(x.ndim, 2, replace=False)
        return x.transpose(int(i), int(j))
    if op == "flatten" and x.ndim >= 2:
        i = int(g.rng.integers(x.ndim - 1))
        a, b = x.names[i], x.names[i + 1]
        f = x.flatten([a, b], f"{a}{b}")
        return f.unflatten(f"{a}{b}", ((a, x.size(a)), (b, x.size(b)))) if g.rng.random() < 0.5 else f
    if op == "select":
        d = g.choice(x.names)
        return x.select(d, int(g.rng.integers(x.size(d))))
    if op == "narrow":
        d = g.choice(x.names)
        start = int(g.rng.integers(x.size(d)))
        return x.narrow(d, start, int(g.rng.integers(1, x.size(d) - start + 1)))
    d = g.choice(x.names)
    return nir.cat([x, x * 0.5], d)


def _window(g: _Gen, x: NamedTensor) -> NamedTensor:
    """conv2d or a pooling over two of x's dims, channels another; x needs >= 3 dims."""
    if x.ndim < 3:
        return x
    c, h, w = g.subset(x.names, 3)[:3]
    order = [h, w] if g.rng.random() < 0.5 else [w, h]
    k = (int(g.rng.integers(1, min(3, x.size(order[0])) + 1)), int(g.rng.integers(1, min(3, x.size(order[1])) + 1)))
    if g.rng.random() < 0.6:
        out = "O"
        if out in x.names:
            return x
        dims = [(out, int(g.choice((1, 2, 3)))), (c, x.size(c)), (order[0], k[0]), (order[1], k[1])]
        weight = _new_input(g, [dims[i] for i in g.rng.permutation(4)])
        pad = (int(g.rng.integers(0, k[0])), int(g.rng.integers(0, k[1])))
        stride = (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))
        return nir.conv2d(x, weight, channels=c, out_channels=out, spatial=order, stride=stride, padding=pad)
    fn = nir.max_pool2d if g.rng.random() < 0.5 else nir.avg_pool2d
    return fn(x, k, stride=(1, int(g.rng.integers(1, 3))), padding=(k[0] // 2, k[1] // 2), spatial=order)


def _cumulative(g: _Gen, x: NamedTensor) -> NamedTensor:
    """cumsum, cumprod (of bounded values) or gather along one of x's dims."""
    if x.ndim == 0:
        return x
    d = g.choice(x.names)
    op = g.choice(["cumsum", "cumprod", "gather"])
    if op == "cumsum":
        return x.cumsum(d)
    if op == "cumprod":
        return (x.tanh() * 0.5 + 1.0).cumprod(d)
    picks = (x.argmax(d, keepdim=True) if g.rng.random() < 0.5 else x.argmin(d, keepdim=True))
    return nir.gather(x, d, picks) + x


def _pad_or_scatter(g: _Gen, x: NamedTensor) -> NamedTensor:
    """pad (edges, interior, crops) or take + scatter_add along one of x's dims."""
    if x.ndim == 0:
        return x
    d = g.choice(x.names)
    n = x.size(d)
    if g.rng.random() < 0.5:
        interior = int(g.rng.integers(0, 3))
        low, high = (int(g.rng.integers(-min(n - 1, 2), 3)) for _ in range(2))
        if low + high + n + (n - 1) * interior < 1:
            low = high = 0
        return nir.pad(x, {d: (low, high, interior)}, value=float(g.choice((0.0, -1.5))))
    k = next(name for name in ("K", "L", "M") if name not in x.names)
    idx = nir.tensor(g.rng.integers(0, n, size=int(g.rng.integers(1, 5))), names=(k,))
    return nir.scatter_add(x, idx, nir.take(x, idx, d).tanh() * 0.5, d)


def _scale(g: _Gen, x: NamedTensor) -> NamedTensor:
    """A positive int8 scale for ``x`` over a random subset of its dims (the others reduced by amax)."""
    per = [n for n in x.names if g.rng.random() < 0.5]
    rest = [n for n in x.names if n not in per]
    magnitude = x.abs().amax(rest) if rest else x.abs()
    return (magnitude + 0.5) * (1 / 127)


def _quant(g: _Gen, x: NamedTensor) -> NamedTensor:
    """quantize by a named scale, then dequantize, or an int8 contract_wide with a quantized new input."""
    q = nir.quantize_tensor(x, _scale(g, x))
    if x.ndim == 0 or g.rng.random() < 0.5:
        return nir.dequantize(q, _scale(g, x))
    over = g.subset(x.names)
    new = [n for n in NAMES if n not in x.names][:1]
    dims = [(n, x.size(n)) for n in over] + [(n, int(g.choice(SIZES))) for n in new]
    w = _new_input(g, [dims[i] for i in g.rng.permutation(len(dims))])
    acc = nir.contract_wide(q, nir.quantize_tensor(w, _scale(g, w)), over=over)
    return nir.dequantize(acc, nir.tensor(np.float32(1e-4)))


def _strided_step(g: _Gen, x: NamedTensor, c: str, hw: tuple[str, str]) -> tuple[NamedTensor, str]:
    """One window or stride step over x's spatial dims ``hw`` (channels ``c``): a max or average pool or a
    convolution (kernels 1-3, strides 1-3, padding 0-1), a pad with interior points, or a slice with step
    2-3. Returns the result and its channels' name (a convolution renames them)."""
    k = tuple(min(int(g.rng.integers(1, 4)), x.size(d)) for d in hw)
    stride = tuple(int(g.rng.integers(1, 4)) for _ in hw)
    op = g.choice(["max_pool", "avg_pool", "conv", "pad", "slice"])
    if op == "conv":
        out = next(n for n in NAMES if n not in x.names)
        dims = [(out, int(g.rng.integers(1, 4))), (c, x.size(c)), (hw[0], k[0]), (hw[1], k[1])]
        weight = _new_input(g, [dims[i] for i in g.rng.permutation(4)])
        pad = tuple(int(g.rng.integers(0, 2)) for _ in hw)
        return nir.conv2d(x, weight, channels=c, out_channels=out, spatial=hw, stride=stride, padding=pad), out
    if op in ("max_pool", "avg_pool"):
        pad = tuple(int(g.rng.integers(0, min(1, n // 2) + 1)) for n in k)  # at most half the kernel
        fn = nir.max_pool2d if op == "max_pool" else nir.avg_pool2d
        return fn(x, k, stride=stride, padding=pad, spatial=hw), c
    d = g.choice(hw)
    n = x.size(d)
    if op == "pad":
        interior = int(g.rng.integers(1, 3 if n <= 14 else 2))
        edges = (int(g.rng.integers(0, 2)), int(g.rng.integers(0, 2)))
        return nir.pad(x, {d: (*edges, interior)}, value=float(g.choice((0.0, -1.5)))), c
    start = int(g.rng.integers(0, min(3, n)))
    return bind("slice", [x], dim=d, start=start, stop=n, step=int(g.rng.integers(2, 4))), c


def _refactor(g: _Gen, x: NamedTensor) -> NamedTensor:
    """Two adjacent dims of x flattened, then split again into another factorization of their size when
    it has one (reads by ``i // n`` and ``i % n``)."""
    if x.ndim < 2:
        return x
    i = int(g.rng.integers(x.ndim - 1))
    a, b = x.names[i], x.names[i + 1]
    size = x.size(a) * x.size(b)
    f = x.flatten([a, b], f"{a}{b}")
    splits = [d for d in range(2, size) if size % d == 0 and d != x.size(a)]
    if not splits or g.rng.random() < 0.3:
        return f
    d = int(g.choice(splits))
    return f.unflatten(f"{a}{b}", ((a, d), (b, size // d)))


def _strided(g: _Gen) -> NamedTensor:
    """A chain on a new input with spatial dims of 6-14, 1-3 channels and, in most, a batch dim of 1-3:
    an elementwise prefix (a new per-dims scale, whose gradient reduces the window gradients), one or two
    `_strided_step`s, then one or two reductions, contractions or layout changes."""
    batch, c, h, w = (str(n) for n in g.rng.choice(NAMES, size=4, replace=False))
    dims = [(c, int(g.rng.integers(1, 4))), (h, int(g.choice(SPATIAL))), (w, int(g.choice(SPATIAL)))]
    if g.rng.random() < 0.8:
        dims.append((batch, int(g.rng.integers(1, 4))))
    x = _new_input(g, [dims[i] for i in g.rng.permutation(len(dims))])
    if g.rng.random() < 0.7:
        x = x * _new_input(g, [(n, x.size(n)) for n in g.subset(x.names)]).align_as(x)
    else:
        x = _unary(g, x)
    for _ in range(int(g.rng.integers(1, 3))):
        x, c = _strided_step(g, x, c, (h, w))
    for _ in range(int(g.rng.integers(1, 3))):
        x = g.choice([_reduce, _reduce, _contract, _layout, _refactor])(g, x)
    return x


STEPS: tuple[Callable[[_Gen, NamedTensor], NamedTensor], ...] = (_unary, _binary, _reduce, _contract, _layout,
                                                                _window, _cumulative)
# gradient mode also generates the primitives that backward programs are made of (a separate tuple, so
# that the forward mode's (seed, case) reproducers keep their programs)
GRAD_STEPS = STEPS + (_pad_or_scatter,)


def _chain(g: _Gen, x: NamedTensor, steps: int) -> NamedTensor:
    """``steps`` random `STEPS` from ``x``, inside a sub-program: what they make stays inside it."""
    outside = list(g.live)
    for _ in range(steps):
        x = g.choice(STEPS)(g, x)
        g.live.append(x)
    g.live = outside
    return x


def _control(g: _Gen) -> list[NamedTensor]:
    """A scan or a cond over live tensors whose step or branches are random chains of `STEPS` (which
    capture live tensors of the enclosing program); returns their results."""
    named = [t for t in g.live if t.ndim >= 1 and None not in t.names]
    if not named:
        return []
    x = g.choice(named)
    if g.rng.random() < 0.5:
        over = g.choice(x.names)

        def step(c: NamedTensor, x_t: NamedTensor) -> tuple[NamedTensor, NamedTensor]:
            y = _chain(g, (c * 0.5 + x_t).tanh(), int(g.rng.integers(1, 3)))
            if g.rng.random() < 0.25:  # a loop or branch inside the loop
                outside = list(g.live)
                g.live += [c, x_t, y]
                y = y + sum(t.mean() for t in _control(g)) * 0.1
                g.live = outside
            if over in y.names:  # a new dim may take the scanned dim's name: ys cannot have it
                y = y.sum(over)
            return (c * 0.5 + x_t).tanh() + y.mean() * 0.1, y
        init = x.select(over, 0) * 0.5
        carry, ys = nir.scan(step, init, x, over=over, reverse=bool(g.rng.random() < 0.3))
        return [carry, ys]
    # an input's sum: random, so never near 0 (an intermediate's can be 0 up to rounding, e.g. after
    # layer_norm, and backends would then rightly disagree on the branch)
    pred = g.choice(g.inputs).sum() > 0

    def branch(a: NamedTensor) -> NamedTensor:
        return a * 0.5 + _chain(g, a, int(g.rng.integers(1, 3))).mean()
    return [nir.cond(pred, branch, branch, x)]  # each call of `branch` draws its own chain


def random_program(seed: int, case: int, max_ops: int = 6, steps: Sequence[Callable[..., NamedTensor]] = STEPS,
                   dtype: str = "float32", control: bool = True, quantized: bool = True, strided: bool = True
                   ) -> tuple[Program, list[np.ndarray]]:
    """The program for (seed, case): deterministic, well named, 1-``max_ops`` API calls deep, drawn from
    ``steps`` (with a scan or cond in some when ``control``, an int8 step in some float32 ones when
    ``quantized``, and a `_strided` window chain in some when ``strided``); ``dtype`` only changes the
    precision (the same seed gives the same program)."""
    rng = np.random.default_rng([seed, case])
    names = [str(n) for n in rng.choice(NAMES, size=int(rng.integers(1, 5)), replace=False)]
    specs = [nir.spec(names=tuple(names), shape=tuple(int(rng.choice(SIZES)) for _ in names), dtype=dtype)]
    if rng.random() < 0.5:
        sub = [n for n in names if rng.random() < 0.6]
        specs.append(nir.spec(names=tuple(sub), shape=tuple(specs[0].shape[names.index(n)] for n in sub),
                              dtype=dtype))
    g = _Gen(rng, dtype=dtype)

    def fn(*xs: NamedTensor) -> Any:
        g.live = list(xs)
        x = xs[0]
        for _ in range(int(rng.integers(1, max_ops + 1))):
            x = g.choice(steps)(g, x)
            g.live.append(x)
        outs = [x] + ([g.choice(g.live)] if rng.random() < 0.3 else [])
        if control:
            # control flow draws from its own stream and adds equations after the others, so every
            # (seed, case) without it is the program it always was, inputs and layouts included
            flow = _Gen(np.random.default_rng([seed, case, 7]), live=list(g.live), constants=True, inputs=list(xs))
            if flow.rng.random() < CONTROL_RATE:
                outs += _control(flow)
        # a quantization step from its own stream, as an extra output, likewise
        quant = _Gen(np.random.default_rng([seed, case, 2]), g.extra, g.extra_tensors, g.live, dtype=dtype)
        if quantized and dtype == "float32" and quant.rng.random() < QUANT_RATE:
            outs.append(_quant(quant, x))
        # a strided window chain from its own stream, drawn last, likewise (its new inputs come last too;
        # only the random layouts, drawn over the inputs first, change)
        windows = _Gen(np.random.default_rng([seed, case, 3]), g.extra, g.extra_tensors, g.live, dtype=dtype)
        if strided and windows.rng.random() < STRIDED_RATE:
            outs.append(_strided(windows))
        return tuple(outs)

    program = nir.trace(fn, *specs).program
    return program, random_inputs(program, seed=seed * 100_003 + case)


def random_layouts(program: Program, rng: np.random.Generator) -> Program:
    """``program`` with random physical orders on about half of its values."""
    def lay(p: Program, rng: np.random.Generator) -> Program:
        layouts = {}
        for v in p.values():
            if v.type.ndim >= 2 and rng.random() < 0.5:
                layouts[v.id] = tuple(v.type.names[i] for i in rng.permutation(v.type.ndim))
        return p.with_layouts(layouts)
    out = lay(program, rng)
    if not any(e.subprograms for e in program.eqns):
        return out
    inner = np.random.default_rng(rng.integers(2**32))  # drawn last: the outer layouts stay as they were
    return out.map_subprograms(lambda sub: lay(sub, inner))


def _slice_to(program: Program, value: Value) -> Program:
    """The smallest program computing ``value``: equations it does not depend on removed."""
    need = {value.id}
    eqns = []
    for e in reversed(program.eqns):
        if any(o.id in need for o in e.outputs):
            eqns.append(e)
            need.update(v.id for v in e.inputs)
    inputs = tuple(v for v in program.inputs if v.id in need)
    return Program(inputs, tuple(reversed(eqns)), (value,))


def _run(backend: str, program: Program, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    exe = _backends.get(backend).build(program, parse_target("llvm"))
    return [np.asarray(o) for o in exe(*inputs)]


def _agrees(program: Program, inputs: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> bool:
    return mismatch(got, expected(program, inputs)) is None


def shrink(program: Program, inputs: Sequence[np.ndarray], run: Callable[[Program, list], list]) -> Program:
    """The smallest slice of ``program`` ending at the first value on which ``run`` disagrees with the
    float64 reference (or the program itself if no single value does)."""
    by_id = {v.id: a for v, a in zip(program.inputs, inputs)}
    for value in (v for e in program.eqns for v in e.outputs):
        p = _slice_to(program, value)
        ins = [by_id[v.id] for v in p.inputs]
        try:
            ok = _agrees(p, ins, run(p, ins))
        except Exception:  # noqa: BLE001 - a crash on the slice is a disagreement too
            ok = False
        if not ok:
            return p
    return program


@dataclass
class Failure:
    """One disagreement or crash, with everything needed to reproduce it."""

    seed: int
    case: int
    backend: str
    message: str
    program: Program
    flags: str = ""  # extra command-line flags of the mode that found it (" --grad")

    def report(self) -> str:
        return (f"FAIL backend={self.backend} seed={self.seed} case={self.case}: {self.message}\n"
                f"reproduce: nir fuzz --seed {self.seed} --case {self.case} --backends {self.backend}{self.flags}\n"
                f"shrunk program:\n{self.program.text}")


UNSUPPORTED = "unsupported primitive"
MAX_UNCHECKED = 0.1  # the CI fuzz run fails when more programs than this are not checked at full strength


def check_case(seed: int, case: int, backends: Sequence[str], max_ops: int = 6
               ) -> tuple[list[Failure], Counter[str]]:
    """Run one generated program on ``backends`` and compare each result with the program's float64
    answer at the tolerance its conditioning allows (`nir.precision`). Returns the failures and, by
    reason, the backend runs not checked at full strength: skipped (the backend does not support a
    primitive) or checked at a tolerance that could hide a 0.1% error (`Expected.weakness`)."""
    program, inputs = random_program(seed, case, max_ops)
    program = random_layouts(program, np.random.default_rng([seed, case, 1]))
    return _check_backends(seed, case, program, inputs, backends)


def _check_backends(seed: int, case: int, program: Program, inputs: Sequence[np.ndarray], backends: Sequence[str],
                    flags: str = "") -> tuple[list[Failure], Counter[str]]:
    """Run ``program`` on each backend and compare with its float64 answer; (failures, unchecked by reason)."""
    exp = expected(program, inputs, seed=case)
    failures, unchecked = [], Counter()
    for b in backends:
        def run(p: Program, ins: list, b: str = b) -> list:
            return _run(b, p, ins)
        try:
            got = run(program, list(inputs))
        except _backends.BackendError as e:
            if "not supported" in str(e) or "unsupported" in str(e):
                unchecked[UNSUPPORTED] += 1
                continue
            failures.append(Failure(seed, case, b, f"{type(e).__name__}: {e}", shrink(program, inputs, run), flags))
            continue
        except Exception as e:  # noqa: BLE001 - every crash is a finding
            failures.append(Failure(seed, case, b, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}",
                                    shrink(program, inputs, run), flags))
            continue
        problem = mismatch(got, exp)
        if problem is not None:
            failures.append(Failure(seed, case, b, f"outputs differ from the float64 reference: {problem}",
                                    shrink(program, inputs, run), flags))
        elif exp.weakness is not None:
            unchecked[exp.weakness] += 1
    return failures, unchecked


def finite_difference_error(program: Program, inputs: Sequence[np.ndarray], seed: int = 0) -> float | None:
    """How far the reference gradient of ``program`` (float64) is from central differences, along a random
    direction with a random cotangent, relative to the gradient's size; None when inconclusive (two
    step sizes disagree: a kink lies within the step)."""
    from .autodiff import vjp_program
    rng = np.random.default_rng(seed)
    outs = [i for i, v in enumerate(program.outputs) if v.type.dtype.startswith("float")]
    cts = [rng.standard_normal(program.outputs[i].type.shape) for i in outs]
    grads = interpret(vjp_program(program), *inputs, *cts)
    dirs = [rng.standard_normal(np.shape(x)) for x in inputs]

    def along(eps: float) -> float:
        got = interpret(program, *[x + eps * d for x, d in zip(inputs, dirs)])
        return sum(float(np.sum(got[i] * c)) for i, c in zip(outs, cts))

    def central(eps: float) -> float:
        return (along(eps) - along(-eps)) / (2 * eps)

    analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, dirs))
    fine, coarse = central(1e-6), central(1e-4)
    scale = max(1.0, abs(analytic), abs(fine)) + 1e-8 * abs(along(0.0))
    if not np.isfinite(analytic) or abs(fine - coarse) > 1e-4 * scale:
        return None if np.isfinite(analytic) else float("inf")
    return abs(analytic - fine) / scale


def check_grad_case(seed: int, case: int, backends: Sequence[str], max_ops: int = 6
                    ) -> tuple[list[Failure], Counter[str], bool]:
    """Gradient mode for one generated program: its backward program on ``backends`` against the
    reference (random layouts and cotangents), and the float64 reference gradient against central
    differences. Returns (failures, backend runs not checked at full strength by reason, whether the finite-difference check was conclusive)."""
    from .autodiff import vjp_program
    from .testing import random_array
    program, inputs = random_program(seed, case, max_ops, GRAD_STEPS, control=False, quantized=False)
    back = vjp_program(program)
    rng = np.random.default_rng([seed, case, 2])
    cts = [random_array(v.type, rng) for v in back.inputs[len(program.inputs):]]
    failures, unchecked = _check_backends(seed, case, random_layouts(back, rng), [*inputs, *cts], backends, " --grad")
    wide, wide_inputs = random_program(seed, case, max_ops, GRAD_STEPS, dtype="float64", control=False,
                                        quantized=False)
    err = finite_difference_error(wide, wide_inputs, seed=case)
    if err is not None and err > 1e-5:
        failures.append(Failure(seed, case, "reference", f"the gradient differs from central differences in float64 "
                                f"(relative error {err:.3g})", wide, " --grad"))
    return failures, unchecked, err is not None


def main(argv: Sequence[str] | None = None) -> int:
    """`nir fuzz`: run generated programs on every installed backend for a time budget."""
    parser = argparse.ArgumentParser(prog="nir fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="time budget (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, default=None, help="run only this case (a reproducer)")
    parser.add_argument("--start", type=int, default=0, help="first case number")
    parser.add_argument("--max-ops", type=int, default=6)
    parser.add_argument("--backends", default=",".join(b for b in _backends.available() if b != "reference"),
                        help="comma-separated (default: every installed compiling backend)")
    parser.add_argument("--grad", action="store_true",
                        help="gradient mode: backward programs across backends and against finite differences")
    args = parser.parse_args(list(argv or []))
    backends = [b for b in args.backends.split(",") if b]
    if not backends:
        print("nir fuzz: no compiling backend installed (pip install \"named-ir[tvm]\" or \"named-ir[xla]\")")
        return 2
    cases = [args.case] if args.case is not None else None
    deadline = time.monotonic() + args.minutes * 60
    n = failures = fell_back = conclusive = 0
    unchecked: Counter[str] = Counter()
    case = args.start
    while (cases is None and time.monotonic() < deadline) or (cases is not None and n < len(cases)):
        c = cases[n] if cases is not None else case
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _backends.FallbackWarning)
            if args.grad:
                fails, unc, checked = check_grad_case(args.seed, c, backends, args.max_ops)
                conclusive += checked
            else:
                fails, unc = check_case(args.seed, c, backends, args.max_ops)
        fell_back += any(issubclass(w.category, _backends.FallbackWarning) for w in caught)
        unchecked += unc
        for f in fails:
            failures += 1
            print(f.report(), flush=True)
        n += 1
        case += 1
        if n % 50 == 0:
            print(f"... {n} programs, {failures} failures", file=sys.stderr, flush=True)
    runs = n * len(backends)
    mode = f" (gradients; {conclusive} finite-difference checks conclusive)" if args.grad else ""
    print(f"nir fuzz: {n} programs x {len(backends)} backends ({', '.join(backends)}), seed {args.seed}{mode}: "
          f"{failures} failures")
    print(f"not checked at the per-primitive tolerance: {sum(unchecked.values())} of {runs} runs"
          + "".join(f"\n  {count}: {reason}" for reason, count in sorted(unchecked.items())))
    print(f"fell back to unscheduled: {fell_back} programs")
    return 1 if failures else 0
