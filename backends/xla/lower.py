"""Lower a nir Program to a JAX function: one lowering per primitive, in one table.

Every value lives in its *physical* dimension order (`Value.physical_order`, which is the logical
order unless a layout pass chose another). A lowering receives its inputs in their physical orders
and returns ``(array, order)``: the result and the order of its dims. The driver (`to_jax`) then
transposes the result to the output value's physical order when the two differ, so a lowering
returns whatever order is natural for it (XLA folds the transposes it can).

Lowering signature::

    lowering(args: list[jax.Array], ins: Sequence[Value], out: Value, **params) -> (jax.Array, order)

A primitive with ``multiple_results`` (scan, cond) gets ``outs`` (all its output values) instead of
``out`` and returns a list of ``(array, order)``, one per output. Sub-programs (a scan's body, a
cond's branches) are lowered by `to_jax` itself, inside `lax.scan`/`lax.cond`: the loop stays a loop.

No primitive mentions an axis number in the IR; positions are computed here, from the names.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nir import ops
from nir.ir import Program, Value
from nir.types import numpy_dtype

__all__ = ["LOWERINGS", "to_jax", "transpose", "Lowering", "PRECISIONS"]

Order = tuple[str, ...]
Lowering = Callable[..., tuple[jax.Array, Order]]

# build(precision=...) -> lax.Precision for float32 contractions and convolutions. "highest" keeps
# float32 semantics on every platform (TPU would otherwise use bfloat16 passes, GPUs TF32).
PRECISIONS: dict[str, lax.Precision] = {
    "default": lax.Precision.DEFAULT, "high": lax.Precision.HIGH, "highest": lax.Precision.HIGHEST,
}
_LOW = ("float16", "bfloat16")


# ----------------------------------------------------------------------------------------------
# helpers: moving dims by name
# ----------------------------------------------------------------------------------------------

def transpose(x: jax.Array, src: Sequence[str], dst: Sequence[str]) -> jax.Array:
    """Permute ``x`` from dim order ``src`` to ``dst`` (same names); no-op when they are equal."""
    if tuple(src) == tuple(dst):
        return x
    return lax.transpose(x, tuple(src.index(n) for n in dst))


def align(x: jax.Array, src: Sequence[str], dst: Sequence[str]) -> jax.Array:
    """Like `nir.ops.to_order`: move ``x``'s dims (named ``src``) into order ``dst``; names of
    ``dst`` missing from ``src`` become size-1 dims, ready for broadcasting."""
    kept = [n for n in dst if n in src]
    y = transpose(x, src, kept)
    if len(kept) == len(dst):
        return y
    return lax.expand_dims(y, [i for i, n in enumerate(dst) if n not in src])


def _shape(v: Value, order: Sequence[str]) -> tuple[int, ...]:
    sizes = v.type.sizes
    return tuple(sizes[n] for n in order)


def _dtype(v: Value) -> np.dtype:
    return numpy_dtype(v.type.dtype)


def _widen(x: jax.Array) -> jax.Array:
    """16-bit floats are computed in float32 (the reference's contract); others are unchanged."""
    return x.astype(jnp.float32) if x.dtype.name in _LOW else x


def _without(order: Sequence[str], names: Sequence[str]) -> Order:
    return tuple(n for n in order if n not in names)


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

UNARY: dict[str, Callable[[jax.Array], jax.Array]] = {
    "neg": jnp.negative,
    "abs": jnp.abs,
    "relu": lambda x: jnp.maximum(x, jnp.zeros((), x.dtype)),
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "rsqrt": lax.rsqrt,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "sin": jnp.sin,
    "cos": jnp.cos,
    "erf": lax.erf,
    "logical_not": jnp.logical_not,
}

BINARY: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide, "pow": jnp.power,
    "maximum": jnp.maximum, "minimum": jnp.minimum,
    "eq": jnp.equal, "ne": jnp.not_equal, "lt": jnp.less, "le": jnp.less_equal,
    "gt": jnp.greater, "ge": jnp.greater_equal,
    "logical_and": jnp.logical_and, "logical_or": jnp.logical_or,
}


def _elementwise(fn: Callable[..., jax.Array]) -> Lowering:
    """Broadcast by name: every operand is aligned to the output's physical order."""
    def lower(args: list[jax.Array], ins: Sequence[Value], out: Value, **_: Any) -> tuple[jax.Array, Order]:
        order = out.physical_order
        y = fn(*[align(a, v.physical_order, order) for a, v in zip(args, ins)])
        return jnp.broadcast_to(y, _shape(out, order)), order
    return lower


def _cast(args, ins, out, *, dtype: str):
    x = args[0]
    if x.dtype == jnp.bool_ and jnp.issubdtype(numpy_dtype(dtype), jnp.floating):
        # through int8: XLA rewrites convert(bool) / y as select(bool, 1 / y, 0), which gives 0 for 0 / 0
        x = lax.convert_element_type(x, jnp.int8)
    return lax.convert_element_type(x, numpy_dtype(dtype)), ins[0].physical_order


# ----------------------------------------------------------------------------------------------
# creation
# ----------------------------------------------------------------------------------------------

def _full(args, ins, out, *, value: float, dims, dtype: str):
    order = out.physical_order
    return jnp.full(_shape(out, order), value, _dtype(out)), order


def _iota(args, ins, out, *, dim: str, size: int, start: float, step: float, dtype: str):
    dt = _dtype(out)
    if jnp.issubdtype(dt, jnp.integer) and float(start).is_integer() and float(step).is_integer():
        return int(start) + int(step) * lax.iota(dt, size), (dim,)  # exact for any size
    wide = jnp.float64 if dt.itemsize == 8 else jnp.float32  # the reference computes in float64
    return (start + step * lax.iota(wide, size)).astype(dt), (dim,)


def _constant(args, ins, out, *, data: bytes, dims, dtype: str):
    logical = np.frombuffer(data, dtype=_dtype(out)).reshape(out.type.shape)
    order = out.physical_order
    return jnp.asarray(ops.to_order(logical, out.type.names, order)), order


# ----------------------------------------------------------------------------------------------
# reductions and normalizations
# ----------------------------------------------------------------------------------------------

def _reduce(fn: Callable[..., jax.Array]) -> Lowering:
    def lower(args, ins, out, *, dims: Sequence[str]):
        (x,), order = args, ins[0].physical_order
        y = fn(_widen(x), axis=tuple(order.index(n) for n in dims))
        return y.astype(x.dtype), _without(order, dims)
    return lower


def _arg(fn: Callable[..., jax.Array]) -> Lowering:
    def lower(args, ins, out, *, dim: str):
        order = ins[0].physical_order
        return fn(args[0], axis=order.index(dim)).astype(_dtype(out)), _without(order, (dim,))
    return lower


def _softmax(fn: Callable[..., jax.Array]) -> Lowering:
    def lower(args, ins, out, *, dim: str):
        (x,), order = args, ins[0].physical_order
        return fn(_widen(x), axis=order.index(dim)).astype(x.dtype), order
    return lower


def _layer_norm(args, ins, out, *, dims: Sequence[str], eps: float):
    (x,), order = args, ins[0].physical_order
    axes = tuple(order.index(n) for n in dims)
    w = _widen(x)
    mean = jnp.mean(w, axis=axes, keepdims=True)
    centered = w - mean
    var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
    return (centered * lax.rsqrt(var + eps)).astype(x.dtype), order


# ----------------------------------------------------------------------------------------------
# contraction and windows
# ----------------------------------------------------------------------------------------------

def _accumulate(x: jax.Array, precision: lax.Precision) -> dict[str, Any]:
    """dot/conv keyword arguments: 16-bit floats accumulate in float32 (fast on CPUs with AMX/
    AVX512-BF16, and what the reference does); float32 uses the requested precision."""
    extra: dict[str, Any] = {"precision": precision}
    if x.dtype.name in _LOW:
        extra["preferred_element_type"] = jnp.float32
    return extra


def _contract(args, ins, out, *, over: Sequence[str], precision: lax.Precision = lax.Precision.HIGHEST):
    (a, b), (pa, pb) = args, (ins[0].physical_order, ins[1].physical_order)
    batch = [n for n in out.physical_order if n in pa and n in pb]
    dims = (((tuple(pa.index(n) for n in over), tuple(pb.index(n) for n in over)),
             (tuple(pa.index(n) for n in batch), tuple(pb.index(n) for n in batch))))
    y = lax.dot_general(a, b, dims, **_accumulate(a, precision))
    order = tuple(batch) + tuple(n for n in pa if n not in pb) + tuple(n for n in pb if n not in pa)
    return y.astype(a.dtype), order


def _conv2d(args, ins, out, *, channels: str, out_channels: str, spatial: Sequence[str], stride, padding,
            dilation, groups: int, precision: lax.Precision = lax.Precision.HIGHEST):
    """lax.conv_general_dilated with dimension numbers taken from the names, so NCHW, NHWC and any
    other physical order run without transposes. Zero or several batch dims are merged into one."""
    (x, w), (px, pw) = args, (ins[0].physical_order, ins[1].physical_order)
    if groups > 1 and w.shape[pw.index(channels)] * w.shape[pw.index(spatial[0])] * w.shape[pw.index(spatial[1])] \
            <= MAX_TAPS:
        return _grouped_taps(x, w, px, pw, out, channels, out_channels, spatial, stride, padding, dilation, groups)
    batch = [n for n in px if n != channels and n not in spatial]
    if len(batch) == 1:
        lhs, b, out_order = px, batch[0], out.physical_order
    else:  # merge the batch dims (or, with none, add a size-1 one) into one leading dim named ""
        rest = [n for n in px if n not in batch]
        x = transpose(x, px, batch + rest).reshape((-1, *[x.shape[px.index(n)] for n in rest]))
        lhs, b = ("", *rest), ""
        out_order = tuple(out_channels if n == channels else n for n in lhs)

    def spec(order: Sequence[str], feature: str) -> tuple[int, ...]:
        return (order.index(b), order.index(feature), *[order.index(s) for s in spatial])
    numbers = lax.ConvDimensionNumbers(spec(lhs, channels), (pw.index(out_channels), pw.index(channels),
                                       *[pw.index(s) for s in spatial]), spec(out_order, out_channels))
    y = lax.conv_general_dilated(
        x, w, window_strides=tuple(stride), padding=[(p, p) for p in padding], rhs_dilation=tuple(dilation),
        dimension_numbers=numbers, feature_group_count=groups, **_accumulate(x, precision)).astype(x.dtype)
    if len(batch) != 1:
        y = y.reshape((*[out.type.size(n) for n in batch], *y.shape[1:]))
        out_order = (*batch, *out_order[1:])
    return y, out_order


def _grouped_taps(x: jax.Array, w: jax.Array, px: Order, pw: Order, out: Value, channels: str, out_channels: str,
                  spatial: Sequence[str], stride, padding, dilation, groups: int) -> tuple[jax.Array, Order]:
    """A grouped convolution with few input channels per group (depthwise: one, as in MobileNet's and
    EfficientNet's 3x3 and 5x5 layers) as a sum over the kernel taps and in-group channels of strided
    slices of the padded input, each times one weight per output channel. XLA fuses the sum into one
    loop; XLA:CPU's own grouped convolution runs these 4-35x slower (docs/performance.md). Works in
    ``x``'s physical order, whatever it is."""
    y = _widen(x)
    c = px.index(channels)
    per_group = y.shape[c] // groups  # input channels per group
    multiplier = out.type.size(out_channels) // groups  # output channels per group
    pads = [(0, 0, 0)] * y.ndim
    for s, p in zip(spatial, padding):
        pads[px.index(s)] = (p, p, 0)
    y = lax.pad(y, jnp.array(0, y.dtype), pads)
    taps = transpose(_widen(w), pw, (*spatial, channels, out_channels))  # {KH, KW, C per group, O}
    per_channel = [out.type.size(out_channels) if i == c else 1 for i in range(y.ndim)]
    acc = None
    for ci in range(per_group):
        start, limit, strides = [0] * y.ndim, list(y.shape), [1] * y.ndim
        start[c], strides[c] = ci, per_group  # input channel ci of every group
        yc = lax.slice(y, start, limit, strides)
        if multiplier > 1:  # output channel o of group g reads group g's channels
            yc = jnp.repeat(yc, multiplier, axis=c)
        for kh in range(taps.shape[0]):
            for kw in range(taps.shape[1]):
                start, limit, strides = [0] * y.ndim, list(yc.shape), [1] * y.ndim
                for s, k, st, d in zip(spatial, (kh, kw), stride, dilation):
                    ax = px.index(s)
                    start[ax] = k * d
                    limit[ax] = start[ax] + st * (out.type.size(s) - 1) + 1
                    strides[ax] = st
                term = lax.slice(yc, start, limit, strides) * taps[kh, kw, ci].reshape(per_channel)
                acc = term if acc is None else acc + term
    return acc.astype(x.dtype), tuple(out_channels if n == channels else n for n in px)


# a grouped convolution becomes taps (`_grouped_taps`) up to this many products per output element;
# beyond, XLA's convolution wins (64 input channels per group: 17x slower as taps)
MAX_TAPS = 128


def _pool2d(args, ins, out, *, kind: str, kernel, stride, padding, spatial: Sequence[str]):
    """lax.reduce_window over the two spatial dims, wherever they sit; avg counts padding (torch's default)."""
    (x,), order = args, ins[0].physical_order
    window, strides, pads = [1] * x.ndim, [1] * x.ndim, [(0, 0)] * x.ndim
    for i, n in enumerate(spatial):
        ax = order.index(n)
        window[ax], strides[ax], pads[ax] = kernel[i], stride[i], (padding[i], padding[i])
    if kind == "max":
        lowest = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
        y = lax.reduce_window(x, jnp.array(lowest, x.dtype), lax.max, window, strides, pads)
    else:
        w = _widen(x)
        y = lax.reduce_window(w, jnp.array(0, w.dtype), lax.add, window, strides, pads) / (kernel[0] * kernel[1])
    return y.astype(x.dtype), order


# ----------------------------------------------------------------------------------------------
# layout and indexing
# ----------------------------------------------------------------------------------------------

def _align(args, ins, out, *, dims):
    order = out.physical_order
    return jnp.broadcast_to(align(args[0], ins[0].physical_order, order), _shape(out, order)), order


def _squeeze(args, ins, out, *, dims: Sequence[str]):
    order = ins[0].physical_order
    return lax.squeeze(args[0], [order.index(n) for n in dims]), _without(order, dims)


def _rename(args, ins, out, *, mapping):
    m = dict(mapping)
    return args[0], tuple(m.get(n, n) for n in ins[0].physical_order)


def _flatten(args, ins, out, *, dims: Sequence[str], into: str):
    """Put the flattened dims, in the given order, where `into` sits physically; then reshape."""
    order = out.physical_order
    i = order.index(into)
    x = transpose(args[0], ins[0].physical_order, (*order[:i], *dims, *order[i + 1:]))
    return x.reshape(_shape(out, order)), order


def _unflatten(args, ins, out, *, dim: str, parts):
    order = ins[0].physical_order
    i = order.index(dim)
    new = (*order[:i], *[n for n, _ in parts], *order[i + 1:])
    return args[0].reshape(_shape(out, new)), new


def _select(args, ins, out, *, dim: str, index: int):
    order = ins[0].physical_order
    return lax.index_in_dim(args[0], index, order.index(dim), keepdims=False), _without(order, (dim,))


def _slice(args, ins, out, *, dim: str, start: int, stop: int, step: int):
    order = ins[0].physical_order
    return lax.slice_in_dim(args[0], start, stop, step, order.index(dim)), order


def _concat(args, ins, out, *, dim: str):
    order = out.physical_order
    return lax.concatenate([transpose(a, v.physical_order, order) for a, v in zip(args, ins)],
                           order.index(dim)), order


def _take(args, ins, out, *, dim: str):
    """jnp.take: negative indices wrap like numpy; out-of-range ones give NaN (floats) or the dtype's
    minimum (ints) — compiled code cannot raise IndexError as the reference does."""
    (x, idx), (px, pi) = args, (ins[0].physical_order, ins[1].physical_order)
    ax = px.index(dim)
    return jnp.take(x, idx, axis=ax), (*px[:ax], *pi, *px[ax + 1:])


def _gather(args, ins, out, *, dim: str):
    """take_along_axis on x aligned to the indices' dims (plus `dim` last when they lack it); negative
    indices wrap, out-of-range ones are clamped (compiled code cannot raise as the reference does)."""
    (x, idx), (px, pi) = args, (ins[0].physical_order, ins[1].physical_order)
    order = pi if dim in pi else (*pi, dim)
    ib = idx if dim in pi else idx[..., None]
    n = ins[0].type.size(dim)
    y = jnp.take_along_axis(align(x, px, order), jnp.where(ib < 0, ib + n, ib), axis=order.index(dim),
                            mode="clip")
    return (y, order) if dim in pi else (y[..., 0], pi)


def _pad(args, ins, out, *, pads, value: float):
    (x,), order = args, ins[0].physical_order
    config = [(0, 0, 0)] * x.ndim
    for dim, low, high, interior in pads:
        config[order.index(dim)] = (low, high, interior)
    return lax.pad(x, jnp.array(value, x.dtype), config), order


def _scatter_add(args, ins, out, *, dim: str):
    """``x.at[..., idx, ...].add(updates)``: duplicate indices add up; negative ones count from the end."""
    (x, idx, updates), (px, pi, pu) = args, (ins[0].physical_order, ins[1].physical_order, ins[2].physical_order)
    ax = px.index(dim)
    u = transpose(updates, pu, (*px[:ax], *pi, *px[ax + 1:]))
    return x.at[(slice(None),) * ax + (idx,)].add(u), px


# ----------------------------------------------------------------------------------------------
# cumulative
# ----------------------------------------------------------------------------------------------

def _cumulative(fn: Callable[..., jax.Array]) -> Lowering:
    def lower(args, ins, out, *, dim: str, reverse: bool):
        order = ins[0].physical_order
        x = args[0]
        y = fn(_widen(x), order.index(dim), reverse=reverse)
        return y.astype(x.dtype), order
    return lower


# ----------------------------------------------------------------------------------------------
# control flow: sub-programs run through to_jax, in their logical orders at the boundary
# ----------------------------------------------------------------------------------------------

def _scan(args, ins, outs, *, body: Program, over: str, reverse: bool, num_consts: int, num_carry: int,
          precision: lax.Precision = lax.Precision.HIGHEST):
    """lax.scan over ``over``: xs move it to the front, carries and consts go in their logical orders."""
    step_fn = to_jax(body, precision)
    logical = [transpose(a, v.physical_order, v.type.names) for a, v in zip(args, ins)]
    split = num_consts + num_carry
    consts, init = logical[:num_consts], logical[num_consts:split]
    xs = [transpose(a, v.type.names, (over, *[n for n in v.type.names if n != over]))
          for a, v in zip(logical[split:], ins[split:])]

    def step(carry, x_t):
        results = step_fn(*consts, *carry, *x_t)
        return results[:num_carry], results[num_carry:]
    carry, ys = lax.scan(step, init, xs, reverse=reverse)
    return [(a, v.type.names) for a, v in zip([*carry, *ys], outs)]


def _cond(args, ins, outs, *, true_branch: Program, false_branch: Program,
          precision: lax.Precision = lax.Precision.HIGHEST):
    ops_ = [transpose(a, v.physical_order, v.type.names) for a, v in zip(args[1:], ins[1:])]
    results = lax.cond(args[0], to_jax(true_branch, precision), to_jax(false_branch, precision), *ops_)
    return [(a, v.type.names) for a, v in zip(results, outs)]


# ----------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------

LOWERINGS: dict[str, Lowering] = {
    **{name: _elementwise(fn) for name, fn in UNARY.items()},
    **{name: _elementwise(fn) for name, fn in BINARY.items()},
    "where": _elementwise(jnp.where),
    "cast": _cast,
    "full": _full, "iota": _iota, "constant": _constant,
    "reduce_sum": _reduce(jnp.sum), "reduce_max": _reduce(jnp.max), "reduce_min": _reduce(jnp.min),
    "reduce_prod": _reduce(jnp.prod),
    "argmax": _arg(jnp.argmax), "argmin": _arg(jnp.argmin),
    "softmax": _softmax(jax.nn.softmax), "log_softmax": _softmax(jax.nn.log_softmax),
    "layer_norm": _layer_norm,
    "contract": _contract, "conv2d": _conv2d, "pool2d": _pool2d,
    "align": _align, "squeeze": _squeeze, "rename": _rename, "flatten": _flatten, "unflatten": _unflatten,
    "select": _select, "slice": _slice, "concat": _concat, "take": _take,
    "gather": _gather,
    "cumsum": _cumulative(lax.cumsum), "cumprod": _cumulative(lax.cumprod),
    "scan": _scan, "cond": _cond,
    "pad": _pad, "scatter_add": _scatter_add,
}
_PRECISION_AWARE = {"contract", "conv2d", "scan", "cond"}


def to_jax(program: Program, precision: str | lax.Precision = "highest",
           constrain: Callable[[jax.Array, Value], jax.Array] | None = None) -> Callable[..., list[jax.Array]]:
    """A JAX function equivalent to ``program``: it takes the inputs in their LOGICAL order and returns
    the outputs (a list) in their logical order; in between every value is in its physical order.

    ``constrain(array, value)``, when given, is applied to every equation's result (sharding uses it to
    add `with_sharding_constraint`). Every primitive of ``program`` must be in `LOWERINGS`.
    """
    prec = PRECISIONS[precision] if isinstance(precision, str) else precision

    def fn(*args: jax.Array) -> list[jax.Array]:
        env: dict[int, jax.Array] = {}
        for v, a in zip(program.inputs, args):
            env[v.id] = transpose(a, v.type.names, v.physical_order)
        for e in program.eqns:
            params = e.kwargs | ({"precision": prec} if e.prim in _PRECISION_AWARE else {})
            args = [env[v.id] for v in e.inputs]
            if ops.get(e.prim).multiple_results:
                results = LOWERINGS[e.prim](args, e.inputs, e.outputs, **params)
            else:
                results = [LOWERINGS[e.prim](args, e.inputs, e.out, **params)]
            for v, (y, order) in zip(e.outputs, results, strict=True):
                y = transpose(y, order, v.physical_order)
                want = (_shape(v, v.physical_order), _dtype(v))
                if (y.shape, y.dtype) != want:  # a bug in a lowering, never the user's fault
                    raise AssertionError(f"xla lowering of {e.prim} gave {y.dtype}{list(y.shape)}, "
                                         f"the rule says {want[1]}{list(want[0])} in order {v.physical_order}")
                env[v.id] = constrain(y, v) if constrain else y
        return [transpose(env[v.id], v.physical_order, v.type.names) for v in program.outputs]

    fn.__name__ = fn.__qualname__ = "nir_program"  # names the module in StableHLO/HLO dumps
    return fn
