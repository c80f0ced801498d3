"""The named-tensor API: every function here works eagerly and while tracing, and is also a
NamedTensor method where PyTorch has one (``nir.exp(x)`` and ``x.exp()``).

Positional rules follow PyTorch's named tensors (<= 2.12): operands broadcast by position from the
right, unnamed dims match anything, and two different names at the same position are an error
(`align_as` / `align_to` broadcast by name instead). The functions resolve those rules into
name-keyed primitives (`nir.ops`); no primitive sees an axis number.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from .tensor import NamedTensor, _user_names, as_tensor, bind, from_array
from .types import (NamedShapeError, TensorType, canonical_dtype, check_user_name, fresh_name,
                    is_float, is_generated, promote_dtypes)

Dim = int | str
TensorLike = NamedTensor | float | int | bool


def _pretty(*ts: NamedTensor) -> str:
    return " and ".join(t.type.pretty() for t in ts)


# ------------------------------------------------------------------------------------------------
# internal building blocks
# ------------------------------------------------------------------------------------------------

def _rename_ir(t: NamedTensor, mapping: dict[str, str]) -> NamedTensor:
    mapping = {k: v for k, v in mapping.items() if k != v}
    return bind("rename", [t], mapping=tuple(mapping.items())) if mapping else t


def _align_ir(t: NamedTensor, dims: Sequence[tuple[str, int]]) -> NamedTensor:
    dims = tuple(dims)
    return t if dims == t.type.dims else bind("align", [t], dims=dims)


def _cast(t: NamedTensor, dtype: str) -> NamedTensor:
    return t if t.dtype == dtype else bind("cast", [t], dtype=dtype)


def _fresh_unnamed(t: NamedTensor) -> NamedTensor:
    """``t`` with every unnamed dim given a new internal name, so it cannot match another tensor's."""
    return _rename_ir(t, {n: fresh_name() for n in t.type.names if is_generated(n)})


def _unify_types(op: str, types: Sequence[TensorType], shown: Sequence[TensorType] | None = None
                 ) -> list[dict[str, str]]:
    """PyTorch's broadcasting name rule on types: right-align; None matches anything; different names at
    the same position, or one name at different positions from the right, are errors. Returns, per type,
    the renames that make dims at the same position share one internal name. ``shown`` are the types
    errors display (the whole operands when ``types`` are parts of them)."""
    shown = list(shown or types)
    n = builtins.max((t.ndim for t in types), default=0)
    user: list[str | None] = [None] * n
    ir: list[str | None] = [None] * n
    size: list[int] = [1] * n
    owner: list[int] = [0] * n
    for k, t in enumerate(types):
        off = n - t.ndim
        for i, (name, s) in enumerate(t.dims):
            p, u = off + i, (None if is_generated(name) else name)
            if user[p] is not None and u is not None and user[p] != u:
                raise NamedShapeError(
                    f"{op}: dim {user[p]!r} and dim {u!r} are at the same position from the right but do not "
                    f"match (named shapes {shown[owner[p]].pretty()} and {shown[k].pretty()}). Positional "
                    f"broadcasting refuses to align different names: use align_as()/align_to() to broadcast "
                    f"by name, or rename() if they are the same dim")
            if ir[p] is None or (u is not None and user[p] is None):
                ir[p], owner[p] = name, k
            if u is not None:
                user[p] = u
            size[p] = s if size[p] == 1 else size[p]
    for i, a in enumerate(types):  # a name must sit at one position from the right in every operand
        for j, b in enumerate(types):
            for name in a.names:
                if not is_generated(name) and name in b.names and \
                        a.ndim - a.names.index(name) != b.ndim - b.names.index(name):
                    raise NamedShapeError(
                        f"{op}: misaligned dims: dim {name!r} appears in a different position from the right "
                        f"across {shown[i].pretty()} and {shown[j].pretty()}. Use align_as()/align_to() to line "
                        f"the dims up by name")
    for k, t in enumerate(types):
        for i, s in enumerate(t.shape):
            p = n - t.ndim + i
            if s != 1 and size[p] != s:
                raise NamedShapeError(
                    f"{op}: sizes do not broadcast: dim {user[p] or 'None'!r} has size {size[p]} in one operand "
                    f"and {s} in another (named shapes {shown[owner[p]].pretty()} and {shown[k].pretty()})")
    return [{name: ir[n - t.ndim + i] for i, name in enumerate(t.names)} for t in types]  # type: ignore[misc]


def _unify(op: str, *ts: NamedTensor) -> list[NamedTensor]:
    """`_unify_types` applied: the tensors renamed so that aligned dims share internal names."""
    maps = _unify_types(op, [t.type for t in ts])
    return [_rename_ir(t, m) for t, m in zip(ts, maps)]


def _promote(op: str, *xs: TensorLike) -> list[NamedTensor]:
    """Make tensors of Python numbers (weakly typed) and cast all to the promoted dtype."""
    like = next((x for x in xs if isinstance(x, NamedTensor)), None)
    ts = [as_tensor(x, like, op) for x in xs]
    dtype = promote_dtypes(*(t.dtype for t in ts))
    return [_cast(t, dtype) for t in ts]


def _elementwise(prim: str, *xs: TensorLike, float_only: bool = False) -> NamedTensor:
    ts = _promote(prim, *xs)
    if float_only and not is_float(ts[0].dtype):
        ts = [_cast(t, "float32") for t in ts]
    return bind(prim, _unify(prim, *ts) if len(ts) > 1 else ts)


def _dims(t: NamedTensor, dim: Dim | Sequence[Dim] | None, op: str) -> tuple[str, ...]:
    """Internal names of ``dim`` (a name, an index, a sequence of them, or None for every dim)."""
    if dim is None:
        return t.type.names
    if isinstance(dim, (str, int, np.integer)):
        dim = (dim,)
    names = tuple(t._ir_name(d, op) for d in dim)
    if len(set(names)) != len(names):
        raise NamedShapeError(f"{op}: dim list {list(dim)} names a dim twice ({t.type.pretty()})")
    return names


def _align_by_name(p: NamedTensor, like: NamedTensor) -> NamedTensor:
    """``p`` laid out like ``like``, matching dims by name (size-1 dims where ``p`` lacks one). Unlike
    `align_as` this works when ``like`` has unnamed dims (they never match ``p``'s named dims): a per-channel
    bias or a layer_norm weight must broadcast against a batch whose batch dim the user left unnamed."""
    return _align_ir(p, [(n, p.type.size(n) if n in p.type.names else 1) for n in like.type.names])


def _keep(t: NamedTensor, reduced: NamedTensor, dims: Sequence[str]) -> NamedTensor:
    """Put size-1 dims back where ``dims`` were (keepdim=True)."""
    return _align_ir(reduced, [(n, 1 if n in dims else s) for n, s in t.type.dims])


# ------------------------------------------------------------------------------------------------
# elementwise
# ------------------------------------------------------------------------------------------------

def add(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a + b`` with positional-broadcast name checks."""
    return _elementwise("add", a, b)


def sub(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a - b``."""
    return _elementwise("sub", a, b)


def mul(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a * b``."""
    return _elementwise("mul", a, b)


def div(a: TensorLike, b: TensorLike) -> NamedTensor:
    """``a / b`` (true division: integer operands give float32)."""
    return _elementwise("div", a, b, float_only=True)


def pow(a: TensorLike, b: TensorLike) -> NamedTensor:  # noqa: A001 - PyTorch's name
    """``a ** b`` (floating point)."""
    return _elementwise("pow", a, b, float_only=True)


def maximum(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise maximum."""
    return _elementwise("maximum", a, b)


def minimum(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise minimum."""
    return _elementwise("minimum", a, b)


def _compare(prim: str) -> Any:
    def f(a: TensorLike, b: TensorLike) -> NamedTensor:
        return _elementwise(prim, a, b)
    f.__name__ = prim
    f.__doc__ = f"Elementwise ``{prim}`` comparison; gives a bool tensor."
    return f


eq, ne, lt, le, gt, ge = (_compare(p) for p in ("eq", "ne", "lt", "le", "gt", "ge"))


def logical_and(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise ``and`` of bool tensors."""
    return bind("logical_and", _unify("logical_and", *(_cast(t, "bool") for t in _promote("logical_and", a, b))))


def logical_or(a: TensorLike, b: TensorLike) -> NamedTensor:
    """Elementwise ``or`` of bool tensors."""
    return bind("logical_or", _unify("logical_or", *(_cast(t, "bool") for t in _promote("logical_or", a, b))))


def logical_not(a: NamedTensor) -> NamedTensor:
    """Elementwise ``not`` of a bool tensor."""
    return bind("logical_not", [_cast(a, "bool")])


def _unary(prim: str, float_only: bool) -> Any:
    def f(x: NamedTensor) -> NamedTensor:
        return _elementwise(prim, x, float_only=float_only)
    f.__name__ = prim
    f.__doc__ = f"Elementwise ``{prim}``; keeps names." + (" Integer input is cast to float32." if float_only else "")
    return f


neg, abs, relu = (_unary(p, False) for p in ("neg", "abs", "relu"))  # noqa: A001
exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos, erf = (
    _unary(p, True) for p in ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf"))


def gelu(x: NamedTensor, approximate: str = "none") -> NamedTensor:
    """GELU: exact (erf) by default, as in PyTorch; ``approximate='tanh'`` for the tanh form."""
    if approximate == "none":
        return _elementwise("gelu", x, float_only=True)
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    c = math.sqrt(2 / math.pi)
    return 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x)))


def where(cond: NamedTensor, x: TensorLike, y: TensorLike) -> NamedTensor:
    """``x`` where ``cond`` else ``y``, broadcasting all three by position with name checks."""
    like = next((t for t in (x, y) if isinstance(t, NamedTensor)), None)
    x, y = _promote("where", as_tensor(x, like, "where"), as_tensor(y, like, "where"))
    c = as_tensor(cond, None, "where")
    if c.dtype != "bool":
        raise TypeError(f"where: the condition must be a bool tensor, got {c.dtype} {c.type.pretty()}; "
                        "compare first, e.g. x > 0")
    return bind("where", _unify("where", c, x, y))


def clamp(x: NamedTensor, min: TensorLike | None = None, max: TensorLike | None = None) -> NamedTensor:  # noqa: A002
    """Limit ``x`` to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min= and max=")
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


def masked_fill(x: NamedTensor, mask: NamedTensor, value: float) -> NamedTensor:
    """``x`` with ``value`` where ``mask`` is True; ``mask`` broadcasts to ``x`` by position."""
    if mask.dtype != "bool":
        raise TypeError(f"masked_fill: mask must be bool, got {mask.dtype} {mask.type.pretty()}")
    if mask.ndim > x.ndim:
        raise NamedShapeError(f"masked_fill: mask {mask.type.pretty()} has more dims than the tensor {x.type.pretty()}")
    return where(mask, as_tensor(value, x, "masked_fill"), x)


def cast(x: NamedTensor, dtype: Any) -> NamedTensor:
    """``x`` converted to ``dtype`` (``"float16"``, ``np.float32``, ``torch.bfloat16``...)."""
    return _cast(x, canonical_dtype(dtype))


# ------------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------------

def _reduce(prim: str, x: NamedTensor, dim: Dim | Sequence[Dim] | None, keepdim: bool) -> NamedTensor:
    dims = _dims(x, dim, prim.replace("reduce_", ""))
    if prim in ("reduce_sum", "reduce_prod") and not is_float(x.dtype):
        x = _cast(x, "int64")  # PyTorch sums integers and bools as int64
    y = bind(prim, [x], dims=dims)
    return _keep(x, y, dims) if keepdim else y


def sum(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:  # noqa: A001
    """Sum over ``dim`` (a name, an index, a list of them, or None for all): ``x.sum('C')``."""
    return _reduce("reduce_sum", x, dim, keepdim)


def prod(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Product over ``dim``."""
    return _reduce("reduce_prod", x, dim, keepdim)


def _float_input(x: NamedTensor, op: str) -> None:
    if not is_float(x.dtype):
        raise TypeError(f"{op}: needs a floating-point tensor, got {x.dtype} {x.type.pretty()}; "
                        f"cast first with .to('float32')")


def mean(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Mean over ``dim`` (floating-point input, as in PyTorch)."""
    _float_input(x, "mean")
    dims = _dims(x, dim, "mean")
    count = int(np.prod([x.type.size(n) for n in dims], dtype=np.int64))
    return div(_reduce("reduce_sum", x, dims, keepdim), count)


def var(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, *, correction: int = 1,
        keepdim: bool = False, unbiased: bool | None = None) -> NamedTensor:
    """Variance over ``dim`` with Bessel's ``correction`` (1 by default, as in PyTorch)."""
    _float_input(x, "var")
    if unbiased is not None:
        correction = int(unbiased)
    dims = _dims(x, dim, "var")
    count = int(np.prod([x.type.size(n) for n in dims], dtype=np.int64))
    centered = x - mean(x, dims, keepdim=True)
    return div(_reduce("reduce_sum", centered * centered, dims, keepdim), builtins.max(count - correction, 0))


def std(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, *, correction: int = 1,
        keepdim: bool = False, unbiased: bool | None = None) -> NamedTensor:
    """Standard deviation over ``dim`` (square root of `var`)."""
    return sqrt(var(x, dim, correction=correction, keepdim=keepdim, unbiased=unbiased))


def logsumexp(x: NamedTensor, dim: Dim | Sequence[Dim], keepdim: bool = False) -> NamedTensor:
    """``log(sum(exp(x)))`` over ``dim``, computed stably."""
    _float_input(x, "logsumexp")
    dims = _dims(x, dim, "logsumexp")
    m = _reduce("reduce_max", x, dims, keepdim=True)
    m = where(abs(m) == math.inf, 0.0, m)  # an all -inf row stays -inf instead of becoming nan
    s = log(_reduce("reduce_sum", exp(x - m), dims, keepdim=True)) + m
    return bind("squeeze", [s], dims=dims) if not keepdim else s


MinMax = namedtuple("MinMax", ["values", "indices"])


def _minmax(prim: str, arg: str, x: NamedTensor, dim: Any, keepdim: bool) -> Any:
    if isinstance(dim, NamedTensor):
        return (maximum if prim == "reduce_max" else minimum)(x, dim)
    if dim is None:
        return _reduce(prim, x, None, False)
    values = _reduce(prim, x, dim, keepdim)
    return MinMax(values, _arg(arg, x, dim, keepdim))


def max(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """``x.max()`` (all dims) -> tensor; ``x.max(dim)`` -> (values, indices); ``x.max(other)`` -> maximum."""
    return _minmax("reduce_max", "argmax", x, dim, keepdim)


def min(x: NamedTensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """``x.min()`` -> tensor; ``x.min(dim)`` -> (values, indices); ``x.min(other)`` -> minimum."""
    return _minmax("reduce_min", "argmin", x, dim, keepdim)


def amax(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Maximum over one or several dims (values only)."""
    return _reduce("reduce_max", x, dim, keepdim)


def amin(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None, keepdim: bool = False) -> NamedTensor:
    """Minimum over one or several dims (values only)."""
    return _reduce("reduce_min", x, dim, keepdim)


def _arg(prim: str, x: NamedTensor, dim: Dim | None, keepdim: bool) -> NamedTensor:
    if dim is None:
        flat = flatten(x) if x.ndim != 1 else x
        return bind(prim, [flat], dim=flat.type.names[0]) if flat.ndim else bind("full", [], value=0, dims=(),
                                                                                     dtype="int64")
    (name,) = _dims(x, dim, prim)
    y = bind(prim, [x], dim=name)
    return _keep(x, y, (name,)) if keepdim else y


def argmax(x: NamedTensor, dim: Dim | None = None, keepdim: bool = False) -> NamedTensor:
    """Index of the maximum along ``dim`` (or of the flattened tensor), int64."""
    return _arg("argmax", x, dim, keepdim)


def argmin(x: NamedTensor, dim: Dim | None = None, keepdim: bool = False) -> NamedTensor:
    """Index of the minimum along ``dim`` (or of the flattened tensor), int64."""
    return _arg("argmin", x, dim, keepdim)


def softmax(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Softmax along ``dim`` (a name or an index)."""
    x = cast(x, dtype) if dtype is not None else (x if is_float(x.dtype) else _cast(x, "float32"))
    return bind("softmax", [x], dim=_dims(x, dim, "softmax")[0])


def log_softmax(x: NamedTensor, dim: Dim, dtype: Any = None) -> NamedTensor:
    """Log-softmax along ``dim``."""
    x = cast(x, dtype) if dtype is not None else (x if is_float(x.dtype) else _cast(x, "float32"))
    return bind("log_softmax", [x], dim=_dims(x, dim, "log_softmax")[0])


# ------------------------------------------------------------------------------------------------
# contraction
# ------------------------------------------------------------------------------------------------

def matmul(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """PyTorch's matmul: contracts ``a``'s last dim with ``b``'s second-to-last (or only) dim, whatever
    their names; batch dims broadcast by position with name checks; the output's names are the batch
    names, ``a``'s row name and ``b``'s column name (an error if a name would repeat)."""
    a, b = _promote("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise NamedShapeError(f"matmul: both arguments need at least 1 dim, got {_pretty(a, b)}")
    b = _fresh_unnamed(b)
    ka, kb = a.type.names[-1], b.type.names[-2 if b.ndim >= 2 else -1]
    if a.type.size(ka) != b.type.size(kb):
        raise NamedShapeError(
            f"matmul: contracted dims differ in size: {a.names[-1] or 'None'}={a.type.size(ka)} of the first and "
            f"{b.names[-2 if b.ndim >= 2 else -1] or 'None'}={b.type.size(kb)} of the second "
            f"(named shapes {_pretty(a, b)})")
    k = fresh_name()
    a, b = _rename_ir(a, {ka: k}), _rename_ir(b, {kb: k})
    a_row = [a.type.dims[-2]] if a.ndim >= 2 else []
    b_col = [b.type.dims[-1]] if b.ndim >= 2 else []
    a_batch, b_batch = a.type.with_dims(a.type.dims[:-2]), b.type.with_dims(b.type.dims[:-2])
    batch: list[tuple[str, int]] = []
    if a_batch.ndim or b_batch.ndim:
        ma, mb = _unify_types("matmul", [a_batch, b_batch], shown=[a.type, b.type])
        a, b = _rename_ir(a, ma), _rename_ir(b, mb)
        longer = [ma[n] for n in a_batch.names] if a_batch.ndim >= b_batch.ndim else [mb[n] for n in b_batch.names]
        sizes = {nm: s for t in (a, b) for nm, s in t.type.dims[:-2] if s != 1}
        batch = [(nm, sizes.get(nm, 1)) for nm in longer]
        bs = dict(batch)  # contract needs equal sizes: expand size-1 batch dims shared with the other operand
        a = _align_ir(a, [(nm, bs[nm] if nm in bs and nm in b.type.names else s) for nm, s in a.type.dims])
        b = _align_ir(b, [(nm, bs[nm] if nm in bs and nm in a.type.names else s) for nm, s in b.type.dims])
    want = batch + a_row + b_col
    names = [nm for nm, _ in want if not is_generated(nm)]
    if len(set(names)) != len(names):
        raise NamedShapeError(f"matmul: the result would repeat a dim name {names} (named shapes {_pretty(a, b)}); "
                              "rename() one operand's dim")
    y = bind("contract", [a, b], over=(k,))
    return _align_ir(y, [(nm, y.type.size(nm)) for nm, _ in want])


def _ranked_matmul(op: str, a: NamedTensor, b: NamedTensor, ranks: tuple[int, int], what: str) -> NamedTensor:
    if (a.ndim, b.ndim) != ranks:
        raise NamedShapeError(f"{op}: expects {what}, got {_pretty(a, b)}; use matmul for other ranks")
    return matmul(a, b)


def mm(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Matrix product of two 2-dim tensors."""
    return _ranked_matmul("mm", a, b, (2, 2), "two 2-dim tensors")


def bmm(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Batched matrix product of two 3-dim tensors."""
    return _ranked_matmul("bmm", a, b, (3, 3), "two 3-dim tensors")


def mv(a: NamedTensor, v: NamedTensor) -> NamedTensor:
    """Matrix-vector product."""
    return _ranked_matmul("mv", a, v, (2, 1), "a 2-dim and a 1-dim tensor")


def dot(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Inner product of two 1-dim tensors."""
    return _ranked_matmul("dot", a, b, (1, 1), "two 1-dim tensors")


def addmm(input: TensorLike, a: NamedTensor, b: NamedTensor, *, beta: float = 1.0,  # noqa: A002
          alpha: float = 1.0) -> NamedTensor:
    """``beta * input + alpha * (a @ b)``."""
    prod_ = mm(a, b)
    if alpha != 1:
        prod_ = prod_ * alpha
    if beta == 0:
        return prod_
    return (input * beta if beta != 1 else input) + prod_  # type: ignore[operator]


def contract(a: NamedTensor, b: NamedTensor, over: str | Sequence[str]) -> NamedTensor:
    """Einsum by name: sum ``a * b`` over the dims named in ``over``. Dims present in both operands
    and not contracted are batch dims, kept once; their sizes must agree.

    >>> nir.contract(q, k, over="D")   # q{B, Q, D}, k{B, K, D} -> {B, Q, K}
    """
    over = (over,) if isinstance(over, str) else tuple(over)
    for n in over:
        check_user_name(n, "contract")
        for t, which in ((a, "first"), (b, "second")):
            if n not in t.names:
                raise NamedShapeError(f"contract: dim {n!r} is not in the {which} operand (named shapes "
                                      f"{_pretty(a, b)}); contract sums over dims both operands name")
    a, b = _promote("contract", a, b)
    return bind("contract", [a, _fresh_unnamed(b)], over=over)


# ------------------------------------------------------------------------------------------------
# normalization, convolution, pooling
# ------------------------------------------------------------------------------------------------

def _names_arg(x: NamedTensor, names: str | Sequence[str], op: str) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    for n in names:
        if n not in x.names:
            raise NamedShapeError(f"{op}: dim {n!r} is not in {x.type.pretty()}; check the spelling or rename()")
    return names


def layer_norm(x: NamedTensor, over: str | Sequence[str], weight: NamedTensor | None = None,
               bias: NamedTensor | None = None, eps: float = 1e-5) -> NamedTensor:
    """Normalize ``x`` over the dims named in ``over`` (biased variance), then scale by ``weight`` and
    shift by ``bias``, whose dims are matched BY NAME (a subset of ``over``), whatever their order."""
    _float_input(x, "layer_norm")
    over = _names_arg(x, over, "layer_norm")
    y = bind("layer_norm", [x], dims=over, eps=float(eps))
    for p, role in ((weight, "weight"), (bias, "bias")):
        if p is None:
            continue
        extra = [n for n in p.names if n not in over]
        if extra:
            raise NamedShapeError(f"layer_norm: {role} {p.type.pretty()} has dims {extra} that are not normalized "
                                  f"over {list(over)}; name the {role}'s dims after the normalized dims")
        p = _align_by_name(_cast(p, y.dtype), y)
        y = bind("mul" if role == "weight" else "add", [y, p])
    return y


def _pair(v: int | Sequence[int], what: str, op: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{op}: {what} must be an int or a pair, got {v}")
    return v  # type: ignore[return-value]


def conv2d(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None = None, *,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1, channels: str = "C", out_channels: str = "O",
           spatial: Sequence[str] = ("H", "W")) -> NamedTensor:
    """2-d convolution (cross-correlation, as PyTorch) whose dims are picked BY NAME, so one call serves
    NCHW and NHWC alike. ``weight``'s dims are named ``out_channels``, ``channels`` and the spatial names
    (its kernel window along ``H`` is named ``H``), in any order. The output keeps ``x``'s other dims and
    order, with ``channels`` replaced by ``out_channels``. ``bias`` has the single dim ``out_channels``."""
    op = "conv2d"
    spatial = tuple(spatial)
    if len(spatial) != 2:
        raise ValueError(f"{op}: spatial must name two dims, got {spatial}")
    x, weight = _promote(op, x, weight)
    for n in (channels, *spatial):
        if n not in x.names:
            raise NamedShapeError(f"{op}: the input {x.type.pretty()} has no dim {n!r}; name its channel and "
                                  f"spatial dims (refine_names) or pass channels=/spatial=")
    want = {out_channels, channels, *spatial}
    if set(weight.names) != want:
        raise NamedShapeError(f"{op}: the weight {weight.type.pretty()} must have dims named {sorted(want)} "
                              f"(out_channels, channels and the spatial names); rename() it")
    stride_, dilation_ = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    if isinstance(padding, str):
        k = [weight.type.size(n) for n in spatial]
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            span = [d * (kk - 1) for d, kk in zip(dilation_, k)]
            if stride_ != (1, 1) or builtins.any(s % 2 for s in span):
                raise ValueError(f"{op}: padding='same' needs stride 1 and an odd effective kernel, got "
                                 f"kernel {k}, dilation {dilation_}, stride {stride_}")
            pad = (span[0] // 2, span[1] // 2)
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        pad = _pair(padding, "padding", op)
    y = bind(op, [x, weight], channels=channels, out_channels=out_channels, spatial=spatial, stride=stride_,
             padding=pad, dilation=dilation_, groups=int(groups))
    if bias is not None:
        if bias.names != (out_channels,):
            raise NamedShapeError(f"{op}: bias {bias.type.pretty()} must have the single dim {out_channels!r}")
        y = bind("add", [y, _align_by_name(_cast(bias, y.dtype), y)])
    return y


def _pool(kind: str, x: NamedTensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None,
          padding: int | Sequence[int], spatial: Sequence[str]) -> NamedTensor:
    op = f"{kind}_pool2d"
    spatial = tuple(_names_arg(x, tuple(spatial), op))
    k = _pair(kernel_size, "kernel_size", op)
    return bind("pool2d", [x], kind=kind, kernel=k, stride=_pair(stride if stride is not None else k, "stride", op),
                padding=_pair(padding, "padding", op), spatial=spatial)


def max_pool2d(x: NamedTensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0, *, spatial: Sequence[str] = ("H", "W")) -> NamedTensor:
    """Max pooling over the two dims named in ``spatial`` (stride defaults to the kernel size)."""
    return _pool("max", x, kernel_size, stride, padding, spatial)


def avg_pool2d(x: NamedTensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0, *, spatial: Sequence[str] = ("H", "W")) -> NamedTensor:
    """Average pooling over ``spatial`` (padding counts as zeros, as PyTorch's default)."""
    return _pool("avg", x, kernel_size, stride, padding, spatial)


# ------------------------------------------------------------------------------------------------
# names and layout
# ------------------------------------------------------------------------------------------------

def _expand_ellipsis(given: Sequence[str | None], x: NamedTensor, op: str) -> list[str | None]:
    """Replace '...' (or ``...``) in a positional name list by the tensor's dims it stands for."""
    given = ["..." if g is Ellipsis else g for g in given]
    if given.count("...") > 1:
        raise ValueError(f"{op}: '...' may appear once, got {list(given)}")
    if "..." not in given:
        return list(given)
    i = list(given).index("...")
    after = len(given) - i - 1
    if len(given) - 1 > x.ndim:
        raise NamedShapeError(f"{op}: {len(given) - 1} names {list(given)} for a tensor {x.type.pretty()} with "
                              f"{x.ndim} dims")
    return list(given[:i]) + list(x.names[i:x.ndim - after]) + list(given[i + 1:])


def rename(x: NamedTensor, *names: str | None, **rename_map: str | None) -> NamedTensor:
    """``rename('N', 'C')`` sets every name (``'...'`` keeps the dims it covers); ``rename(None)``
    drops all names; ``rename(N='batch')`` renames by name. The data is unchanged."""
    if names and rename_map:
        raise ValueError("rename: give either positional names or keyword renames, not both")
    if rename_map:
        for old in rename_map:
            if old not in x.names:
                raise NamedShapeError(f"rename: tried to rename dim {old!r} of {x.type.pretty()}, which has "
                                      f"no such dim")
        new = [rename_map.get(n, n) if n is not None else None for n in x.names]
    else:
        if names == (None,):
            names = (None,) * x.ndim
        new = _expand_ellipsis(names, x, "rename")
        if len(new) != x.ndim:
            raise NamedShapeError(f"rename: {len(new)} names {list(names)} for a tensor {x.type.pretty()} with "
                                  f"{x.ndim} dims; give one name (or None) per dim, or use '...'")
    _user_names(new, "rename")  # validates names and refuses duplicates
    target = [(ir if is_generated(ir) else fresh_name()) if nn is None else nn for ir, nn in zip(x.type.names, new)]
    return _rename_ir(x, dict(zip(x.type.names, target)))


def refine_names(x: NamedTensor, *names: str | None) -> NamedTensor:
    """Give unnamed dims names (``'...'`` stands for dims left as they are); named dims must keep
    their names: ``x.refine_names('N', ..., 'W')``."""
    new = _expand_ellipsis(names, x, "refine_names")
    if len(new) != x.ndim:
        raise NamedShapeError(f"refine_names: {len(new)} names {list(names)} for a tensor {x.type.pretty()} "
                              f"with {x.ndim} dims; use '...' for the dims you do not name")
    for i, (old, nn) in enumerate(zip(x.names, new)):
        if old is not None and nn != old:
            raise NamedShapeError(f"refine_names: cannot coerce names {list(x.names)} to {new}: {old!r} is "
                                  f"different from {nn!r} at index {i}; use rename() to change a name")
    return rename(x, *new)


def align_to(x: NamedTensor, *names: str) -> NamedTensor:
    """Permute to ``names``, inserting size-1 dims for names ``x`` lacks (broadcasting by name);
    ``'...'`` stands for the dims not mentioned, in their current order."""
    names = tuple("..." if n is Ellipsis else n for n in names)
    if "..." in names:
        rest = [ir for ir, u in zip(x.type.names, x.names) if u is None or u not in names]
    else:
        for i, u in enumerate(x.names):
            if u is None:
                raise NamedShapeError(f"align_to: all input dims must be named; found an unnamed dim at index {i} "
                                      f"of {x.type.pretty()}. Name it with refine_names(), or use '...'")
        missing = [u for u in x.names if u not in names]
        if missing:
            raise NamedShapeError(f"align_to: dims {missing} of {x.type.pretty()} are not in the target "
                                  f"names {list(names)}; include them or use '...'")
        rest = []
    dims: list[tuple[str, int]] = []
    sizes = x.type.sizes
    for n in names:
        if n == "...":
            dims += [(r, sizes[r]) for r in rest]
        else:
            dims.append((check_user_name(n, "align_to"), sizes.get(n, 1)))
    return _align_ir(x, dims)


def align_as(x: NamedTensor, other: NamedTensor) -> NamedTensor:
    """`align_to` the names of ``other``: the way to broadcast by name, e.g. a per-channel ``{C}``
    tensor against an ``{N, C, H, W}`` batch: ``scale.align_as(images)``."""
    if None in other.names:
        raise NamedShapeError(f"align_as: the other tensor {other.type.pretty()} has unnamed dims; name them "
                              "with refine_names() first")
    return align_to(x, *other.names)  # type: ignore[arg-type]


def permute(x: NamedTensor, *dims: Dim) -> NamedTensor:
    """Reorder dims (names or indices); names travel with their dims."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    order = _dims(x, dims, "permute")
    if len(order) != x.ndim:
        raise NamedShapeError(f"permute: {list(dims)} must list all {x.ndim} dims of {x.type.pretty()}")
    return _align_ir(x, [(n, x.type.size(n)) for n in order])


def transpose(x: NamedTensor, dim0: Dim, dim1: Dim) -> NamedTensor:
    """Swap two dims (names or indices)."""
    i, j = x._index(dim0, "transpose"), x._index(dim1, "transpose")
    order = list(range(x.ndim))
    order[i], order[j] = j, i
    return permute(x, *order)


def t(x: NamedTensor) -> NamedTensor:
    """Transpose a tensor of at most 2 dims."""
    if x.ndim > 2:
        raise NamedShapeError(f"t: expects at most 2 dims, got {x.type.pretty()}; use transpose() or align_to()")
    return x if x.ndim < 2 else transpose(x, 0, 1)


def flatten(x: NamedTensor, start_dim: Dim | Sequence[Dim] = 0, end_dim: Dim = -1, out_dim: str | None = None,
            *, dims: Sequence[Dim] | None = None) -> NamedTensor:
    """``flatten(dims, out_dim)`` merges consecutive named dims into ``out_dim``;
    ``flatten(start_dim=0, end_dim=-1, out_dim=None)`` merges a positional range."""
    if dims is not None or isinstance(start_dim, (list, tuple)):
        dims = list(dims if dims is not None else start_dim)  # type: ignore[arg-type]
        if isinstance(end_dim, str):  # flatten(dims, out_dim)
            out_dim = end_dim
        idx = [x._index(d, "flatten") for d in dims]
        if not idx or idx != list(range(idx[0], idx[0] + len(idx))):
            raise NamedShapeError(f"flatten: dims {dims} must be consecutive and in order in {x.type.pretty()}; "
                                  "use align_to() first to bring them together")
    elif x.ndim == 0:
        return _align_ir(x, [(fresh_name() if out_dim is None else check_user_name(out_dim, "flatten"), 1)])
    else:
        i, j = x._index(start_dim, "flatten"), x._index(end_dim, "flatten")  # type: ignore[arg-type]
        if i > j:
            raise NamedShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} in {x.type.pretty()}")
        idx = list(range(i, j + 1))
    names = tuple(x.type.names[i] for i in idx)
    into = fresh_name() if out_dim is None else check_user_name(out_dim, "flatten")
    if len(names) == 1:
        return _rename_ir(x, {names[0]: into})
    return bind("flatten", [x], dims=names, into=into)


def unflatten(x: NamedTensor, dim: Dim, sizes: Sequence[Any]) -> NamedTensor:
    """Split ``dim`` into several: ``sizes`` is ``((name, size), ...)`` (named) or ints (unnamed, one -1)."""
    name = x._ir_name(dim, "unflatten")
    named = [s if isinstance(s, (tuple, list)) else (None, s) for s in sizes]
    total = x.type.size(name)
    known = int(np.prod([s for _, s in named if s != -1], dtype=np.int64))
    if [s for _, s in named].count(-1) > 1:
        raise ValueError("unflatten: only one size may be -1")
    parts = [(n, (total // known if known else 0) if s == -1 else int(s)) for n, s in named]
    irn = _user_names([n for n, _ in parts], "unflatten")
    return bind("unflatten", [x], dim=name, parts=tuple(zip(irn, (s for _, s in parts))))


def select(x: NamedTensor, dim: Dim, index: int) -> NamedTensor:
    """The slice at ``index`` along ``dim``, which is removed (negative indices count from the end)."""
    name = x._ir_name(dim, "select")
    n = x.type.size(name)
    if not -n <= index < n:
        raise IndexError(f"select: index {index} is out of range for dim {dim!r} of size {n} in {x.type.pretty()}")
    return bind("select", [x], dim=name, index=int(index) % n)


def narrow(x: NamedTensor, dim: Dim, start: int, length: int) -> NamedTensor:
    """``length`` elements along ``dim`` starting at ``start``; the dim keeps its name."""
    name = x._ir_name(dim, "narrow")
    n = x.type.size(name)
    start = start + n if start < 0 else start
    if not (0 <= start and length >= 0 and start + length <= n):
        raise IndexError(f"narrow: start {start} + length {length} exceeds dim {dim!r} of size {n}")
    return bind("slice", [x], dim=name, start=start, stop=start + length, step=1)


def squeeze(x: NamedTensor, dim: Dim | Sequence[Dim] | None = None) -> NamedTensor:
    """Drop size-1 dims (all of them, or ``dim``; a dim whose size is not 1 is left alone, as PyTorch)."""
    dims = [n for n in (_dims(x, dim, "squeeze") if dim is not None else x.type.names) if x.type.size(n) == 1]
    return bind("squeeze", [x], dims=tuple(dims)) if dims else x


def unsqueeze(x: NamedTensor, dim: int) -> NamedTensor:
    """Insert an unnamed size-1 dim at index ``dim``."""
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim} out of range for {x.type.pretty()}")
    dim = dim % (x.ndim + 1)
    dims = list(x.type.dims)
    dims.insert(dim, (fresh_name(), 1))
    return _align_ir(x, dims)


def reshape(x: NamedTensor, *shape: Any) -> NamedTensor:
    """Reshape an UNNAMED tensor (PyTorch refuses named ones: use flatten/unflatten, which keep names)."""
    if builtins.any(n is not None for n in x.names):
        raise NamedShapeError(f"reshape/view: not supported on named tensors ({x.type.pretty()}); use "
                              "flatten()/unflatten() to merge or split named dims, or rename(None) first")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
    shape = tuple(x.numel() // known if s == -1 and known else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.numel():
        raise NamedShapeError(f"reshape: cannot view {x.numel()} elements {x.type.pretty()} as shape {shape}")
    flat = flatten(x) if x.ndim != 1 else x
    if not shape:
        return bind("squeeze", [flat], dims=flat.type.names)
    return unflatten(flat, 0, list(shape))


view = reshape


def expand(x: NamedTensor, *sizes: int) -> NamedTensor:
    """Broadcast size-1 dims to ``sizes`` (right-aligned; -1 keeps a size; new leading dims are unnamed)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim:
        raise NamedShapeError(f"expand: {len(sizes)} sizes {sizes} for {x.type.pretty()} with {x.ndim} dims")
    lead = len(sizes) - x.ndim
    dims = [(fresh_name(), s) for s in sizes[:lead]]
    for (n, s), want in zip(x.type.dims, sizes[lead:]):
        if want != -1 and s != 1 and s != want:
            raise NamedShapeError(f"expand: dim {n!r} of size {s} cannot expand to {want} ({x.type.pretty()})")
        dims.append((n, s if want == -1 else want))
    return _align_ir(x, dims)


def unbind(x: NamedTensor, dim: Dim = 0) -> tuple[NamedTensor, ...]:
    """All slices along ``dim``, as a tuple."""
    name = x._ir_name(dim, "unbind")
    return tuple(bind("select", [x], dim=name, index=i) for i in range(x.type.size(name)))


def cat(tensors: Sequence[NamedTensor], dim: Dim = 0) -> NamedTensor:
    """Concatenate along ``dim``; the other dims' names must match by position (None matches any)."""
    ts = _promote("cat", *tensors) if tensors else []
    if not ts:
        raise ValueError("cat: needs at least one tensor")
    first = ts[0]
    out_user: list[str | None] = list(first.names)
    out_ir = list(first.type.names)
    for t in ts[1:]:
        if t.ndim != first.ndim:
            raise NamedShapeError(f"cat: tensors have different numbers of dims: {_pretty(first, t)}")
        for i, (u, ir) in enumerate(zip(t.names, t.type.names)):
            if out_user[i] is not None and u is not None and u != out_user[i]:
                raise NamedShapeError(f"cat: dim {out_user[i]!r} and dim {u!r} are at the same position but do not "
                                      f"match ({_pretty(first, t)}); rename() or align_to() first")
            if out_user[i] is None and u is not None:
                out_user[i], out_ir[i] = u, ir
    ts = [_rename_ir(t, dict(zip(t.type.names, out_ir))) for t in ts]
    return bind("concat", ts, dim=ts[0]._ir_name(dim, "cat"))


def stack(tensors: Sequence[NamedTensor], dim: int = 0, name: str | None = None) -> NamedTensor:
    """Stack along a new dim at index ``dim`` (unnamed, as in PyTorch, unless ``name`` is given)."""
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    new = fresh_name() if name is None else check_user_name(name, "stack")
    parts = []
    for t in tensors:
        d = list(t.type.dims)
        if not -len(d) - 1 <= dim <= len(d):
            raise IndexError(f"stack: dim {dim} out of range for {t.type.pretty()}")
        d.insert(dim % (len(d) + 1), (new, 1))
        parts.append(_align_ir(t, d))
    return cat(parts, dim)


def take(x: NamedTensor, indices: NamedTensor, dim: Dim) -> NamedTensor:
    """Gather along ``dim`` with integer ``indices``; ``dim`` is replaced by the indices' dims
    (an embedding lookup: ``take(table{V, D}, tokens{B, S}, 'V') -> {B, S, D}``)."""
    if indices.dtype not in ("int32", "int64"):
        raise TypeError(f"take: indices must be int32 or int64, got {indices.dtype}")
    return bind("take", [x, _fresh_unnamed(indices)], dim=x._ir_name(dim, "take"))


# ------------------------------------------------------------------------------------------------
# creation
# ------------------------------------------------------------------------------------------------

def _sizes(sizes: tuple[Any, ...]) -> tuple[int, ...]:
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return tuple(int(s) for s in sizes)


def _names_for(sizes: tuple[int, ...], names: Sequence[str | None] | None, op: str) -> tuple[str, ...]:
    names = tuple(names) if names is not None else (None,) * len(sizes)
    if len(names) != len(sizes):
        raise NamedShapeError(f"{op}: {len(names)} names {names} for {len(sizes)} sizes {sizes}")
    return _user_names(names, op)


def full(*sizes: Any, fill_value: float, names: Sequence[str | None] | None = None, dtype: Any = None) -> NamedTensor:
    """A tensor of ``sizes`` filled with ``fill_value``: ``nir.full(2, 3, fill_value=1.5, names=('N', 'C'))``."""
    s = _sizes(sizes)
    dt = canonical_dtype(dtype) if dtype is not None else (
        "bool" if isinstance(fill_value, bool) else "int64" if isinstance(fill_value, int) else "float32")
    return bind("full", [], value=fill_value, dims=tuple(zip(_names_for(s, names, "full"), s)), dtype=dt)


def zeros(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32") -> NamedTensor:
    """A tensor of zeros: ``nir.zeros(2, 3, names=('N', 'C'))``."""
    return full(*sizes, fill_value=0, names=names, dtype=dtype)


def ones(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32") -> NamedTensor:
    """A tensor of ones."""
    return full(*sizes, fill_value=1, names=names, dtype=dtype)


_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind `randn` and `rand`."""
    global _rng
    _rng = np.random.default_rng(seed)


def randn(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32",
          generator: np.random.Generator | None = None) -> NamedTensor:
    """Standard normal samples. Inside a traced function the samples are drawn once, at trace time."""
    s = _sizes(sizes)
    data = (generator or _rng).standard_normal(s)
    return from_array(data.astype(np.float32) if canonical_dtype(dtype) != "float64" else data,
                      names=names, dtype=dtype)


def rand(*sizes: Any, names: Sequence[str | None] | None = None, dtype: Any = "float32",
         generator: np.random.Generator | None = None) -> NamedTensor:
    """Uniform samples in [0, 1)."""
    s = _sizes(sizes)
    return from_array((generator or _rng).random(s), names=names, dtype=dtype)


def arange(start: float, end: float | None = None, step: float = 1, *, name: str | None = None,
           dtype: Any = None) -> NamedTensor:
    """``start, start+step, ...`` below ``end`` along one dim named ``name`` (unnamed by default)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must not be 0")
    size = builtins.max(0, math.ceil((end - start) / step))
    dt = canonical_dtype(dtype) if dtype is not None else (
        "int64" if all(isinstance(v, int) for v in (start, end, step)) else "float32")
    (n,) = _names_for((size,), (name,), "arange")
    return bind("iota", [], dim=n, size=size, start=float(start), step=float(step), dtype=dt)


def zeros_like(x: NamedTensor) -> NamedTensor:
    """Zeros with ``x``'s names, shape and dtype."""
    return bind("full", [], value=0, dims=x.type.dims, dtype=x.dtype)


def ones_like(x: NamedTensor) -> NamedTensor:
    """Ones with ``x``'s names, shape and dtype."""
    return bind("full", [], value=1, dims=x.type.dims, dtype=x.dtype)


tensor = from_array


# ------------------------------------------------------------------------------------------------
# NamedTensor methods and operators: the functions above, bound
# ------------------------------------------------------------------------------------------------

_METHODS = (
    "exp log sqrt rsqrt tanh sigmoid relu gelu sin cos erf abs neg clamp maximum minimum logical_not "
    "sum mean prod max min amax amin std var logsumexp argmax argmin softmax log_softmax "
    "matmul mm bmm mv dot rename refine_names align_to align_as flatten unflatten transpose t permute "
    "select narrow squeeze unsqueeze view reshape expand masked_fill unbind cast"
).split()


def _install_methods() -> None:
    g = globals()
    for name in _METHODS:
        setattr(NamedTensor, name, g[name])
    NamedTensor.to = cast  # type: ignore[attr-defined]
    binary = {"add": add, "sub": sub, "mul": mul, "truediv": div, "pow": pow, "matmul": matmul,
              "and": logical_and, "or": logical_or}
    for name, f in binary.items():
        setattr(NamedTensor, f"__{name}__", f)
        setattr(NamedTensor, f"__r{name}__", (lambda f: lambda a, b: f(b, a))(f))
    for name, f in {"eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge}.items():
        setattr(NamedTensor, f"__{name}__", f)
    NamedTensor.__neg__ = neg  # type: ignore[attr-defined]
    NamedTensor.__abs__ = abs  # type: ignore[attr-defined]
    NamedTensor.__invert__ = logical_not  # type: ignore[attr-defined]


_install_methods()
