"""Test helpers shared by every backend's tests: one sample program per primitive (and variant), random
inputs that are never all zeros, and tolerances per dtype.

    for case in op_samples("float32"):
        got = backend.build(case.program, target)(*case.inputs)
        assert_close(got, interpret(case.program, *case.inputs), case.dtype)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .interpret import interpret
from .ir import Builder, Program
from .types import TensorType, canonical_dtype, is_float, numpy_dtype

__all__ = ["OpSample", "op_samples", "random_array", "random_inputs", "tolerance", "assert_close"]

# (rtol, atol) for comparing a backend with the reference, per dtype
TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-9), "float32": (2e-5, 2e-5), "float16": (2e-2, 2e-2), "bfloat16": (6e-2, 6e-2),
}
POSITIVE = {"log", "sqrt", "rsqrt", "pow"}


def tolerance(dtype: str) -> tuple[float, float]:
    """(rtol, atol) used for ``dtype``; exact for integers and bools."""
    return TOLERANCE.get(dtype, (0.0, 0.0))


def random_array(t: TensorType, rng: np.random.Generator, positive: bool = False, high: int = 5) -> np.ndarray:
    """Random data of type ``t`` in logical order: normal floats (|x|+0.5 when ``positive``),
    integers in [0, high), random bools."""
    if t.dtype == "bool":
        a = rng.random(t.shape) < 0.5
    elif is_float(t.dtype):
        a = rng.standard_normal(t.shape)
        if positive:
            a = np.abs(a) + 0.5
    else:
        a = rng.integers(0, high, size=t.shape)
    return np.array(a, dtype=numpy_dtype(t.dtype), order="C")


def random_inputs(program: Program, seed: int = 0, positive: bool = False) -> list[np.ndarray]:
    """Random inputs for every program input."""
    rng = np.random.default_rng(seed)
    return [random_array(v.type, rng, positive) for v in program.inputs]


@dataclass(frozen=True)
class OpSample:
    """One primitive applied to random inputs: ``program`` has a single equation of ``prim``."""

    prim: str
    label: str
    dtype: str
    program: Program
    inputs: tuple[np.ndarray, ...]

    @property
    def id(self) -> str:
        return f"{self.prim}-{self.label}-{self.dtype}"


def _T(dims: dict[str, int], dtype: str) -> TensorType:
    return TensorType.of(dims, dtype)


def _one(prim: str, in_types: Sequence[TensorType], **params: Any) -> Program:
    b = Builder()
    vs = [b.input(t) for t in in_types]
    return b.build([b.add(prim, vs, **params)])


def _cases(dtype: str) -> list[tuple[str, str, Program]]:
    """(prim, label, program) for every primitive and its interesting variants."""
    from . import ops
    f = dtype
    NC = _T({"N": 3, "C": 4}, f)
    NCHW = _T({"N": 2, "C": 3, "H": 5, "W": 6}, f)
    cases: list[tuple[str, str, Program]] = []
    for name in ops.UNARY:
        if name == "logical_not":
            cases.append((name, "bool", _one(name, [_T({"N": 3, "C": 4}, "bool")])))
        else:
            cases.append((name, "nc", _one(name, [NC])))
    for name in ops.BINARY:
        if name.startswith("logical"):
            bt = _T({"N": 3, "C": 4}, "bool")
            cases.append((name, "bool", _one(name, [bt, _T({"C": 4}, "bool")])))
            continue
        cases.append((name, "same", _one(name, [NC, NC])))
        cases.append((name, "bcast-by-name", _one(name, [_T({"C": 4, "N": 3}, f), _T({"N": 3}, f)])))
        cases.append((name, "size1", _one(name, [_T({"N": 3, "C": 1}, f), _T({"C": 4, "H": 2}, f)])))
    cases.append(("where", "bcast", _one("where", [_T({"N": 3, "C": 4}, "bool"), _T({"C": 4}, f), NC])))
    cases.append(("cast", "to-int32", _one("cast", [NC], dtype="int32")))
    cases.append(("cast", "to-float32", _one("cast", [_T({"N": 3, "C": 4}, "int32")], dtype="float32")))
    cases.append(("full", "2d", _one("full", [], value=1.5, dims=(("N", 2), ("C", 3)), dtype=f)))
    cases.append(("iota", "1d", _one("iota", [], dim="N", size=7, start=1.0, step=0.5, dtype=f)))
    data = np.arange(6, dtype=numpy_dtype(f)).tobytes()
    cases.append(("constant", "2d", _one("constant", [], data=data, dims=(("N", 2), ("C", 3)), dtype=f)))
    for name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        cases.append((name, "one", _one(name, [NCHW], dims=("C",))))
        cases.append((name, "two", _one(name, [NCHW], dims=("W", "N"))))
    cases.append(("reduce_sum", "all", _one("reduce_sum", [NC], dims=("N", "C"))))
    # long enough that accumulating in float16/bfloat16 themselves (not float32) would be far off
    cases.append(("reduce_sum", "long", _one("reduce_sum", [_T({"N": 2, "K": 600}, f)], dims=("K",))))
    for name in ("argmax", "argmin"):
        cases.append((name, "inner", _one(name, [NCHW], dim="W")))
        cases.append((name, "outer", _one(name, [NCHW], dim="N")))
    for name in ("softmax", "log_softmax"):
        cases.append((name, "inner", _one(name, [NCHW], dim="W")))
        cases.append((name, "outer", _one(name, [NCHW], dim="C")))
    cases.append(("layer_norm", "last", _one("layer_norm", [NCHW], dims=("W",), eps=1e-5)))
    cases.append(("layer_norm", "CHW", _one("layer_norm", [NCHW], dims=("C", "H", "W"), eps=1e-5)))
    cases.append(("contract", "matmul", _one("contract", [_T({"M": 5, "K": 6}, f), _T({"K": 6, "N": 7}, f)],
                                            over=("K",))))
    cases.append(("contract", "batched", _one("contract", [_T({"B": 2, "M": 5, "K": 6}, f),
                                                          _T({"N": 4, "K": 6, "B": 2}, f)], over=("K",))))
    cases.append(("contract", "two-dims", _one("contract", [_T({"K": 3, "M": 5, "J": 4}, f),
                                                           _T({"J": 4, "K": 3}, f)], over=("K", "J"))))
    cases.append(("contract", "outer", _one("contract", [_T({"M": 3}, f), _T({"N": 4}, f)], over=())))
    conv = dict(channels="C", out_channels="O", spatial=("H", "W"), dilation=(1, 1))
    w = _T({"O": 4, "C": 3, "H": 3, "W": 3}, f)
    cases.append(("conv2d", "nchw-pad1", _one("conv2d", [NCHW, w], stride=(1, 1), padding=(1, 1), groups=1, **conv)))
    cases.append(("conv2d", "nhwc-stride2", _one("conv2d", [_T({"N": 2, "H": 7, "W": 6, "C": 3}, f),
                                                            _T({"H": 3, "W": 2, "C": 3, "O": 5}, f)],
                                                 stride=(2, 2), padding=(0, 1), groups=1, **conv)))
    cases.append(("conv2d", "groups", _one("conv2d", [_T({"N": 1, "C": 4, "H": 6, "W": 6}, f),
                                                      _T({"O": 6, "C": 2, "H": 3, "W": 3}, f)],
                                           stride=(1, 1), padding=(1, 1), groups=2, **conv)))
    cases.append(("conv2d", "depthwise", _one("conv2d", [_T({"N": 2, "C": 4, "H": 7, "W": 6}, f),
                                                         _T({"O": 4, "C": 1, "H": 3, "W": 3}, f)],
                                              stride=(2, 1), padding=(1, 1), groups=4, **conv)))
    cases.append(("pool2d", "max", _one("pool2d", [NCHW], kind="max", kernel=(2, 2), stride=(2, 2),
                                        padding=(0, 0), spatial=("H", "W"))))
    cases.append(("pool2d", "avg-pad", _one("pool2d", [NCHW], kind="avg", kernel=(3, 3), stride=(1, 2),
                                            padding=(1, 1), spatial=("H", "W"))))
    cases.append(("align", "permute", _one("align", [NCHW], dims=(("W", 6), ("N", 2), ("H", 5), ("C", 3)))))
    cases.append(("align", "insert-expand", _one("align", [_T({"C": 3, "H": 1}, f)],
                                                 dims=(("N", 2), ("C", 3), ("H", 4), ("W", 1)))))
    cases.append(("squeeze", "one", _one("squeeze", [_T({"N": 3, "O": 1, "C": 4}, f)], dims=("O",))))
    cases.append(("rename", "one", _one("rename", [NC], mapping=(("C", "D"),))))
    cases.append(("flatten", "inner", _one("flatten", [NCHW], dims=("H", "W"), into="HW")))
    cases.append(("flatten", "reordered", _one("flatten", [NCHW], dims=("W", "C"), into="WC")))
    cases.append(("unflatten", "split", _one("unflatten", [_T({"N": 2, "D": 12}, f)], dim="D",
                                             parts=(("H", 3), ("W", 4)))))
    cases.append(("select", "mid", _one("select", [NCHW], dim="C", index=1)))
    cases.append(("select", "off-centre", _one("select", [NCHW], dim="W", index=4)))  # its mirror is index 1
    cases.append(("slice", "strided", _one("slice", [NCHW], dim="W", start=1, stop=6, step=2)))
    cases.append(("concat", "three", _one("concat", [NC, _T({"C": 4, "N": 2}, f), _T({"N": 1, "C": 4}, f)],
                                          dim="N")))
    cases.append(("take", "embedding", _one("take", [_T({"V": 5, "D": 4}, f), _T({"B": 2, "S": 3}, "int64")],
                                            dim="V")))
    for name in ("cumsum", "cumprod"):
        cases.append((name, "inner", _one(name, [NCHW], dim="W", reverse=False)))
        cases.append((name, "outer-reverse", _one(name, [NCHW], dim="N", reverse=True)))
    cases.append(("cumsum", "int64", _one("cumsum", [_T({"B": 2, "T": 5}, "int64")], dim="T", reverse=False)))
    cases.append(("gather", "torch-like", _one("gather", [_T({"B": 2, "V": 6}, f), _T({"B": 2, "V": 3}, "int64")],
                                              dim="V")))
    cases.append(("gather", "new-dims", _one("gather", [_T({"V": 5, "B": 2}, f),
                                                        _T({"K": 3, "B": 2, "S": 4}, "int32")], dim="V")))
    cases.append(("scan", "rnn", _scan_rnn(f, reverse=False)))
    cases.append(("scan", "reverse", _scan_rnn(f, reverse=True)))
    cases.append(("cond", "two-outputs", _cond(f)))
    cases.append(("pad", "edges", _one("pad", [NCHW], pads=(("H", 1, 2, 0), ("W", 0, 1, 0)), value=0.0)))
    cases.append(("pad", "interior-crop", _one("pad", [NCHW], pads=(("W", 2, -3, 2), ("H", -1, 1, 1)),
                                               value=-math.inf)))
    cases.append(("scatter_add", "embedding", _one("scatter_add", [_T({"V": 5, "D": 4}, f),
                                                                   _T({"B": 2, "S": 3}, "int64"),
                                                                   _T({"D": 4, "S": 3, "B": 2}, f)], dim="V")))
    return cases


def _scan_rnn(dtype: str, reverse: bool) -> Program:
    """A scan over T (in the middle of x's dims) with a captured weight, a carry and two stacked outputs:
    h = tanh(x_t . w + h); ys = (h, sum(x_t))."""
    body = Builder()
    w, h, x = (body.input(_T(d, dtype)) for d in ({"I": 3, "H": 4}, {"N": 2, "H": 4}, {"N": 2, "I": 3}))
    h2 = body.add("tanh", [body.add("add", [body.add("contract", [x, w], over=("I",)), h])])
    b = Builder()
    ins = [b.input(_T(d, dtype)) for d in ({"I": 3, "H": 4}, {"N": 2, "H": 4}, {"N": 2, "T": 5, "I": 3})]
    outs = b.add_multi("scan", ins, body=body.build([h2, h2, body.add("reduce_sum", [x], dims=("N", "I"))]),
                       over="T", reverse=reverse, num_consts=1, num_carry=1)
    return b.build(outs)


def _cond(dtype: str) -> Program:
    """exp(x), x * y if pred else -x, x - y."""
    branches = []
    for ops_ in ((("exp", 0), ("mul", 0, 1)), (("neg", 0), ("sub", 0, 1))):
        br = Builder()
        xs = [br.input(_T({"N": 3, "C": 4}, dtype)), br.input(_T({"C": 4}, dtype))]
        branches.append(br.build([br.add(op, [xs[i] for i in args]) for op, *args in ops_]))
    b = Builder()
    ins = [b.input(_T({}, "bool")), b.input(_T({"N": 3, "C": 4}, dtype)), b.input(_T({"C": 4}, dtype))]
    return b.build(b.add_multi("cond", ins, true_branch=branches[0], false_branch=branches[1]))


def op_samples(dtype: str = "float32", seed: int = 0) -> list[OpSample]:
    """Every primitive (with variants) on random inputs of ``dtype``. Integer inputs of `take` stay
    in range; inputs of log/sqrt/rsqrt/pow are positive."""
    out = []
    for i, (prim, label, program) in enumerate(_cases(dtype)):
        rng = np.random.default_rng(seed + i)
        positive = prim in POSITIVE or label == "long"  # (a long sum of positive terms shows its accumulator)
        inputs = tuple(random_array(v.type, rng, positive=positive) for v in program.inputs)
        out.append(OpSample(prim, label, dtype, program, inputs))
    return out


def assert_close(got: Sequence[Any], want: Sequence[np.ndarray], dtype: str, scale: float = 1.0) -> None:
    """Assert backend outputs equal reference outputs: the same dtype and shape, integer and bool values
    exactly (int64 is never compared through floats), floating-point values at ``dtype``'s tolerance
    (times ``scale``; NaN matches NaN)."""
    rtol, atol = tolerance(dtype)
    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, expected {w.shape}"
        if not is_float(canonical_dtype(w.dtype)):
            bad = np.argwhere(g != w)
            assert not bad.size, (f"output {i} ({w.dtype}) differs from the reference at {len(bad)} of {w.size} "
                                  f"positions, first at {tuple(bad[0])}: got {g[tuple(bad[0])]!r}, "
                                  f"expected {w[tuple(bad[0])]!r}")
            continue
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol * scale,
                                   atol=atol * scale, equal_nan=True,
                                   err_msg=f"output {i} differs from the reference ({dtype})")


def check_against_reference(run: Callable[..., Sequence[Any]], program: Program, inputs: Sequence[np.ndarray],
                            dtype: str, scale: float = 1.0) -> None:
    """Run ``run(*inputs)`` and compare with the reference interpreter."""
    assert_close(run(*inputs), interpret(program, *inputs), dtype, scale)


def _grad_cases(dtype: str) -> list[tuple[str, str, Program]]:
    """Variants that matter for gradients beyond `_cases`: transposed-convolution corner cases
    (dilation, cropping pads, groups with strides, no or several batch dims) and overlapping pools."""
    f = dtype
    conv = dict(channels="C", out_channels="O", spatial=("H", "W"))
    x = _T({"N": 2, "C": 4, "H": 7, "W": 6}, f)
    return [
        ("conv2d", "dilated-strided", _one("conv2d", [x, _T({"O": 3, "C": 4, "H": 3, "W": 2}, f)], stride=(2, 1),
                                           padding=(1, 0), dilation=(2, 2), groups=1, **conv)),
        ("conv2d", "pad-over-kernel", _one("conv2d", [x, _T({"O": 2, "C": 4, "H": 2, "W": 1}, f)], stride=(1, 2),
                                           padding=(2, 1), dilation=(1, 1), groups=1, **conv)),
        ("conv2d", "groups-strided", _one("conv2d", [x, _T({"W": 3, "O": 6, "H": 2, "C": 2}, f)], stride=(2, 2),
                                          padding=(1, 1), dilation=(1, 1), groups=2, **conv)),
        ("conv2d", "no-batch", _one("conv2d", [_T({"C": 2, "H": 5, "W": 5}, f), _T({"O": 3, "C": 2, "H": 3, "W": 3}, f)],
                                    stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, **conv)),
        ("conv2d", "two-batch-nhwc", _one("conv2d", [_T({"B": 2, "H": 5, "W": 4, "N": 2, "C": 3}, f),
                                                     _T({"O": 2, "C": 3, "H": 2, "W": 2}, f)],
                                          stride=(1, 1), padding=(1, 0), dilation=(1, 1), groups=1, **conv)),
        ("pool2d", "max-overlap-pad", _one("pool2d", [x], kind="max", kernel=(3, 2), stride=(1, 2), padding=(1, 1),
                                           spatial=("H", "W"))),
        ("pool2d", "avg-strided", _one("pool2d", [_T({"H": 7, "W": 6, "C": 3}, f)], kind="avg", kernel=(3, 2),
                                       stride=(2, 2), padding=(1, 0), spatial=("H", "W"))),
        ("pad", "interior-finite", _one("pad", [x], pads=(("W", 2, -3, 2), ("H", -1, 1, 1)), value=0.5)),
        ("slice", "strided-tail", _one("slice", [x], dim="H", start=1, stop=6, step=3)),
        ("cast", "float-to-float", _one("cast", [x], dtype="float32" if f == "float64" else "float64")),
        ("cumprod", "with-zeros", _one("cumprod", [_T({"N": 3, "T": 6}, f)], dim="T", reverse=False)),
        ("cumprod", "with-zeros-reverse", _one("cumprod", [_T({"T": 6, "N": 3}, f)], dim="T", reverse=True)),
        ("gather", "negative-new-dim", _one("gather", [_T({"V": 5, "B": 2}, f), _T({"B": 2, "K": 4}, "int64")],
                                           dim="V")),
    ]


def grad_samples(dtype: str = "float64", seed: int = 0) -> list[OpSample]:
    """Samples whose primitive has a gradient to check: every `op_samples` case of a primitive with a VJP
    rule, a float input and a float output (except padding with an infinite value), plus the gradient
    corner cases."""
    from . import ops
    from .types import is_float
    out = [c for c in op_samples(dtype, seed)
           if ops.get(c.prim).vjp is not None and any(is_float(v.type.dtype) for v in c.program.inputs)
           and any(is_float(v.type.dtype) for v in c.program.outputs) and c.label != "interior-crop"]
    for i, (prim, label, program) in enumerate(_grad_cases(dtype)):
        rng = np.random.default_rng(seed + 1000 + i)
        inputs = [random_array(v.type, rng) for v in program.inputs]
        if label.startswith("with-zeros"):  # one zero in some rows, two in another
            t = program.inputs[0].type
            a = np.moveaxis(inputs[0], t.names.index("T"), -1)
            a[0, 2] = a[1, 1] = a[1, 4] = 0
        if label == "negative-new-dim":
            inputs[1] = inputs[1] - 3  # indices in [-3, 2): negative ones count from the end
        out.append(OpSample(prim, label, dtype, program, tuple(inputs)))
    return out
