"""Lower a nir Program to a Relax module whose entry is "main", built with `relax.BlockBuilder`.

`LOWERINGS` maps every primitive to a function ``(eqn, *args) -> Named``, or, for a primitive with
sub-programs (scan, cond; see `control.py`), to a `Control`: its `prepare` adds Relax functions for
the sub-programs to the module before "main" is built, and its `emit` calls them from main's
dataflow block, returning one `Named` per output. Each argument is a `Named`: a
Relax expression whose axes follow the input value's *physical* order (`Value.physical_order`). A
lowering may return its result with axes in any order it finds convenient (it says which, in the
returned `Named`); `lower_program` then permutes the result into the output value's physical order.
Dimension names exist only here, at lowering time: the Relax module knows nothing but axis numbers.

Calling convention of the Relax function: inputs arrive in each input's LOGICAL order and outputs
leave in each output's LOGICAL order (always as a tuple); permutes at the boundary convert between
logical and physical orders where a layout differs.

float16 and bfloat16 are computed like the reference interpreter computes them: contractions and
convolutions accumulate in float32 (``out_dtype``), sums, products and normalizations run in float32,
and every result is rounded back to its dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tvm
from tvm import relax, te
from tvm.relax import op as R

from nir import ops
from nir.ir import Eqn, Program
from nir.ops.quant import INT8_RANGE
from nir.types import is_float, numpy_dtype

from . import int8
from .blocks import _divisor, lanes
from .pad import lower_pad
from .named import (LOW_PRECISION, Lowering, Named, _axes, _image_layout, _to_image, align, bind, broadcast,
                    downcast, permute, reshape, upcast)

__all__ = ["Named", "LOWERINGS", "lower_program", "LOW_PRECISION", "Control", "LoweringContext", "emit_program"]

# ---------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------

def _zero(x: relax.Expr) -> relax.Expr:
    return relax.const(0, x.ty.dtype)


def _isnan(a: relax.Expr) -> relax.Expr:
    """R.isnan, through float32 for bfloat16 (which TVM's isnan lacks; ``a != a`` would be simplified away)."""
    return R.isnan(R.astype(a, "float32") if str(a.ty.dtype) == "bfloat16" else a)


def _never_nan(e: relax.Expr) -> bool:
    """Whether ``e`` is a constant (or a variable bound to one) with no NaN in it."""
    if isinstance(e, relax.Var):
        bound = relax.BlockBuilder.current().lookup_binding(e)
        e = e if bound is None else bound
    return isinstance(e, tvm.ir.expr.Constant) and not np.isnan(e.value.numpy()).any()


def _nan_choose(a: relax.Expr, b: relax.Expr, before: Callable[..., relax.Expr],
                no_later: Callable[..., relax.Expr]) -> relax.Expr:
    """numpy's maximum (``before=R.greater, no_later=R.less_equal``) or minimum (``R.less,
    R.greater_equal``): NaN if either operand is NaN, where TVM's max and min return the other operand;
    ``b`` on ties. Against a constant ``b`` that is not NaN (a clamp's bound, as in ReLU6 and hardswish)
    one compare and select keep NaN, since the compare is false for it; otherwise the select also tests
    ``a`` for NaN (a NaN ``b`` wins when the compare is false)."""
    if not is_float(str(a.ty.dtype)):
        return (R.maximum if before is R.greater else R.minimum)(a, b)
    if _never_nan(b):
        return R.where(no_later(a, b), b, a)
    if _never_nan(a):
        return R.where(before(a, b), a, b)
    return R.where(R.logical_or(before(a, b), _isnan(a)), a, b)


def _nan_max(a: relax.Expr, b: relax.Expr) -> relax.Expr:
    """numpy's maximum: NaN if either operand is NaN."""
    return _nan_choose(a, b, R.greater, R.less_equal)


def _nan_min(a: relax.Expr, b: relax.Expr) -> relax.Expr:
    """numpy's minimum: NaN if either operand is NaN."""
    return _nan_choose(a, b, R.less, R.greater_equal)


UNARY: dict[str, Callable[[relax.Expr], relax.Expr]] = {
    "neg": R.negative, "abs": R.abs, "relu": lambda x: R.where(R.less(x, _zero(x)), _zero(x), x),  # keeps NaN
    "exp": R.exp, "log": R.log, "sqrt": R.sqrt,
    "rsqrt": R.rsqrt, "tanh": R.tanh, "sigmoid": R.sigmoid, "sin": R.sin, "cos": R.cos,
    "erf": R.erf, "logical_not": R.logical_not,
}
BINARY: dict[str, Callable[[relax.Expr, relax.Expr], relax.Expr]] = {
    "add": R.add, "sub": R.subtract, "mul": R.multiply, "div": R.divide, "pow": R.power,
    "maximum": _nan_max, "minimum": _nan_min, "eq": R.equal, "ne": R.not_equal, "lt": R.less,
    "le": R.less_equal, "gt": R.greater, "ge": R.greater_equal, "logical_and": R.logical_and,
    "logical_or": R.logical_or,
}


# TVM has no arithmetic or ordering on bool (uint1): these compute on int8 and round back (add is
# logical or, mul logical and, maximum or, minimum and, as in PyTorch)
BOOL_AS_INT8 = {"add", "mul", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"}


def as_int8(x: Named) -> Named:
    """A bool ``x`` as int8 (0 or 1); others unchanged."""
    return bind(R.astype(x.expr, "int8"), x.names) if x.dtype == "bool" else x


def _elementwise(fn: Callable[..., relax.Expr], wide: bool = False) -> Lowering:
    """Broadcast by name: every operand is aligned to the output's physical order, then ``fn``
    (in float32 for low-precision operands when ``wide``)."""
    def lower(eqn: Eqn, *args: Named) -> Named:
        order = eqn.out.physical_order
        if eqn.prim in BOOL_AS_INT8:
            args = tuple(as_int8(a) for a in args)
        y = bind(fn(*[align(upcast(a) if wide else a, _trailing(order, a)) for a in args]), order)
        return downcast(broadcast(y, eqn.out.type.sizes), eqn.out.type.dtype)
    return lower


def _trailing(order: Sequence[str], x: Named) -> Sequence[str]:
    """``order`` without the leading names ``x`` lacks: broadcasting right-aligns, so those need no axes."""
    lead = 0
    while lead < len(order) and order[lead] not in x.names:
        lead += 1
    return order[lead:]


def _gelu(eqn: Eqn, x: Named) -> Named:
    """Exact GELU, ``x/2 * (1 + erf(x/sqrt(2)))``, in float32 for low precision. Spelled out (not
    R.nn.gelu) so that ``fast_math`` can replace the erf; fusion makes it one kernel either way."""
    y = upcast(x)
    half, root = relax.const(0.5, y.dtype), relax.const(1 / math.sqrt(2), y.dtype)
    e = R.erf(R.multiply(y.expr, root))
    out = R.multiply(R.multiply(y.expr, half), R.add(e, relax.const(1.0, y.dtype)))
    return downcast(bind(out, x.names), x.dtype)


def _cast(eqn: Eqn, x: Named) -> Named:
    return bind(R.astype(x.expr, eqn.kwargs["dtype"]), x.names)


# ---------------------------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------------------------

def _full(eqn: Eqn) -> Named:
    p = eqn.kwargs
    order = eqn.out.physical_order
    sizes = eqn.out.type.sizes
    # a broadcast 0-d constant, not R.full: TVM cannot legalize R.full with an infinite or NaN value
    fill = bind(relax.const(np.asarray(p["value"], dtype=numpy_dtype(p["dtype"])), p["dtype"]), ())
    return broadcast(reshape(fill, [(n, 1) for n in order]), sizes)


def _iota(eqn: Eqn) -> Named:
    p = eqn.kwargs
    # start + step * i in float64, then rounded: exactly the reference's arithmetic
    i = R.arange(0, p["size"], 1, "float64")
    y = R.add(R.multiply(i, relax.const(float(p["step"]), "float64")), relax.const(float(p["start"]), "float64"))
    return bind(R.astype(y, p["dtype"]), (p["dim"],))


def _constant(eqn: Eqn) -> Named:
    t = eqn.out.type
    order = eqn.out.physical_order
    data = np.frombuffer(eqn.kwargs["data"], dtype=numpy_dtype(t.dtype)).reshape(t.shape)
    data = ops.to_order(data, t.names, order).copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    return bind(relax.const(data, t.dtype), order)


# ---------------------------------------------------------------------------------------------
# reductions and normalizations
# ---------------------------------------------------------------------------------------------

REDUCE: dict[str, tuple[Callable[..., relax.Expr], bool]] = {
    # name: (Relax op, computed in float32 for low precision)
    "reduce_sum": (R.sum, True), "reduce_max": (R.max, False), "reduce_min": (R.min, False),
    "reduce_prod": (R.prod, True),
}


def _any_nan(x: Named, axes: list[int]) -> relax.Expr:
    """Per reduced slice of float ``x``: whether it holds a NaN (TVM's max/min/argmax skip NaNs,
    numpy's and the reference's return them)."""
    flags = R.astype(R.isnan(upcast(x).expr), "int8")
    return R.astype(R.max(flags, axis=axes, keepdims=False), "bool")


def _reduce(name: str) -> Lowering:
    fn, wide = REDUCE[name]

    def lower(eqn: Eqn, x: Named) -> Named:
        dims = eqn.kwargs["dims"]
        y = upcast(x) if wide else as_int8(x)  # TVM knows no maximum or minimum value of bool
        keep = tuple(n for n in x.names if n not in dims)
        out = fn(y.expr, axis=_axes(x, dims), keepdims=False)
        if name in ("reduce_max", "reduce_min") and is_float(x.dtype):
            out = R.where(_any_nan(x, _axes(x, dims)), relax.const(float("nan"), x.dtype), out)
        return downcast(bind(out, keep), x.dtype)
    return lower


def _arg(fn: Callable[..., relax.Expr]) -> Lowering:
    def lower(eqn: Eqn, x: Named) -> Named:
        dim = eqn.kwargs["dim"]
        axis = x.names.index(dim)
        keep = tuple(n for n in x.names if n != dim)
        y = upcast(x)  # exact, and TVM's argmax/argmin reject bfloat16
        out = fn(y.expr, axis=axis, keepdims=False)
        if is_float(x.dtype):  # like numpy, the first NaN wins
            first_nan = R.argmax(R.astype(R.isnan(y.expr), "int8"), axis=axis, keepdims=False)
            out = R.where(_any_nan(x, [axis]), first_nan, out)
        return bind(R.astype(out, "int64"), keep)
    return lower


def _innermost(x: Named, dims: Sequence[str]) -> Named:
    """``x`` with ``dims`` moved to the innermost axes (in their current order): a normalization runs
    along contiguous rows, which the CPU schedules handle far better than strided columns (the two
    tiled transposes cost less than the strided passes)."""
    return permute(x, [n for n in x.names if n not in dims] + [n for n in x.names if n in dims])


def _softmax(fn: Callable[..., relax.Expr]) -> Lowering:
    def lower(eqn: Eqn, x: Named) -> Named:
        y = upcast(_innermost(x, (eqn.kwargs["dim"],)))
        return downcast(bind(fn(y.expr, axis=len(y.names) - 1), y.names), x.dtype)
    return lower


def _layer_norm(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    x = _innermost(x, p["dims"])
    y = upcast(x)
    axes = sorted(_axes(x, p["dims"]))
    if y.dtype == "float64":  # R.nn.layer_norm has float32 and float16 kernels only
        centered = R.subtract(y.expr, R.mean(y.expr, axis=axes, keepdims=True))
        var = R.mean(R.multiply(centered, centered), axis=axes, keepdims=True)
        return bind(R.divide(centered, R.sqrt(R.add(var, relax.const(float(p["eps"]), "float64")))), x.names)
    shape = [x.shape[a] for a in axes]
    ones, zeros = R.ones(shape, y.dtype), R.zeros(shape, y.dtype)
    out = R.nn.layer_norm(y.expr, ones, zeros, axes=axes, epsilon=float(p["eps"]), center=False, scale=False)
    return downcast(bind(out, x.names), x.dtype)


# ---------------------------------------------------------------------------------------------
# contraction and windows
# ---------------------------------------------------------------------------------------------

def _contract(eqn: Eqn, a: Named, b: Named) -> Named:
    """As one (batched) matmul: a -> (batch, M, K), b -> (batch, K, N), result (batch..., a_free..., b_free...).
    Each group keeps the order the operands already have, so physically matching inputs need no copy."""
    over = tuple(n for n in a.names if n in eqn.kwargs["over"])
    batch = tuple(n for n in a.names if n in b.names and n not in over)
    a_free = tuple(n for n in a.names if n not in b.names)
    b_free = tuple(n for n in b.names if n not in a.names)
    sa, sb = a.sizes, b.sizes

    def size(names: Sequence[str], sizes: dict[str, int]) -> int:
        return math.prod(sizes[n] for n in names)

    if size(over, sa) == 0:  # a sum of no terms (TVM's matmul rejects an empty reduction)
        names = batch + a_free + b_free
        return _zeros([(n, {**sa, **sb}[n]) for n in names], eqn.out.type.dtype)  # contract_wide: int32
    lead = [("_batch", size(batch, sa))] if batch else []
    a3 = reshape(permute(a, batch + a_free + over), lead + [("_m", size(a_free, sa)), ("_k", size(over, sa))])
    b3 = reshape(permute(b, batch + over + b_free), lead + [("_k", size(over, sb)), ("_n", size(b_free, sb))])
    block = None if lead else _panel(a3, b3)
    if block is not None:  # b is constant: packed into column panels when the program is built
        panels = permute(reshape(b3, [("_k", b3.shape[0]), ("_no", b3.shape[1] // block), ("_ni", block)]),
                         ("_no", "_k", "_ni"))
        # the rows keep their own dims, unit ones too (any reshape after the matmul, flattening them or
        # adding a unit dim, kept its epilogue out of its kernel); the columns are one dim here, and in the
        # result where it has one of more than one element
        rows = [(n, sa[n]) for n in a_free]
        cols = [(n, sb[n]) for n in b_free if sb[n] > 1]
        col = cols[0] if len(cols) == 1 else ("_n", b3.shape[1])
        image = reshape(permute(a, a_free + over), rows + [("_k", a3.shape[1])])
        y = bind(relax.BlockBuilder.current().call_te(_panel_matmul, image.expr, panels.expr,
                                                      primfunc_name_hint="matmul"), a_free + (col[0],))
        return downcast(reshape(y, [(n, {**sa, **sb}[n]) for n in a_free + b_free]), eqn.out.type.dtype)
    y = bind(R.matmul(a3.expr, b3.expr, out_dtype=_accumulator(a)), a3.names[:-1] + ("_n",))
    names = batch + a_free + b_free
    # contract: rounded back to the operands' dtype; contract_wide: the accumulator is the result
    return downcast(reshape(y, [(n, {**sa, **sb}[n]) for n in names]), eqn.out.type.dtype)


# a matmul by a constant packs the constant into column panels of this many float32 columns (4 AVX-512
# vectors: the widest register tile) ...
PANEL = 64
# ... when the other operand has at least this many rows to reuse each packed panel
PANEL_MIN_ROWS = 16


def _panel(a: Named, b: Named) -> int | None:
    """The panel width of `_panel_matmul` for ``a[M, K] @ b[K, N]``, or None where it does not apply:
    not a CPU, not float32, ``b`` not computed from constants alone, N not a whole number of panels, or
    fewer than `PANEL_MIN_ROWS` rows."""
    target = tvm.target.Target.current(True)
    if target is None or target.kind.name != "llvm" or a.dtype != "float32" or b.dtype != "float32":
        return None
    if b.shape[1] % PANEL or a.shape[0] < PANEL_MIN_ROWS or not _folds(b.expr):
        return None
    return PANEL


def _folds(expr: relax.Expr) -> bool:
    """Whether ``expr`` is a constant, or a permute or reshape of one (what TVM folds at build time)."""
    bb = relax.BlockBuilder.current()
    while isinstance(expr, relax.Var):
        bound = bb.lookup_binding(expr)
        if bound is None:
            return False
        expr = bound
    if isinstance(expr, tvm.ir.expr.Constant):
        return True
    return isinstance(expr, relax.Call) and getattr(expr.op, "name", "") in ("relax.permute_dims", "relax.reshape") \
        and _folds(expr.args[0])


def _panel_matmul(a: te.Tensor, panels: te.Tensor) -> te.Tensor:
    """``a[rows..., K] @ b[K, N]`` with ``b`` packed as ``panels[N/P, K, P]``: each panel's P columns are
    contiguous along K, so the register tile streams them from consecutive addresses (not one row of
    ``b`` 4 N bytes apart per step: a page per step for N = 3072), and the product of a panel
    ``y[N/P, rows..., P]`` is copied into ``[rows..., N]`` in the epilogue, while in cache. ViT-B/16's MLP
    matmul at 1 thread (Xeon, AVX-512): 197x768 @ 768x3072 8.2 -> 6.6 ms (torch 6.1), 1576 rows 63.6 ->
    54.1 ms (torch 45)."""
    *rows, k = (int(v) for v in a.shape)
    no, _, p = (int(v) for v in panels.shape)
    r = te.reduce_axis((0, k), "k")
    y = te.compute((no, *rows, p), lambda o, *i: te.sum(a[(*i[:-1], r)] * panels[o, r, i[-1]], axis=r),
                   name="matmul_panels")
    return te.compute((*rows, no * p), lambda *i: y[(i[-1] // p, *i[:-1], i[-1] % p)], name="matmul")


def _accumulator(x: Named) -> str | None:
    """The dtype a contraction of ``x`` accumulates in when it is not ``x``'s own: float32 for 16-bit
    floats, int32 for int8."""
    return {"float16": "float32", "bfloat16": "float32", "int8": "int32"}.get(x.dtype)


def _zeros(dims: Sequence[tuple[str, int]], dtype: str) -> Named:
    """Zeros of named ``dims``."""
    return bind(R.zeros([s for _, s in dims], dtype), tuple(n for n, _ in dims))


def _empty(dims: Sequence[tuple[str, int]], dtype: str) -> Named:
    """A tensor of named ``dims`` with no elements: allocated at run time, since TVM folds anything computed
    from constants alone into a constant, and a constant of zero elements cannot be saved and loaded."""
    shape = relax.ShapeExpr([s for _, s in dims])
    return bind(relax.op.builtin.alloc_tensor(shape, dtype, 0), tuple(n for n, _ in dims))


def _conv2d(eqn: Eqn, x: Named, w: Named) -> Named:
    p = eqn.kwargs
    c, o, (h, wd) = p["channels"], p["out_channels"], p["spatial"]
    layout, batch = _image_layout(x, c, (h, wd))
    if _pointwise(eqn, w):
        return _pointwise_conv2d(eqn, x, w, layout, batch)
    if layout == "NCHW" and _few_pixels(eqn, w):
        return _im2col_conv2d(eqn, x, w, batch)
    if layout == "NCHW" and (block := _channel_block(eqn, x, w)) is not None:
        return _conv2d_by_channel(eqn, x, w, batch, block)
    kernel_layout = "OIHW" if layout == "NCHW" else "HWIO"
    xi = _to_image(x, layout, batch, (c,), (h, wd))
    wi = permute(w, {"OIHW": (o, c, h, wd), "HWIO": (h, wd, c, o)}[kernel_layout])
    y = R.nn.conv2d(xi.expr, wi.expr, strides=p["stride"], padding=p["padding"], dilation=p["dilation"],
                    groups=p["groups"], data_layout=layout, kernel_layout=kernel_layout, out_dtype=_accumulator(x))
    out = eqn.out.type.sizes
    names = batch + ((o, h, wd) if layout == "NCHW" else (h, wd, o))
    y = reshape(bind(y, ("_n",) + names[len(batch):]), [(n, out[n]) for n in names])
    return downcast(y, eqn.out.type.dtype)  # conv2d_wide keeps the accumulator


# a convolution with more kernel taps than this (a weight gradient's, whose kernel is an output gradient)
# keeps TVM's conv2d
BY_CHANNEL_MAX_TAPS = 49


def _channel_block(eqn: Eqn, x: Named, w: Named) -> int | None:
    """Output channels per block of `_conv2d_by_channel` on this CPU (two vectors, else one, of float32
    that divide the output channels), or None where it does not apply: not a CPU, not float32, grouped,
    or a kernel of more than `BY_CHANNEL_MAX_TAPS` taps."""
    target = tvm.target.Target.current(True)
    p = eqn.kwargs
    h, wd = p["spatial"]
    if target is None or target.kind.name != "llvm" or p["groups"] != 1 or x.dtype != "float32" \
            or w.dtype != "float32" or w.sizes[h] * w.sizes[wd] > BY_CHANNEL_MAX_TAPS:
        return None
    vec = lanes(target, "float32")
    return _divisor(w.sizes[p["out_channels"]], [2 * vec, vec])


def _conv2d_by_channel(eqn: Eqn, x: Named, w: Named, batch: tuple[str, ...], block: int) -> Named:
    """An NCHW convolution computed along its output channels: `conv2d_by_channel` accumulates
    ``y[N, O/block, Ho, Wo, block]`` from the image (each pixel broadcast) and the weights packed
    ``[O/block, kh, kw, C, block]``, so the contraction rule vectorizes along the channels of a block
    (``block`` of them contiguous in the weights) and register-tiles the output row; the NCHW output is
    written tile by tile in its epilogue. TVM's NCHW conv2d vectorizes along the output width instead,
    which 16 lanes divide badly (56, 28, 14 padded to 64, 32, 16 by `PadConvWidth`: 14% more work) and
    which streams the image, not the weights, so a stride wastes most of each loaded vector. ResNet-18's
    3x3 convs at 1 thread (Xeon, AVX-512; ms, before -> after, torch): 64@56 2.07 -> 1.67 (1.77), 256@14
    2.30 -> 1.86 (1.84), 64->128 stride 2 2.49 -> 0.90 (0.96), the 7x7 stride-2 stem 3.18 -> 1.81 (4.8)."""
    p = eqn.kwargs
    c, o, (h, wd) = p["channels"], p["out_channels"], p["spatial"]
    out, sw = eqn.out.type.sizes, w.sizes
    xi = _to_image(x, "NCHW", batch, (c,), (h, wd))
    blocks = reshape(permute(w, (o, c, h, wd)), [("_ko", sw[o] // block), ("_ob", block), (c, sw[c]), (h, sw[h]),
                                                 (wd, sw[wd])])
    packed = permute(blocks, ("_ko", h, wd, c, "_ob"))
    y = relax.BlockBuilder.current().call_te(
        _by_channel, xi.expr, packed.expr, *(tuple(int(v) for v in p[k]) for k in ("padding", "stride", "dilation")),
        (out[h], out[wd]), primfunc_name_hint="conv2d")
    return reshape(bind(y, ("_n", o, h, wd)), [(d, out[d]) for d in batch + (o, h, wd)])


def _by_channel(x: te.Tensor, packed: te.Tensor, padding: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int], out_hw: tuple[int, int]) -> te.Tensor:
    """TE of `_conv2d_by_channel`: the zero-padded image, the blocked convolution (reduction over the
    kernel rows, columns, then channels: the weights of a block stream contiguously) and its NCHW copy."""
    n, c, hi, wi = (int(v) for v in x.shape)
    ko, kh, kw, _, block = (int(v) for v in packed.shape)
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    zero = tvm.tirx.const(0.0, x.dtype)
    pad = te.compute((n, c, hi + 2 * ph, wi + 2 * pw), lambda b, ch, i, j: tvm.tirx.if_then_else(
        tvm.tirx.all(i >= ph, i < hi + ph, j >= pw, j < wi + pw), x[b, ch, i - ph, j - pw], zero), name="pad_temp")
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, c), "rc")
    y = te.compute((n, ko, *out_hw, block), lambda b, k, i, j, v: te.sum(
        pad[b, rc, i * sh + ry * dh, j * sw + rx * dw] * packed[k, ry, rx, rc, v], axis=[ry, rx, rc]),
        name="conv2d_by_channel")
    return te.compute((n, ko * block, *out_hw), lambda b, k, i, j: y[b, k // block, i, j, k % block], name="conv2d_nchw")


def _pointwise(eqn: Eqn, w: Named) -> bool:
    """A 1x1 convolution that is a matmul over the pixels (every ``stride``-th one): no padding, one group."""
    p = eqn.kwargs
    h, wd = p["spatial"]
    return (w.sizes[h], w.sizes[wd]) == (1, 1) and p["groups"] == 1 and all(int(v) == 0 for v in p["padding"])


def _pointwise_conv2d(eqn: Eqn, x: Named, w: Named, layout: str, batch: tuple[str, ...]) -> Named:
    """A 1x1 convolution as one matmul of the weights and the image's pixels (all H*W of them): NCHW
    ``w[O, C] @ x[N, C, H*W]``, NHWC ``x[N, H*W, C] @ w[C, O]``. As a conv2d the contraction rule
    vectorizes along the output width alone, which 16 lanes divide badly (56, 28, 14 and 7 are padded
    to 64, 32, 16 and 8 columns, each image row a short panel); 3136 pixels are 196 whole vectors. With a
    stride, the pixels are first sliced out (a copy of a quarter of the image for stride 2). ResNet-50's
    1x1 convs at 56x56 (1 thread, Zen 5): 0.85 -> 0.67 ms; its stride-2 1024 -> 2048 at 14x14: 5.2 -> 2.3 ms
    (torch 1.35)."""
    p = eqn.kwargs
    c, o, (h, wd) = p["channels"], p["out_channels"], p["spatial"]
    sx, sw = x.sizes, w.sizes
    xi = _to_image(x, layout, batch, (c,), (h, wd))
    stride = tuple(int(v) for v in p["stride"])
    if stride != (1, 1):  # every stride-th pixel: a strided copy of a quarter (stride 2) of the image
        axes = [1, 2] if layout == "NHWC" else [2, 3]
        xi = bind(R.strided_slice(xi.expr, axes=axes, begin=[0, 0], end=[sx[h], sx[wd]], strides=list(stride)),
                  xi.names)
        sx = {**sx, h: -(-sx[h] // stride[0]), wd: -(-sx[wd] // stride[1])}
    hw = ("_hw", sx[h] * sx[wd])
    lead = _batch_lead(xi)
    if layout == "NCHW":
        w2 = reshape(permute(w, (o, c, h, wd)), [(o, sw[o]), (c, sw[c])])
        return _conv_as_matmul(eqn, w2, reshape(xi, lead + [(c, sx[c]), hw]), (o, "_hw"), batch + (o, h, wd))
    w2 = reshape(permute(w, (h, wd, c, o)), [(c, sw[c]), (o, sw[o])])
    return _conv_as_matmul(eqn, reshape(xi, lead + [hw, (c, sx[c])]), w2, ("_hw", o), batch + (h, wd, o))


def _batch_lead(xi: Named) -> list[tuple[str, int]]:
    """The leading ``_n`` dim of a matmul operand made from the image ``xi`` (dropped for one image)."""
    return [("_n", xi.shape[0])] if xi.shape[0] > 1 else []


def _conv_as_matmul(eqn: Eqn, a: Named, b: Named, dims: tuple[str, ...], names: tuple[str, ...]) -> Named:
    """``a @ b`` for the convolution ``eqn`` (its last two dims ``dims``, after ``_n`` where an operand
    has it), reshaped to the convolution's output dims ``names`` (in that order) and dtype."""
    lead = ("_n",) if "_n" in a.names or "_n" in b.names else ()
    y = bind(R.matmul(a.expr, b.expr, out_dtype=_accumulator(a)), lead + dims)
    out = eqn.out.type.sizes
    return downcast(reshape(y, [(d, out[d]) for d in names]), eqn.out.type.dtype)


# an NCHW convolution with at most this many output pixels per image is an im2col and a matmul ...
IM2COL_MAX_PIXELS = 64
# ... when its kernel has at most this many taps (one slice each): a weight gradient is a convolution with
# the output gradient as its kernel (LeNet-5's: 10x10 and 24x24 taps for 5x5 outputs), whose im2col took
# lenet5_train on TVM from 15 to 208 ms (1 thread, Zen 5)
IM2COL_MAX_TAPS = 25


def _few_pixels(eqn: Eqn, w: Named) -> bool:
    """A float32 convolution of one group whose output image is so small (7x7 in ResNets) that the
    contraction rule's vectors along its width would be half empty, with a small kernel."""
    p = eqn.kwargs
    out = eqn.out.type.sizes
    h, wd = p["spatial"]
    return p["groups"] == 1 and out[h] * out[wd] <= IM2COL_MAX_PIXELS and eqn.out.type.dtype == "float32" \
        and w.dtype == "float32" and w.sizes[h] * w.sizes[wd] <= IM2COL_MAX_TAPS


def _im2col_conv2d(eqn: Eqn, x: Named, w: Named, batch: tuple[str, ...]) -> Named:
    """An NCHW convolution with a small output image as ``w[O, C*kh*kw] @ cols[N, C*kh*kw, Ho*Wo]``,
    the columns gathered from the padded image by one strided slice per kernel tap. A 7x7 output row
    fills half a 16-lane vector as a conv2d (PadConvWidth computes 8 columns); the 49 pixels of the
    matmul are one tile of 4 vectors (64 columns). ResNet-50's 3x3 512 -> 512 at 7x7 (1 thread, Zen 5):
    3.08 -> 1.78 ms (torch 2.23); stride 2 from 14x14: 3.73 -> 1.85 ms. At 14x14 (196 pixels) it lost: 1.54 -> 1.84."""
    p = eqn.kwargs
    c, o, (h, wd) = p["channels"], p["out_channels"], p["spatial"]
    out = eqn.out.type.sizes
    ho, wo = out[h], out[wd]
    kh, kw = w.sizes[h], w.sizes[wd]
    (sh, sw), (dh, dw) = (int(v) for v in p["stride"]), (int(v) for v in p["dilation"])
    ph, pw = (int(v) for v in p["padding"])
    xi = _to_image(x, "NCHW", batch, (c,), (h, wd))
    n, cs = xi.shape[0], xi.shape[1]
    xp = xi.expr
    if ph or pw:
        xp = bind(R.nn.pad(xp, [0, 0, 0, 0, ph, ph, pw, pw]), xi.names).expr
    taps = []
    for i in range(kh):
        for j in range(kw):
            tap = R.strided_slice(xp, axes=[2, 3], begin=[i * dh, j * dw],
                                  end=[i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1], strides=[sh, sw])
            taps.append(R.reshape(tap, [n, cs, 1, ho * wo]))
    cols = bind(R.reshape(R.concat(taps, axis=2), [n, cs * kh * kw, ho * wo]), ("_n", "_ck", "_hw"))
    w2 = reshape(permute(w, (o, c, h, wd)), [(o, w.sizes[o]), ("_ck", w.sizes[c] * kh * kw)])
    cols = reshape(cols, _batch_lead(xi) + [("_ck", cs * kh * kw), ("_hw", ho * wo)])
    return _conv_as_matmul(eqn, w2, cols, (o, "_hw"), batch + (o, h, wd))


def _pool2d(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    spatial = p["spatial"]
    others = tuple(n for n in x.names if n not in spatial)
    xi = _to_image(x, "NCHW", others, (), spatial)  # every other dim goes into N; C is 1
    fn = R.nn.max_pool2d if p["kind"] == "max" else R.nn.avg_pool2d
    y = fn(xi.expr, pool_size=p["kernel"], strides=p["stride"], padding=p["padding"], layout="NCHW",
           count_include_pad=True)  # the reference (like torch) averages over padding too
    out = eqn.out.type.sizes
    names = others + tuple(spatial)
    return reshape(bind(y, ("_n", "_c") + tuple(spatial)), [(n, out[n]) for n in names])


# ---------------------------------------------------------------------------------------------
# quantization and widening contractions
# ---------------------------------------------------------------------------------------------

def _contract_wide(eqn: Eqn, a: Named, b: Named) -> Named:
    """int8 on a CPU with AVX-512 VNNI (the target in scope at lowering time): the tensorized kernel of
    int8.py; otherwise the generic loops of `_contract`, in the accumulator's dtype."""
    return int8.contract_wide(eqn, a, b) or _contract(eqn, a, b)


def _conv2d_wide(eqn: Eqn, x: Named, w: Named) -> Named:
    """int8 with VNNI: im2col and the tensorized GEMM of int8.py; otherwise `_conv2d`'s loops."""
    return int8.conv2d_wide(eqn, x, w) or _conv2d(eqn, x, w)


def _quantize(eqn: Eqn, x: Named, scale: Named) -> Named:
    lo, hi = INT8_RANGE
    y = R.round(R.divide(upcast(x).expr, align(scale, x.names)))  # LLVM's nearbyint: half to even
    y = R.where(R.isnan(y), relax.const(0.0, "float32"), R.clip(y, lo, hi))
    return bind(R.astype(y, "int8"), x.names)


def _dequantize(eqn: Eqn, q: Named, scale: Named) -> Named:
    return bind(R.multiply(R.astype(q.expr, "float32"), align(scale, q.names)), q.names)


# ---------------------------------------------------------------------------------------------
# layout and indexing
# ---------------------------------------------------------------------------------------------

def _align(eqn: Eqn, x: Named) -> Named:
    order = eqn.out.physical_order
    return broadcast(bind(align(x, order), order), eqn.out.type.sizes)


def _squeeze(eqn: Eqn, x: Named) -> Named:
    keep = [(n, s) for n, s in zip(x.names, x.shape) if n not in eqn.kwargs["dims"]]
    return reshape(x, keep)


def _rename(eqn: Eqn, x: Named) -> Named:
    m = dict(eqn.kwargs["mapping"])
    return Named(x.expr, tuple(m.get(n, n) for n in x.names))


def _flatten(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    rest = tuple(n for n in x.names if n not in p["dims"])
    sizes = x.sizes
    y = permute(x, rest + tuple(p["dims"]))
    return reshape(y, [(n, sizes[n]) for n in rest] + [(p["into"], eqn.out.type.size(p["into"]))])


def _unflatten(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    dims = []
    for n, s in zip(x.names, x.shape):
        dims.extend(p["parts"] if n == p["dim"] else [(n, s)])
    return reshape(x, dims)


def _select(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    ax = x.names.index(p["dim"])
    y = bind(R.strided_slice(x.expr, [ax], [p["index"]], [p["index"] + 1]), x.names)
    return reshape(y, [(n, s) for n, s in zip(x.names, x.shape) if n != p["dim"]])


def _slice(eqn: Eqn, x: Named) -> Named:
    p = eqn.kwargs
    ax = x.names.index(p["dim"])
    return bind(R.strided_slice(x.expr, [ax], [p["start"]], [p["stop"]], [p["step"]]), x.names)


def _concat(eqn: Eqn, *xs: Named) -> Named:
    order = eqn.out.physical_order
    return bind(R.concat([permute(x, order).expr for x in xs], axis=order.index(eqn.kwargs["dim"])), order)


def _take(eqn: Eqn, x: Named, idx: Named) -> Named:
    dim = eqn.kwargs["dim"]
    ax = x.names.index(dim)
    # "wrap" makes negative indices count from the end, as numpy does; the reference raises for an
    # index out of range, compiled code wraps it around instead
    y = R.take(x.expr, idx.expr, axis=ax, mode="wrap")
    return bind(y, x.names[:ax] + idx.names + x.names[ax + 1:])


def _gather(eqn: Eqn, x: Named, idx: Named) -> Named:
    """gather_elements on x and the indices brought to one shape: the indices' dims in their order (plus
    `dim` last when they lack it), x's dims aligned and broadcast to that; negative indices wrap."""
    dim = eqn.kwargs["dim"]
    order = idx.names if dim in idx.names else idx.names + (dim,)
    sizes = {**idx.sizes, dim: x.sizes[dim]}
    xb = broadcast(bind(align(x, order), order), sizes)
    ib = idx if dim in idx.names else reshape(idx, [*zip(idx.names, idx.shape), (dim, 1)])
    n = relax.const(x.sizes[dim], idx.dtype)
    wrapped = R.where(R.less(ib.expr, relax.const(0, idx.dtype)), R.add(ib.expr, n), ib.expr)
    y = bind(R.gather_elements(xb.expr, wrapped, axis=order.index(dim)), order)
    return y if dim in idx.names else reshape(y, list(zip(idx.names, idx.shape)))


# ---------------------------------------------------------------------------------------------
# cumulative
# ---------------------------------------------------------------------------------------------

def _cumulative(fn: Callable[..., relax.Expr]) -> Lowering:
    def lower(eqn: Eqn, x: Named) -> Named:
        ax = x.names.index(eqn.kwargs["dim"])
        y = upcast(x).expr
        if eqn.kwargs["reverse"]:
            y = R.flip(y, ax)
        y = fn(y, axis=ax)
        if eqn.kwargs["reverse"]:
            y = R.flip(y, ax)
        return downcast(bind(y, x.names), x.dtype)
    return lower


def _scatter_add(eqn: Eqn, x: Named, idx: Named, updates: Named) -> Named:
    """R.scatter_elements with reduction="add" along the dim: the indices are flattened to one axis and
    broadcast to the updates' shape (which has the operand's other axes around it)."""
    dim = eqn.kwargs["dim"]
    ax = x.names.index(dim)
    n = x.sizes[dim]
    k = math.prod(idx.shape)
    pre, post = x.names[:ax], x.names[ax + 1:]
    flat_idx = R.reshape(idx.expr, [k])
    flat_idx = R.where(R.less(flat_idx, relax.const(0, idx.dtype)), R.add(flat_idx, relax.const(n, idx.dtype)),
                       flat_idx)  # negative indices count from the end, as in take
    sizes = updates.sizes
    u = reshape(permute(updates, pre + idx.names + post),
                [(d, sizes[d]) for d in pre] + [("_k", k)] + [(d, sizes[d]) for d in post])
    shape = list(u.shape)
    along = R.reshape(flat_idx, [1] * len(pre) + [k] + [1] * len(post))
    y = R.scatter_elements(x.expr, R.broadcast_to(along, shape), u.expr, axis=ax, reduction="add")
    return bind(y, x.names)


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------

LOWERINGS: dict[str, "Lowering | Control"] = {
    **{name: _elementwise(fn) for name, fn in UNARY.items()},
    **{name: _elementwise(fn, wide=name == "pow") for name, fn in BINARY.items()},  # TVM: no bfloat16 pow
    "gelu": _gelu,
    "where": _elementwise(R.where),
    "cast": _cast,
    "full": _full,
    "iota": _iota,
    "constant": _constant,
    **{name: _reduce(name) for name in REDUCE},
    "argmax": _arg(R.argmax),
    "argmin": _arg(R.argmin),
    "softmax": _softmax(R.nn.softmax),
    "log_softmax": _softmax(R.nn.log_softmax),
    "layer_norm": _layer_norm,
    "contract": _contract,
    "conv2d": _conv2d,
    "pool2d": _pool2d,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "contract_wide": _contract_wide,
    "conv2d_wide": _conv2d_wide,
    "align": _align,
    "squeeze": _squeeze,
    "rename": _rename,
    "flatten": _flatten,
    "unflatten": _unflatten,
    "select": _select,
    "slice": _slice,
    "concat": _concat,
    "take": _take,
    "gather": _gather,
    "cumsum": _cumulative(R.cumsum),
    "cumprod": _cumulative(R.cumprod),
    "pad": lower_pad,
    "scatter_add": _scatter_add,
}


@dataclass(frozen=True)
class Control:
    """The lowering of a primitive whose parameters include sub-programs.

    ``prepare(ctx, eqn) -> state`` runs before any Relax function is open: it adds the functions the
    equation needs (a loop, branches) to ``ctx.bb``'s module. Sub-programs are prepared first, so
    their own scans and conds are ready when ``prepare`` emits a sub-program with `emit_program`.
    ``emit(ctx, eqn, state, *args) -> list[Named]`` then calls them from a dataflow block.
    """

    prepare: Callable[["LoweringContext", Eqn], object]
    emit: Callable[..., list[Named]]


@dataclass
class LoweringContext:
    """What lowering one module shares: the builder, the lowering table, and each control-flow
    equation's prepared functions (keyed by ``id(eqn)``)."""

    bb: relax.BlockBuilder
    table: dict[str, "Lowering | Control"]
    prepared: dict[int, object] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)

    def unique(self, name: str) -> str:
        """A function name not used before in this module (``scan0_step``, ``scan1_step``...)."""
        n = self.names[name] = self.names.get(name, -1) + 1
        return f"{name}{n}"

    def prepare(self, program: Program) -> None:
        """Prepare every control-flow equation of ``program`` and of its sub-programs, innermost first."""
        for e in program.eqns:
            for _, sub in e.subprograms:
                self.prepare(sub)
            low = self.table[e.prim]
            if isinstance(low, Control):
                self.prepared[id(e)] = low.prepare(self, e)


def emit_program(ctx: LoweringContext, program: Program, args: Sequence[Named]) -> list[Named]:
    """Emit ``program``'s equations into the current dataflow block; ``args`` are its inputs (any axis
    order), the results are its outputs (in their physical orders)."""
    env = {v.id: permute(a, v.physical_order) for v, a in zip(program.inputs, args, strict=True)}
    for e in program.eqns:
        ins = [env[v.id] for v in e.inputs]
        low = ctx.table[e.prim]
        if all(v.type.numel == 0 for v in e.outputs):  # nothing to compute; TVM's reshapes and constants reject it
            results = [_empty([(n, v.type.size(n)) for n in v.physical_order], v.type.dtype) for v in e.outputs]
        else:
            results = low.emit(ctx, e, ctx.prepared[id(e)], *ins) if isinstance(low, Control) else [low(e, *ins)]
        for v, r in zip(e.outputs, results, strict=True):
            env[v.id] = permute(r, v.physical_order)
    return [env[v.id] for v in program.outputs]


def lower_program(program: Program, lowerings: dict[str, "Lowering | Control"] | None = None) -> tvm.IRModule:
    """Build the Relax module of ``program``: its function "main" takes the inputs in logical order
    and returns the output (a one-output program) or a tuple of the outputs, in logical order (private
    functions hold the loops and branches of scans and conds). Assumes every primitive has a lowering
    (the caller reports the unsupported ones)."""
    ctx = LoweringContext(relax.BlockBuilder(), LOWERINGS if lowerings is None else lowerings)
    ctx.prepare(program)
    bb = ctx.bb
    params = [relax.Var(f"x{v.id}", relax.TensorType(v.type.shape, v.type.dtype)) for v in program.inputs]
    with bb.function("main", params):
        with bb.dataflow():
            outs = emit_program(ctx, program, [Named(p, v.type.names) for v, p in zip(program.inputs, params)])
            results = [permute(r, v.type.names).expr for r, v in zip(outs, program.outputs)]
            # one output is returned bare: the VM then hands back the tensor itself, and unpacking a
            # one-element tuple would cost each call ~0.7 us
            gv = bb.emit_output(results[0] if len(results) == 1 else relax.Tuple(results))
        bb.emit_func_output(gv)
    return relax.transform.DeadCodeElimination()(bb.get())  # permutes that `permute` composed away


from . import control as _control  # noqa: E402,F401  (adds scan and cond to LOWERINGS; it builds on the above)
