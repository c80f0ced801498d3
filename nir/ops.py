"""Every nir primitive, once: its parameters, its named-shape rule, its dtype rule and its reference
implementation (numpy), side by side.

No primitive refers to an axis number. A rule receives the input `TensorType`s and the params and
returns the output `TensorType` (raising `NamedShapeError`); a reference implementation receives
numpy arrays whose axes follow their types' logical order and returns an array in the output type's
logical order. The reference interpreter (`nir.interpret`) is these implementations run in sequence,
and it is the definition every backend is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .types import NamedShapeError, TensorType, format_dims, is_float, numpy_dtype

Rule = Callable[..., TensorType]
Impl = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Primitive:
    """One IR operation: ``rule(*in_types, **params) -> out_type``, ``impl(*arrays, **params)``.

    ``kind`` groups primitives for backends and the fuzzer: elementwise, reduction, layout,
    contraction, window, normalization, creation, index.
    """

    name: str
    kind: str
    arity: int | None  # None: variadic
    rule: Rule = field(repr=False)
    impl: Impl = field(repr=False)
    doc: str = ""


PRIMITIVES: dict[str, Primitive] = {}


def _register(name: str, kind: str, arity: int | None, rule: Rule, impl: Impl, doc: str = "") -> None:
    PRIMITIVES[name] = Primitive(name, kind, arity, rule, impl, doc)


def get(name: str) -> Primitive:
    """The primitive called ``name``; a clear error for an unknown one."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise NamedShapeError(f"unknown primitive {name!r}; known: {', '.join(sorted(PRIMITIVES))}") from None


def _fail(op: str, msg: str, *types: TensorType, fix: str = "") -> NamedShapeError:
    shapes = " and ".join(t.pretty() for t in types)
    text = f"{op}: {msg}"
    if shapes:
        text += f" (named shapes {shapes})"
    if fix:
        text += f". {fix}"
    return NamedShapeError(text)


def to_order(x: np.ndarray, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    """Move the axes of ``x`` (named ``src``) into the order ``dst``; names of ``dst`` missing from
    ``src`` become size-1 axes, ready for numpy broadcasting. Every name of ``src`` must be in ``dst``."""
    perm = [src.index(n) for n in dst if n in src]
    y = np.transpose(x, perm) if perm != list(range(len(src))) else x
    return y.reshape([x.shape[src.index(n)] if n in src else 1 for n in dst])


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

def _broadcast_dims(op: str, types: Sequence[TensorType]) -> tuple[tuple[str, int], ...]:
    """Union of the operands' dims by name: the largest operand's order, then any other names.
    A dim present in several operands must have equal sizes, or size 1 (broadcast)."""
    first = max(types, key=lambda t: t.ndim)
    order = list(first.names) + [n for t in types for n in t.names if n not in first.names]
    order = list(dict.fromkeys(order))
    sizes: dict[str, int] = {}
    for t in types:
        for n, s in t.dims:
            have = sizes.get(n, 1)
            if s != 1 and have != 1 and s != have:
                raise _fail(op, f"dim {n!r} has size {have} in one operand and {s} in another", *types,
                            fix="Sizes of a dim shared by name must agree (or be 1 to broadcast)")
            sizes[n] = max(have, s) if s != 0 and have != 0 else 0
    return tuple((n, sizes[n]) for n in order)


def _elementwise_rule(name: str, out_dtype: str | None = None, float_only: bool = False) -> Rule:
    def rule(*types: TensorType) -> TensorType:
        dtypes = {t.dtype for t in types}
        if len(dtypes) != 1:
            raise _fail(name, f"operands have different dtypes {sorted(dtypes)}", *types,
                        fix="Cast one operand with .to(dtype)")
        dtype = types[0].dtype
        if float_only and not is_float(dtype):
            raise _fail(name, f"needs a floating-point operand, got {dtype}", *types, fix="Cast with .to('float32')")
        return TensorType(_broadcast_dims(name, types), out_dtype or dtype)
    return rule


def _where_rule(cond: TensorType, x: TensorType, y: TensorType) -> TensorType:
    if cond.dtype != "bool":
        raise _fail("where", f"condition must be bool, got {cond.dtype}", cond)
    if x.dtype != y.dtype:
        raise _fail("where", f"branches have different dtypes {x.dtype} and {y.dtype}", x, y)
    return TensorType(_broadcast_dims("where", (cond, x, y)), x.dtype)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # exact and fast where scipy is installed
        return erf(x)
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


UNARY: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    # name: (numpy function, float only)
    "neg": (np.negative, False),
    "abs": (np.abs, False),
    "relu": (lambda x: np.maximum(x, np.zeros((), x.dtype)), False),
    "exp": (np.exp, True),
    "log": (np.log, True),
    "sqrt": (np.sqrt, True),
    "rsqrt": (lambda x: 1 / np.sqrt(x), True),
    "tanh": (np.tanh, True),
    "sigmoid": (_sigmoid, True),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(np.asarray(2, x.dtype)))), True),  # exact (erf) GELU
    "sin": (np.sin, True),
    "cos": (np.cos, True),
    "erf": (_erf, True),
    "logical_not": (np.logical_not, False),
}

BINARY: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str | None, bool]] = {
    # name: (numpy function, output dtype (None: same as input), float only)
    "add": (np.add, None, False),
    "sub": (np.subtract, None, False),
    "mul": (np.multiply, None, False),
    "div": (np.divide, None, True),
    "pow": (np.power, None, True),
    "maximum": (np.maximum, None, False),
    "minimum": (np.minimum, None, False),
    "eq": (np.equal, "bool", False),
    "ne": (np.not_equal, "bool", False),
    "lt": (np.less, "bool", False),
    "le": (np.less_equal, "bool", False),
    "gt": (np.greater, "bool", False),
    "ge": (np.greater_equal, "bool", False),
    "logical_and": (np.logical_and, None, False),
    "logical_or": (np.logical_or, None, False),
}


def _elementwise_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(*args: np.ndarray, types: Sequence[TensorType], out: TensorType) -> np.ndarray:
        aligned = [to_order(a, t.names, out.names) for a, t in zip(args, types)]
        return np.broadcast_to(fn(*aligned), out.shape)
    return impl


for _name, (_fn, _float_only) in UNARY.items():
    _register(_name, "elementwise", 1, _elementwise_rule(_name, float_only=_float_only), _elementwise_impl(_fn))
for _name, (_fn, _out, _float_only) in BINARY.items():
    _register(_name, "elementwise", 2, _elementwise_rule(_name, _out, _float_only), _elementwise_impl(_fn))
_register("where", "elementwise", 3, _where_rule, _elementwise_impl(np.where))


def _cast_rule(x: TensorType, *, dtype: str) -> TensorType:
    return x.with_dtype(dtype)


_register("cast", "elementwise", 1, _cast_rule,
          lambda x, *, types, out, dtype: x.astype(numpy_dtype(dtype)), "convert to `dtype`")

# ----------------------------------------------------------------------------------------------
# creation
# ----------------------------------------------------------------------------------------------


def _full_rule(*, value: float, dims: tuple, dtype: str) -> TensorType:
    return TensorType(tuple(dims), dtype)


def _full_impl(*, types, out: TensorType, value: float, dims: tuple, dtype: str) -> np.ndarray:
    return np.full(out.shape, value, dtype=numpy_dtype(dtype))


def _iota_rule(*, dim: str, size: int, start: float, step: float, dtype: str) -> TensorType:
    return TensorType(((dim, size),), dtype)


def _iota_impl(*, types, out: TensorType, dim: str, size: int, start: float, step: float, dtype: str) -> np.ndarray:
    return (start + step * np.arange(size, dtype=np.float64)).astype(numpy_dtype(dtype))


def _constant_rule(*, data: bytes, dims: tuple, dtype: str) -> TensorType:
    t = TensorType(tuple(dims), dtype)
    if len(data) != t.numel * numpy_dtype(dtype).itemsize:
        raise _fail("constant", f"holds {len(data)} bytes, but {t} needs {t.numel * numpy_dtype(dtype).itemsize}", t)
    return t


def _constant_impl(*, types, out: TensorType, data: bytes, dims: tuple, dtype: str) -> np.ndarray:
    return np.frombuffer(data, dtype=numpy_dtype(dtype)).reshape(out.shape)


_register("full", "creation", 0, _full_rule, _full_impl, "a tensor of `dims` filled with `value`")
_register("iota", "creation", 0, _iota_rule, _iota_impl, "start + step * arange(size) along `dim`")
_register("constant", "creation", 0, _constant_rule, _constant_impl, "a literal array (C order, logical order)")

# ----------------------------------------------------------------------------------------------
# reductions and normalizations
# ----------------------------------------------------------------------------------------------


def _check_present(op: str, x: TensorType, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in x.names]
    if missing:
        raise _fail(op, f"dims {missing} are not in the input", x,
                    fix=f"The input's dims are {list(x.names)}; check the spelling or rename()")
    if len(set(names)) != len(names):
        raise _fail(op, f"dims {list(names)} name a dim twice", x)


def _reduce_rule(op: str) -> Rule:
    def rule(x: TensorType, *, dims: tuple[str, ...]) -> TensorType:
        _check_present(op, x, dims)
        return x.with_dims((n, s) for n, s in x.dims if n not in dims)
    return rule


REDUCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod,
}


def _reduce_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...]) -> np.ndarray:
        axes = tuple(types[0].names.index(n) for n in dims)
        return np.asarray(fn(x, axis=axes)).astype(x.dtype, copy=False)
    return impl


for _name, _fn in REDUCTIONS.items():
    _register(_name, "reduction", 1, _reduce_rule(_name), _reduce_impl(_fn))


def _arg_rule(op: str) -> Rule:
    def rule(x: TensorType, *, dim: str) -> TensorType:
        _check_present(op, x, (dim,))
        if x.size(dim) == 0:
            raise _fail(op, f"cannot reduce the empty dim {dim!r}", x)
        return TensorType(tuple((n, s) for n, s in x.dims if n != dim), "int64")
    return rule


def _arg_impl(fn: Callable[..., np.ndarray]) -> Impl:
    def impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
        return fn(x, axis=types[0].names.index(dim)).astype(np.int64)
    return impl


_register("argmax", "reduction", 1, _arg_rule("argmax"), _arg_impl(np.argmax), "index of the first maximum")
_register("argmin", "reduction", 1, _arg_rule("argmin"), _arg_impl(np.argmin), "index of the first minimum")


def _same_over_rule(op: str, single: bool) -> Rule:
    def rule(x: TensorType, **p: Any) -> TensorType:
        names = (p["dim"],) if single else p["dims"]
        _check_present(op, x, names)
        if not is_float(x.dtype):
            raise _fail(op, f"needs a floating-point input, got {x.dtype}", x, fix="Cast with .to('float32')")
        return x
    return rule


def _softmax_impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    e = np.exp(x - np.max(x, axis=ax, keepdims=True))
    return e / np.sum(e, axis=ax, keepdims=True)


def _log_softmax_impl(x: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    z = x - np.max(x, axis=ax, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=ax, keepdims=True))


def _layer_norm_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...], eps: float) -> np.ndarray:
    axes = tuple(types[0].names.index(n) for n in dims)
    mean = np.mean(x, axis=axes, keepdims=True)
    var = np.mean(np.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + np.asarray(eps, x.dtype))


_register("softmax", "normalization", 1, _same_over_rule("softmax", True), _softmax_impl)
_register("log_softmax", "normalization", 1, _same_over_rule("log_softmax", True), _log_softmax_impl)
_register("layer_norm", "normalization", 1, _same_over_rule("layer_norm", False), _layer_norm_impl,
          "(x - mean) / sqrt(var + eps) over `dims` (biased variance); scale and shift are separate ops")

# ----------------------------------------------------------------------------------------------
# contraction
# ----------------------------------------------------------------------------------------------


def _contract_rule(a: TensorType, b: TensorType, *, over: tuple[str, ...]) -> TensorType:
    if a.dtype != b.dtype:
        raise _fail("contract", f"operands have different dtypes {a.dtype} and {b.dtype}", a, b,
                    fix="Cast one operand with .to(dtype)")
    for n in over:
        if n not in a.names or n not in b.names:
            raise _fail("contract", f"contracted dim {n!r} must be in both operands", a, b,
                        fix="rename() the dim of one operand so that both use the same name")
    for n in set(a.names) & set(b.names):
        if a.size(n) != b.size(n):
            raise _fail("contract", f"dim {n!r} has size {a.size(n)} and {b.size(n)}", a, b,
                        fix="A dim shared by name must have the same size in both operands")
    batch = [(n, s) for n, s in a.dims if n in b.names and n not in over]
    a_free = [(n, s) for n, s in a.dims if n not in b.names]
    b_free = [(n, s) for n, s in b.dims if n not in a.names]
    return TensorType(tuple(batch + a_free + b_free), a.dtype)


def _contract_impl(a: np.ndarray, b: np.ndarray, *, types, out: TensorType, over: tuple[str, ...]) -> np.ndarray:
    letters: dict[str, str] = {}
    def sub(names: Sequence[str]) -> str:
        return "".join(letters.setdefault(n, chr(ord("a") + len(letters))) for n in names)
    spec = f"{sub(types[0].names)},{sub(types[1].names)}->{sub(out.names)}"
    return np.einsum(spec, a, b, optimize=True)  # BLAS for large contractions


_register("contract", "contraction", 2, _contract_rule, _contract_impl,
          "sum over the `over` dims of a*b; dims in both and not contracted are batch dims, kept once")

# ----------------------------------------------------------------------------------------------
# windows: convolution and pooling
# ----------------------------------------------------------------------------------------------


def _window_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv2d_rule(x: TensorType, w: TensorType, *, channels: str, out_channels: str, spatial: tuple[str, str],
                 stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                 groups: int) -> TensorType:
    op = "conv2d"
    if x.dtype != w.dtype:
        raise _fail(op, f"input and weight have different dtypes {x.dtype} and {w.dtype}", x, w)
    _check_present(op, x, (channels, *spatial))
    want = {out_channels, channels, *spatial}
    if set(w.names) != want or len(want) != 4:
        raise _fail(op, f"the weight's dims must be named {sorted(want)}", x, w,
                    fix=f"rename() the weight's dims to {out_channels!r}, {channels!r} and the spatial names "
                        f"{spatial[0]!r}, {spatial[1]!r}")
    if out_channels in x.names:
        raise _fail(op, f"out_channels name {out_channels!r} is already a dim of the input", x, w,
                    fix="Pass out_channels= a name the input does not use")
    if groups < 1 or x.size(channels) % groups or w.size(out_channels) % groups:
        raise _fail(op, f"groups={groups} must divide both {channels}={x.size(channels)} and "
                        f"{out_channels}={w.size(out_channels)}", x, w)
    if w.size(channels) * groups != x.size(channels):
        raise _fail(op, f"weight has {channels}={w.size(channels)} but the input has {channels}={x.size(channels)}"
                        f" with groups={groups}", x, w, fix=f"The weight's {channels!r} must be input {channels} / groups")
    dims = []
    for n, s in x.dims:
        if n == channels:
            dims.append((out_channels, w.size(out_channels)))
        elif n in spatial:
            i = spatial.index(n)
            o = _window_out(s, w.size(n), stride[i], padding[i], dilation[i])
            if o <= 0:
                raise _fail(op, f"kernel {w.size(n)} (dilation {dilation[i]}) is larger than padded {n}={s}", x, w)
            dims.append((n, o))
        else:
            dims.append((n, s))
    return TensorType(tuple(dims), x.dtype)


def _windows(xp: np.ndarray, k: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
             out_hw: tuple[int, int]) -> np.ndarray:
    """(B, C, Hp, Wp) -> (B, C, Ho, Wo, kh, kw) view of the sliding windows."""
    B, C, _, _ = xp.shape
    sb, sc, sh, sw = xp.strides
    shape = (B, C, out_hw[0], out_hw[1], k[0], k[1])
    strides = (sb, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def _to_bchw(x: np.ndarray, t: TensorType, channels: str | None, spatial: Sequence[str]):
    """Move x to (batch..., C, H, W) and flatten batch; returns array and the batch dims."""
    batch = [n for n in t.names if n != channels and n not in spatial]
    order = batch + ([channels] if channels else []) + list(spatial)
    y = to_order(x, t.names, order)
    bshape = [t.size(n) for n in batch]
    y = y.reshape((int(np.prod(bshape, dtype=np.int64)), -1 if channels else 1, *y.shape[-2:]))
    return y, batch


def _conv2d_impl(x: np.ndarray, w: np.ndarray, *, types, out: TensorType, channels: str, out_channels: str,
                 spatial: tuple[str, str], stride, padding, dilation, groups: int) -> np.ndarray:
    xt, wt = types
    xb, batch = _to_bchw(x, xt, channels, spatial)
    wo = to_order(w, wt.names, [out_channels, channels, *spatial])
    ph, pw = padding
    xp = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo_ = out.size(spatial[0]), out.size(spatial[1])
    win = _windows(xp, wo.shape[2:], stride, dilation, (ho, wo_))  # B, C, Ho, Wo, kh, kw
    B, C = xb.shape[:2]
    O = wo.shape[0]
    win = win.reshape(B, groups, C // groups, ho, wo_, *wo.shape[2:])
    wg = wo.reshape(groups, O // groups, C // groups, *wo.shape[2:])
    y = np.einsum("bgchwij,gocij->bgohw", win, wg).reshape(B, O, ho, wo_)
    y = y.reshape([xt.size(n) for n in batch] + [O, ho, wo_])
    return to_order(y, batch + [out_channels, *spatial], out.names)


def _pool_rule(x: TensorType, *, kind: str, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], spatial: tuple[str, str]) -> TensorType:
    op = f"{kind}_pool2d"
    _check_present(op, x, spatial)
    if kind not in ("max", "avg"):
        raise _fail(op, f"unknown pooling kind {kind!r} (max or avg)", x)
    dims = []
    for n, s in x.dims:
        if n in spatial:
            i = spatial.index(n)
            if padding[i] * 2 > kernel[i]:
                raise _fail(op, f"padding {padding[i]} must be at most half the kernel {kernel[i]} along {n}", x)
            o = _window_out(s, kernel[i], stride[i], padding[i], 1)
            if o <= 0:
                raise _fail(op, f"kernel {kernel[i]} is larger than padded {n}={s}", x)
            dims.append((n, o))
        else:
            dims.append((n, s))
    return TensorType(tuple(dims), x.dtype)


def _pool_impl(x: np.ndarray, *, types, out: TensorType, kind: str, kernel, stride, padding, spatial) -> np.ndarray:
    xt = types[0]
    others = [n for n in xt.names if n not in spatial]
    xb, _ = _to_bchw(x, xt, None, spatial)
    ph, pw = padding
    fill = -np.inf if kind == "max" else 0
    xp = np.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho, wo = out.size(spatial[0]), out.size(spatial[1])
    win = _windows(xp, kernel, stride, (1, 1), (ho, wo))
    y = win.max(axis=(-2, -1)) if kind == "max" else win.mean(axis=(-2, -1))  # avg counts padding (torch default)
    y = y.reshape([xt.size(n) for n in others] + [ho, wo])
    return to_order(y.astype(x.dtype, copy=False), others + list(spatial), out.names)


_register("conv2d", "window", 2, _conv2d_rule, _conv2d_impl,
          "cross-correlation over the two `spatial` dims; weight dims: out_channels, channels, *spatial")
_register("pool2d", "window", 1, _pool_rule, _pool_impl, "max or average pooling over the two `spatial` dims")

# ----------------------------------------------------------------------------------------------
# layout and indexing
# ----------------------------------------------------------------------------------------------


def _align_rule(x: TensorType, *, dims: tuple) -> TensorType:
    out = TensorType(tuple(dims), x.dtype)
    for n, s in x.dims:
        if n not in out.names:
            raise _fail("align", f"dim {n!r} of the input is missing from the target dims", x, out,
                        fix="A dim can only be dropped by a reduction, select() or squeeze()")
        if s != out.size(n) and s != 1:
            raise _fail("align", f"dim {n!r} has size {s}, cannot expand it to {out.size(n)}", x, out,
                        fix="Only dims of size 1 can be expanded")
    return out


def _align_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple) -> np.ndarray:
    return np.broadcast_to(to_order(x, types[0].names, out.names), out.shape)


def _squeeze_rule(x: TensorType, *, dims: tuple[str, ...]) -> TensorType:
    _check_present("squeeze", x, dims)
    big = [n for n in dims if x.size(n) != 1]
    if big:
        raise _fail("squeeze", f"dims {big} do not have size 1", x)
    return x.with_dims((n, s) for n, s in x.dims if n not in dims)


def _rename_rule(x: TensorType, *, mapping: tuple[tuple[str, str], ...]) -> TensorType:
    m = dict(mapping)
    _check_present("rename", x, tuple(m))
    return x.with_dims((m.get(n, n), s) for n, s in x.dims)


def _flatten_rule(x: TensorType, *, dims: tuple[str, ...], into: str) -> TensorType:
    _check_present("flatten", x, dims)
    if not dims:
        raise _fail("flatten", "needs at least one dim to flatten", x)
    if into in x.names and into not in dims:
        raise _fail("flatten", f"output name {into!r} is already a dim of the input", x)
    size = int(np.prod([x.size(n) for n in dims], dtype=np.int64))
    first = min(x.names.index(n) for n in dims)
    rest = [(n, s) for n, s in x.dims if n not in dims]
    rest.insert(sum(1 for n in x.names[:first] if n not in dims), (into, size))
    return x.with_dims(rest)


def _flatten_impl(x: np.ndarray, *, types, out: TensorType, dims: tuple[str, ...], into: str) -> np.ndarray:
    t = types[0]
    rest = [n for n in t.names if n not in dims]
    y = to_order(x, t.names, rest + list(dims)).reshape([t.size(n) for n in rest] + [out.size(into)])
    return to_order(y, rest + [into], out.names)


def _unflatten_rule(x: TensorType, *, dim: str, parts: tuple) -> TensorType:
    _check_present("unflatten", x, (dim,))
    size = int(np.prod([s for _, s in parts], dtype=np.int64))
    if size != x.size(dim):
        raise _fail("unflatten", f"sizes {[s for _, s in parts]} multiply to {size}, not {dim}={x.size(dim)}", x)
    clash = [n for n, _ in parts if n in x.names and n != dim]
    if clash:
        raise _fail("unflatten", f"new names {clash} are already dims of the input", x)
    i = x.names.index(dim)
    return x.with_dims(x.dims[:i] + tuple(parts) + x.dims[i + 1:])


def _unflatten_impl(x: np.ndarray, *, types, out: TensorType, dim: str, parts: tuple) -> np.ndarray:
    return x.reshape(out.shape)


def _select_rule(x: TensorType, *, dim: str, index: int) -> TensorType:
    _check_present("select", x, (dim,))
    if not 0 <= index < x.size(dim):
        raise _fail("select", f"index {index} is out of range for {dim}={x.size(dim)}", x)
    return x.with_dims((n, s) for n, s in x.dims if n != dim)


def _slice_rule(x: TensorType, *, dim: str, start: int, stop: int, step: int) -> TensorType:
    _check_present("slice", x, (dim,))
    if step < 1 or not 0 <= start <= stop <= x.size(dim):
        raise _fail("slice", f"bounds start={start} stop={stop} step={step} do not fit {dim}={x.size(dim)}", x)
    return x.with_dims((n, len(range(start, stop, step)) if n == dim else s) for n, s in x.dims)


def _concat_rule(*xs: TensorType, dim: str) -> TensorType:
    if not xs:
        raise NamedShapeError("concat: needs at least one tensor")
    first = xs[0]
    for t in xs:
        _check_present("concat", t, (dim,))
        if t.dtype != first.dtype:
            raise _fail("concat", f"tensors have different dtypes {first.dtype} and {t.dtype}", first, t)
        a = {n: s for n, s in first.dims if n != dim}
        b = {n: s for n, s in t.dims if n != dim}
        if a != b:
            raise _fail("concat", f"tensors must agree on every dim but {dim!r}", first, t,
                        fix="align_as() / rename() the tensors so their other dims match")
    total = sum(t.size(dim) for t in xs)
    return first.with_dims((n, total if n == dim else s) for n, s in first.dims)


def _concat_impl(*xs: np.ndarray, types, out: TensorType, dim: str) -> np.ndarray:
    parts = [to_order(x, t.names, out.names) for x, t in zip(xs, types)]
    return np.concatenate(parts, axis=out.names.index(dim))


def _take_rule(x: TensorType, idx: TensorType, *, dim: str) -> TensorType:
    _check_present("take", x, (dim,))
    if idx.dtype not in ("int32", "int64"):
        raise _fail("take", f"indices must be int32 or int64, got {idx.dtype}", x, idx)
    clash = [n for n in idx.names if n in x.names and n != dim]
    if clash:
        raise _fail("take", f"index dims {clash} are already dims of the input", x, idx, fix="rename() the indices")
    i = x.names.index(dim)
    return x.with_dims(x.dims[:i] + idx.dims + x.dims[i + 1:])


def _take_impl(x: np.ndarray, idx: np.ndarray, *, types, out: TensorType, dim: str) -> np.ndarray:
    ax = types[0].names.index(dim)
    n = types[0].size(dim)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"take: an index is out of range for {dim}={n}")
    return np.take(x, idx, axis=ax)


_register("align", "layout", 1, _align_rule, _align_impl,
          "reorder to `dims`, inserting new dims and expanding size-1 dims (permute/unsqueeze/expand by name)")
_register("squeeze", "layout", 1, _squeeze_rule,
          lambda x, *, types, out, dims: x.reshape(out.shape), "drop size-1 dims")
_register("rename", "layout", 1, _rename_rule, lambda x, *, types, out, mapping: x, "rename dims; data unchanged")
_register("flatten", "layout", 1, _flatten_rule, _flatten_impl,
          "merge `dims` (row-major in the given order) into one dim `into`")
_register("unflatten", "layout", 1, _unflatten_rule, _unflatten_impl, "split `dim` into named `parts` (row-major)")
_register("select", "index", 1, _select_rule,
          lambda x, *, types, out, dim, index: np.take(x, index, axis=types[0].names.index(dim)),
          "take one index along `dim`, dropping it")
_register("slice", "index", 1, _slice_rule,
          lambda x, *, types, out, dim, start, stop, step: x[(slice(None),) * types[0].names.index(dim)
                                                             + (slice(start, stop, step),)],
          "a strided range along `dim`")
_register("concat", "index", None, _concat_rule, _concat_impl, "join along `dim`")
_register("take", "index", 2, _take_rule, _take_impl, "gather along `dim` with an integer index tensor")


def describe() -> str:
    """The op set on one screen: name, kind, arity, what it does."""
    rows = [f"{p.name:<12} {p.kind:<14} {('*' if p.arity is None else p.arity)!s:<3} {p.doc}"
            for p in sorted(PRIMITIVES.values(), key=lambda p: (p.kind, p.name))]
    return "\n".join(rows)


__all__ = ["Primitive", "PRIMITIVES", "get", "to_order", "describe", "UNARY", "BINARY", "REDUCTIONS",
           "format_dims"]
