"""Dynamic dims: one compiled program serves every size of a batch-like dim by padding to a bucket.

``nir.compile(fn, dynamic=("N",))`` compiles ``fn`` once per *bucket* of ``N`` (powers of two by default,
or the sizes given with ``dynamic={"N": (8, 32, 128)}``). A call with ``N=5`` pads its inputs to ``N=8``
by repeating their last row, runs the ``N=8`` program, and returns the first 5 rows of each output.

That is only right when no op of the program combines values across rows of ``N``: a reduction,
contraction, softmax, normalization or cumulative sum over ``N``, a concat/select/slice/take/gather/
flatten/unflatten along it, a convolution over it, or a scan/cond whose sub-program sees it would see
the padding (the table `ACROSS` says which dims each primitive combines). Before building a bucket, nir traces the function at two
sizes of every dynamic dim, finds which dims of which values follow it (through renames and
broadcasts), and refuses — naming the op and the dim — when any op combines across one of them, or when
anything else in the program depends on the size (a constant made from ``x.size("N")``, say).
The function must not branch in Python on a dynamic dim's size; the two traces catch most such code.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .ir import Eqn, Program
from .ops import PRIMITIVES
from .tensor import NamedTensor
from .types import NamedShapeError, TensorType, format_dims, is_generated

__all__ = ["DynamicError", "parse_dynamic", "bucket_of", "bucket_key", "call_sizes", "serves", "Padding", "analyze", "ACROSS", "PaddedRun", "probe_sizes"]


class DynamicError(NamedShapeError):
    """A program cannot serve a dynamic dim by padding (an op combines values across it), or a call's
    dynamic sizes are inconsistent."""


def parse_dynamic(dynamic: Sequence[str] | Mapping[str, Sequence[int] | None] | None) -> dict[str, tuple[int, ...] | None]:
    """``("N",)`` -> ``{"N": None}`` (power-of-two buckets); ``{"N": (8, 32)}`` -> those buckets, sorted."""
    if dynamic is None:
        return {}
    if isinstance(dynamic, str):
        raise TypeError(f"dynamic= takes a tuple of dim names, e.g. dynamic=({dynamic!r},), not a string")
    items = dynamic.items() if isinstance(dynamic, Mapping) else ((n, None) for n in dynamic)
    out: dict[str, tuple[int, ...] | None] = {}
    for name, buckets in items:
        if not isinstance(name, str) or is_generated(name):
            raise ValueError(f"dynamic= names dims by their names, got {name!r}")
        if buckets is not None:
            buckets = tuple(sorted({int(b) for b in buckets}))
            if not buckets or buckets[0] < 1:
                raise ValueError(f"dynamic={{{name!r}: {buckets}}}: buckets are sizes of at least 1")
        out[name] = buckets
    return out


def bucket_of(name: str, n: int, buckets: tuple[int, ...] | None) -> int:
    """The compiled size that serves ``n`` rows: the next power of two, or the smallest given bucket
    that holds ``n`` (0 stays 0: an empty batch is compiled as it is)."""
    if n == 0:
        return 0
    if buckets is None:
        return 1 << (n - 1).bit_length()
    for b in buckets:
        if b >= n:
            return b
    from .dispatch import SignatureError
    raise SignatureError(f"dynamic dim {name!r} has size {n}, more than the largest bucket {buckets[-1]} of "
                         f"dynamic={{{name!r}: {buckets}}}; add a larger bucket")


def probe_sizes(bucket: Mapping[str, int]) -> dict[str, int]:
    """Second sizes to trace at, distinct from the bucket sizes and from each other's pairs, so that
    every dim's (bucket, probe) pair of sizes says which dynamic dim it follows."""
    return {name: b + 1 + k for k, (name, b) in enumerate(sorted(bucket.items()))}


# ---------------------------------------------------------------------------------------------
# which dims each primitive combines values across
# ---------------------------------------------------------------------------------------------

def _none(params: Mapping[str, Any], i: int) -> tuple[str, ...]:
    return ()


def _param(key: str, single: bool, inputs: tuple[int, ...] | None = None) -> Callable[[Mapping[str, Any], int], tuple[str, ...]]:
    def across(params: Mapping[str, Any], i: int) -> tuple[str, ...]:
        if inputs is not None and i not in inputs:
            return ()
        return (params[key],) if single else tuple(params[key])
    return across


def _conv(params: Mapping[str, Any], i: int) -> tuple[str, ...]:
    return (params["channels"], *params["spatial"])


def _sub_program_inputs(key: str, offset: int) -> Callable[[Mapping[str, Any], int], tuple[str, ...]]:
    """Control flow: every dim of every input its sub-program sees (conservative: a body may mix any)."""
    def across(params: Mapping[str, Any], i: int) -> tuple[str, ...]:
        if i < offset:
            return ()
        names = params[key].inputs[i - offset].type.names
        return (*names, params["over"]) if "over" in params else names
    return across


# prim -> (params, input index) -> the dims of that input whose rows the op combines. Elementwise and
# creation primitives combine nothing (see `_across`); a primitive in neither is refused until listed.
ACROSS: dict[str, Callable[[Mapping[str, Any], int], tuple[str, ...]]] = {
    **{p: _param("dims", False) for p in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "layer_norm")},
    **{p: _param("dim", True) for p in ("argmax", "argmin", "softmax", "log_softmax", "concat", "select",
                                        "slice", "unflatten")},
    "take": _param("dim", True, inputs=(0,)),
    "contract": _param("over", False),
    "contract_wide": _param("over", False),
    "flatten": _param("dims", False),
    "conv2d": _conv,
    "conv2d_wide": _conv,
    "quantize": _none, "dequantize": _none,  # the scale is matched by name, element by element
    "pool2d": _param("spatial", False),
    "align": _none, "rename": _none, "squeeze": _none,
    **{p: _param("dim", True) for p in ("cumsum", "cumprod", "gather")},
    "scan": _sub_program_inputs("body", 0), "cond": _sub_program_inputs("true_branch", 1),
    "pad": lambda params, i: tuple(p[0] for p in params["pads"]),
    # scatter_add sums the updates' index dims into `dim`; the params do not say which dims those are,
    # so its indices and updates are not classified (None: refused with dynamic=)
    "scatter_add": lambda params, i: (params["dim"],) if i == 0 else None,
}
_ROWWISE_KINDS = ("elementwise", "creation")


def _across(e: Eqn, i: int) -> tuple[str, ...] | None:
    if e.prim in ACROSS:
        return ACROSS[e.prim](e.kwargs, i)
    p = PRIMITIVES.get(e.prim)
    if p is not None and p.kind in _ROWWISE_KINDS:
        return ()
    return None


# ---------------------------------------------------------------------------------------------
# the analysis
# ---------------------------------------------------------------------------------------------

class Padding:
    """How one bucket program serves smaller sizes: for each input and output, the axes that follow a
    dynamic dim, as ``(axis, dynamic name)`` pairs."""

    def __init__(self, inputs: Sequence[Sequence[tuple[int, str]]], outputs: Sequence[Sequence[tuple[int, str]]]):
        self.inputs = [tuple((int(a), str(n)) for a, n in axes) for axes in inputs]
        self.outputs = [tuple((int(a), str(n)) for a, n in axes) for axes in outputs]

    def to_json(self) -> dict[str, Any]:
        """For an artifact's manifest."""
        return {"inputs": [[list(p) for p in axes] for axes in self.inputs],
                "outputs": [[list(p) for p in axes] for axes in self.outputs]}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Padding":
        """From an artifact's manifest."""
        return Padding([[tuple(p) for p in axes] for axes in d["inputs"]],
                       [[tuple(p) for p in axes] for axes in d["outputs"]])


def _refuse(msg: str, dynamic: Sequence[str]) -> DynamicError:
    return DynamicError(f"dynamic={tuple(dynamic)}: {msg}. Padding cannot serve this program; remove the dim from "
                        "dynamic= (each size then compiles on its own) or keep such ops off it")


def analyze(at_bucket: Program, at_probe: Program, bucket: Mapping[str, int], probe: Mapping[str, int]) -> Padding:
    """Compare the function traced at the bucket sizes and at the probe sizes of the dynamic dims;
    return which axes follow which dynamic dim, or raise DynamicError naming the op and the dim that
    make padding wrong."""
    names = sorted(bucket)
    follows = {(bucket[n], probe[n]): n for n in names}
    gen: dict[str, str] = {}  # generated names of the probe trace -> those of the bucket trace

    def same_name(a: str, b: str) -> bool:
        if is_generated(a) and is_generated(b):
            return gen.setdefault(b, a) == a
        return a == b

    def same_param(a: Any, b: Any) -> bool:
        if isinstance(a, tuple) and isinstance(b, tuple):
            return len(a) == len(b) and all(same_param(x, y) for x, y in zip(a, b))
        if isinstance(a, str) and isinstance(b, str):
            return same_name(a, b)
        return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN fill values are equal here

    dyn: dict[int, dict[str, str]] = {}  # value id (bucket trace) -> {dim name: dynamic name it follows}

    def match(vb: Any, vp: Any, what: str) -> None:
        tb, tp = vb.type, vp.type
        if len(tb.dims) != len(tp.dims) or tb.dtype != tp.dtype or not all(
                same_name(a, b) for a, b in zip(tb.names, tp.names)):
            raise _refuse(f"{what} is {tb.pretty()} at {format_dims(bucket.items())} but {tp.pretty()} at "
                          f"{format_dims(probe.items())}: the program's structure depends on the size", names)
        follow = {}
        for (d, sb), sp in zip(tb.dims, tp.shape):
            if sb == sp:
                continue
            if (sb, sp) not in follows:
                raise _refuse(f"dim {d!r} of {what} has size {sb} at {format_dims(bucket.items())} and {sp} at "
                              f"{format_dims(probe.items())}: its size depends on a dynamic dim in a way padding "
                              "cannot follow", names)
            follow[d] = follows[(sb, sp)]
        dyn[vb.id] = follow

    if len(at_bucket.inputs) != len(at_probe.inputs) or len(at_bucket.eqns) != len(at_probe.eqns) or \
            len(at_bucket.outputs) != len(at_probe.outputs):
        raise _refuse("the function records a different program at different sizes (does it branch on a size?)",
                      names)
    for k, (vb, vp) in enumerate(zip(at_bucket.inputs, at_probe.inputs)):
        match(vb, vp, f"input {k}")
    for eb, ep in zip(at_bucket.eqns, at_probe.eqns):
        where = f"{eb.prim}{' at ' + eb.where if eb.where else ''}"
        if eb.prim != ep.prim or len(eb.outputs) != len(ep.outputs):
            raise _refuse(f"the function records {eb.prim} at one size and {ep.prim} at another "
                          "(does it branch on a size?)", names)
        for i, v in enumerate(eb.inputs):
            across = _across(eb, i)
            if across is None:
                raise _refuse(f"nir does not know whether {eb.prim} ({where}) keeps rows apart", names)
            hit = [d for d in across if d in dyn[v.id]]
            if hit:
                d = hit[0]
                carried = dyn[v.id][d]
                via = ("an unnamed dim" if is_generated(d) else f"dim {d!r}") + (
                    f" (which follows dynamic dim {carried!r})" if d != carried else "")
                raise _refuse(f"{where} combines values across {via} of {v.type.pretty()}, so padding "
                              f"{carried!r} would change its result", names)
        for vb, vp in zip(eb.outputs, ep.outputs):
            match(vb, vp, f"the result of {where}")
        sized = ("dims", "size") if eb.prim in ("full", "iota", "constant", "align") else ()  # = the output type
        for (kb, pb), (kp, pp) in zip(eb.params, ep.params):
            if kb != kp or (kb not in sized and not same_param(pb, pp)):
                raise _refuse(f"{where} has {kb}={_short(pb)} at {format_dims(bucket.items())} but {_short(pp)} at "
                              f"{format_dims(probe.items())}: the program depends on a dynamic dim's size "
                              "(e.g. through x.size(...))", names)
    inputs = [[(a, dyn[v.id][d]) for a, d in enumerate(v.type.names) if d in dyn[v.id]] for v in at_bucket.inputs]
    outputs = [[(a, dyn[v.id][d]) for a, d in enumerate(v.type.names) if d in dyn[v.id]] for v in at_bucket.outputs]
    return Padding(inputs, outputs)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# ---------------------------------------------------------------------------------------------
# running a padded call
# ---------------------------------------------------------------------------------------------

def _pad(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``x`` grown to ``size`` along ``axis`` by repeating its last row (values the program has seen
    anyway: no new division by zero or overflow in the rows thrown away)."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = size
    out = np.empty(shape, x.dtype)
    head = [slice(None)] * x.ndim
    head[axis] = slice(0, n)
    out[tuple(head)] = x
    tail = list(head)
    tail[axis] = slice(n, size)
    last = list(head)
    last[axis] = slice(n - 1, n)
    out[tuple(tail)] = x[tuple(last)]
    return out


class PaddedRun:
    """A call signature served by a bucket entry: pads the inputs, runs, slices the outputs."""

    __slots__ = ("entry", "_pads", "_slices", "_types", "_single")

    def __init__(self, entry: Any, sizes: Mapping[str, int]) -> None:
        padding: Padding = entry.padding
        self.entry = entry
        bucket_shape = [s.shape for s in entry.specs]
        self._pads = [tuple((a, bucket_shape[i][a]) for a, n in axes) for i, axes in enumerate(padding.inputs)]
        self._slices, self._types = [], []
        for t, axes in zip(entry.out_types, padding.outputs):
            sl = [slice(None)] * t.ndim
            dims = list(t.dims)
            for a, n in axes:
                sl[a] = slice(0, sizes[n])
                dims[a] = (dims[a][0], sizes[n])
            self._slices.append(tuple(sl) if axes else None)
            self._types.append(TensorType(tuple(dims), t.dtype))
        self._single = entry.structure == 0 and len(self._types) == 1

    def run1(self, x: Any) -> Any:
        """`run` of one input."""
        return self.run((x,))

    def run(self, data: Sequence[Any]) -> Any:
        """Pad, run the bucket program, hand back the rows that were asked for."""
        padded = []
        for x, pads in zip(data, self._pads):
            for a, size in pads:
                x = np.asarray(x)
                if x.shape[a] != size:
                    x = _pad(x, a, size)
            padded.append(x)
        outs = self.entry.executable(*padded)
        leaves = []
        for o, sl, t in zip(outs, self._slices, self._types):
            o = np.asarray(o)
            leaves.append(NamedTensor._eager(o[sl] if sl is not None else o, t))
        if self._single:
            return leaves[0]
        from .frontends.python import _rebuild
        return _rebuild(self.entry.structure, leaves)


def call_sizes(key: tuple, dynamic: Mapping[str, Any]) -> dict[str, int]:
    """A call signature's size of each dynamic dim; every input must give a dynamic dim the same size."""
    sizes: dict[str, int] = {}
    for i, (names, shape, _) in enumerate(key):
        for n, s in zip(names, shape):
            if n in dynamic and sizes.setdefault(n, s) != s:
                raise DynamicError(f"dynamic dim {n!r} has size {sizes[n]} in one input and {s} in input {i}; "
                                   f"every input's {n!r} must have the same size")
    return sizes


def bucket_key(key: tuple, dynamic: Mapping[str, tuple[int, ...] | None]) -> tuple[tuple, dict[str, int]]:
    """The signature of the bucket that serves call signature ``key``, and the call's size of each
    dynamic dim."""
    sizes = call_sizes(key, dynamic)
    bucket = {n: bucket_of(n, s, dynamic[n]) for n, s in sizes.items()}
    return tuple((names, tuple(bucket.get(n, s) for n, s in zip(names, shape)), dtype)
                 for names, shape, dtype in key), sizes


def serves(bucket: tuple, key: tuple, dynamic: Mapping[str, Any]) -> bool:
    """Whether the program compiled for signature ``bucket`` can serve call signature ``key`` by padding
    (an empty dim is served only by an empty bucket: there is no row to repeat)."""
    return len(bucket) == len(key) and all(
        bn == kn and bd == kd and len(bs) == len(ks) and all(
            b == k or (n in dynamic and b > k > 0) for n, b, k in zip(bn, bs, ks))
        for (bn, bs, bd), (kn, ks, kd) in zip(bucket, key))
