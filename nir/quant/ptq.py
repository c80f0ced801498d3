"""Post-training quantization: `quantize(program, calibration)` -> a program with int8 contractions.

The pass, in three steps (torch.ao's observers + convert, on nir's IR):

1. Find the float32 `contract` and `conv2d` equations. An operand computed from constants alone is a
   *weight* (folded: a constant and the renames/aligns that name its dims); any other is an *activation*.
2. Run the float program on the calibration batches and observe every activation that feeds one of
   them (`observers.py`): one scale per tensor.
3. Rewrite each of them as ``dequantize(contract_wide(quantize(x, s_x), W_int8), s_x * s_W)``. ``W_int8``
   is a constant with one scale per output channel: the scale is a tensor whose dims are the weight's
   dims that reach the output (a Linear's ``fc1.out``, a convolution's ``out_channels``), by name.

Everything else (bias, relu, pooling, softmax, normalizations) stays in float32 between a dequantize and
the next quantize; backends fuse those into one pass over the int32 accumulator (dequantize, bias,
relu, requantize), as fbgemm and oneDNN do for quantized layers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np

from ..frontends.python import Spec, Traced
from ..ir import Eqn, Program, Value, verify
from ..tensor import NamedTensor
from ..types import TensorType, canonical_dtype
from .observers import OBSERVERS, Observer, PercentileObserver, QMAX, symmetric_scale
from .rewrite import WIDENED, Rewriter, StaticValues

__all__ = ["quantize", "QuantizationError", "quantizable", "WEIGHT_DTYPES", "ACTIVATION_DTYPES"]

WEIGHT_DTYPES = ("int8",)
ACTIVATION_DTYPES = ("int8", "float32")  # float32: weight-only quantization


class QuantizationError(ValueError):
    """`nir.quantize` cannot do what it was asked: no or mismatched calibration data, nothing to quantize,
    an unknown dtype or observer, or an ``exclude`` name that names no quantizable op."""


def quantizable(program: Program) -> list[Eqn]:
    """The equations `quantize` rewrites: float32 contractions and convolutions (top level)."""
    return [e for e in program.eqns if e.prim in WIDENED and all(v.type.dtype == "float32" for v in e.inputs)]


def _per_channel_dims(eqn: Eqn, operand: int) -> tuple[str, ...]:
    """The dims of a weight operand that reach the output: its output channels (a contraction's free and
    batch dims; a convolution weight's ``out_channels``). Only weights get per-channel scales."""
    if eqn.prim == "conv2d":
        return (eqn.kwargs["out_channels"],) if operand == 1 else ()
    t = eqn.inputs[operand].type
    return tuple(n for n in t.names if n not in eqn.kwargs["over"])


def _weight_int8(w: np.ndarray, t: TensorType, channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of ``w`` and its scale over ``channels`` (a float32 array in that order)."""
    reduce = tuple(i for i, n in enumerate(t.names) if n not in channels)
    amax = np.max(np.abs(w), axis=reduce, keepdims=True) if w.size else np.zeros([1] * w.ndim)
    scale = symmetric_scale(amax)
    codes = np.clip(np.rint(w / scale), -QMAX, QMAX).astype(np.int8)
    order = [n for n in t.names if n in channels]
    scale = scale.reshape([t.size(n) for n in order])
    return codes, np.transpose(scale, [order.index(n) for n in channels]) if order else scale


def _signature(batch: Sequence[Any], want: Sequence[Spec]) -> list[Spec]:
    """The specs of one calibration batch; plain arrays take the names of the program's inputs."""
    out = []
    for i, a in enumerate(batch):
        if isinstance(a, NamedTensor):
            out.append(Spec.of(a))
            continue
        arr = np.asarray(a)
        names = want[i].names if i < len(want) and len(want[i].names) == arr.ndim else (None,) * arr.ndim
        out.append(Spec(tuple(names), tuple(arr.shape), canonical_dtype(arr.dtype)))
    return out


def _check_calibration(program: Program, calibration: Iterable[Any]) -> list[list[np.ndarray]]:
    """The calibration batches as lists of arrays, after checking each against the signature."""
    from ..dispatch import SignatureError, check_signature
    want = tuple(Spec(v.type.user_names, v.type.shape, v.type.dtype) for v in program.inputs)
    if calibration is None or isinstance(calibration, (NamedTensor, np.ndarray)):
        raise QuantizationError("nir.quantize: calibration must be an iterable of input tuples (one tuple per batch, "
                                f"each matching the program's inputs ({', '.join(map(str, want))})), got "
                                f"{type(calibration).__name__}; pass e.g. [(x1,), (x2,)]")
    batches = []
    for i, batch in enumerate(calibration):
        batch = (batch,) if isinstance(batch, NamedTensor) else tuple(batch)
        try:
            check_signature(_signature(batch, want), want)
        except (SignatureError, TypeError) as e:
            raise QuantizationError(f"nir.quantize: calibration batch {i} does not match the program's inputs: {e}") \
                from None
        batches.append([np.asarray(a._data if isinstance(a, NamedTensor) else a) for a in batch])
    if not batches:
        raise QuantizationError("nir.quantize: no calibration data (the iterable was empty). Activation scales come "
                                "from running the float program on representative inputs: pass a few batches, "
                                f"each a tuple matching the inputs ({', '.join(map(str, want))}); or pass "
                                "activations='float32' to quantize the weights only")
    return batches


def _observe(program: Program, values: Sequence[Value], batches: Sequence[Sequence[np.ndarray]], backend: str,
             make: Any) -> dict[int, Observer]:
    """Run the float program on every batch and feed ``values`` to one observer each."""
    from .. import backends
    from ..target import parse_target
    observed = Program(program.inputs, program.eqns, tuple(values))
    run = backends.get(backend).build(verify(observed), parse_target("llvm"))
    observers = {v.id: make() for v in values}
    for batch in batches:
        for v, got in zip(values, run(*batch)):
            observers[v.id].update(np.asarray(got))
    return observers


def quantize(program: Traced | Program, calibration: Iterable[Any], *, weights: str = "int8",
             activations: str = "int8", observer: str = "minmax", percentile: float = 99.99,
             exclude: Iterable[str] = (), backend: str = "reference") -> Traced | Program:
    """Post-training quantization: ``program`` (from `nir.trace` or `nir.from_torch`) with every float32
    contraction and convolution computed as int8 x int8 -> int32 and dequantized by name.

    ``calibration``: an iterable of input tuples (NamedTensors matching the program's signature) that
    the float program runs on to choose the activation scales (``observer="minmax"``: the largest
    magnitude seen; ``"percentile"``: the ``percentile``-th percentile of the magnitudes).
    ``weights="int8"``: symmetric, one scale per output channel (a tensor named by the weight's output
    dim, e.g. ``{fc1.out: 128}``). ``activations="int8"``: symmetric, one scale per tensor;
    ``"float32"`` quantizes the weights only. Weights are the program's constants (from_torch's
    parameters, tensors a traced function closes over); program inputs are activations.
    ``exclude``: output dim names of ops to keep in float (``exclude=("fc3.out",)`` keeps the last layer).
    ``backend``: what runs the float program on the calibration data.
    Other ops stay in float32. Returns the same kind of object it was given; `nir.compile` takes it.

    >>> q = nir.quantize(nir.from_torch(model, (x,), names={"x": ("N", "F")}), [(batch,) for batch in data])
    >>> print(q.program)   # int8 constants, quantize, contract_wide -> int32, dequantize
    """
    if weights not in WEIGHT_DTYPES:
        raise QuantizationError(f"nir.quantize: weights={weights!r} is not supported; weights can be "
                                f"{', '.join(map(repr, WEIGHT_DTYPES))}")
    if activations not in ACTIVATION_DTYPES:
        raise QuantizationError(f"nir.quantize: activations={activations!r} is not supported; activations can be "
                                f"{', '.join(map(repr, ACTIVATION_DTYPES))} (float32: quantize the weights only)")
    if observer not in OBSERVERS:
        raise QuantizationError(f"nir.quantize: unknown observer {observer!r}; observers: {', '.join(OBSERVERS)}")
    source = program.program if isinstance(program, Traced) else program
    if not isinstance(source, Program):
        raise TypeError(f"nir.quantize takes what nir.trace or nir.from_torch returns (or a nir.Program), "
                        f"got {type(program).__name__}")
    verify(source)
    targets = _select(source, tuple(exclude))
    batches = _check_calibration(source, calibration) if activations == "int8" else []
    static = StaticValues(source)
    dynamic = list({v.id: v for e in targets for v in e.inputs if not static.is_static(v)}.values())
    scales: dict[int, np.ndarray] = {}
    if activations == "int8" and dynamic:
        make = (lambda: PercentileObserver(percentile)) if observer == "percentile" else OBSERVERS[observer]
        for vid, obs in _observe(source, dynamic, batches, backend, make).items():
            scales[vid] = symmetric_scale(obs.amax())
    rewritten = _rewrite(source, targets, static, scales, activations == "int8")
    return dataclasses.replace(program, program=rewritten) if isinstance(program, Traced) else rewritten


def _select(program: Program, exclude: tuple[str, ...]) -> list[Eqn]:
    """The equations to quantize: quantizable ones with a float operand, less those ``exclude`` names."""
    static = StaticValues(program)
    candidates = [e for e in quantizable(program) if not all(static.is_static(v) for v in e.inputs)]
    if not candidates:
        prims = ", ".join(sorted(program.prims())) or "none"
        raise QuantizationError(f"nir.quantize: the program has no contraction or convolution on float32 data to "
                                f"quantize (its primitives: {prims}). int8 applies to contract (matmul, Linear, "
                                "einsum) and conv2d; every other op stays in float")
    for name in exclude:
        if not any(name in e.out.type.names for e in candidates):
            made = sorted({n for e in candidates for n in e.out.type.names})
            raise QuantizationError(f"nir.quantize: exclude names dim {name!r}, but no quantizable op (contract, "
                                    f"conv2d) produces it; their output dims are {made}")
    return [e for e in candidates if not set(exclude) & set(e.out.type.names)]


def _rewrite(program: Program, targets: Sequence[Eqn], static: StaticValues, scales: dict[int, np.ndarray],
             int8_activations: bool) -> Program:
    rw = Rewriter(program)
    chosen = {id(e) for e in targets}
    for e in program.eqns:
        if id(e) not in chosen:
            rw.keep(e)
            continue
        codes, out_scale = [], np.float32(1)
        out_scale_dims: tuple[str, ...] = ()
        for i, v in enumerate(e.inputs):
            if static.is_static(v):
                channels = _per_channel_dims(e, i)
                q, s = _weight_int8(static.value(v), v.type, channels)
                code = rw.constant(q, v.type.with_dtype("int8"), where=e.where)
                scale_type = TensorType(tuple((n, v.type.size(n)) for n in channels), "float32")
                if not int8_activations:  # weight-only: the int8 constant, dequantized where it is used
                    codes.append(rw.add("dequantize", [code, rw.constant(s, scale_type)], where=e.where))
                    continue
                codes.append(code)
                out_scale, out_scale_dims = _times(out_scale, out_scale_dims, s, channels)
            elif int8_activations:
                s = scales[v.id]
                codes.append(rw.add("quantize", [v, rw.constant(s, TensorType((), "float32"))], where=e.where))
                out_scale = out_scale * s
            else:
                codes.append(v)
        if not int8_activations:
            rw.add(e.prim, codes, where=e.where, out=e.out, **e.kwargs)
            continue
        acc = rw.add(WIDENED[e.prim], codes, where=e.where, **e.kwargs)
        scale_type = TensorType(tuple((n, acc.type.size(n)) for n in out_scale_dims), "float32")
        rw.add("dequantize", [acc, rw.constant(out_scale, scale_type)], where=e.where, out=e.out)
    return verify(rw.build())


def _times(a: np.ndarray, a_dims: tuple[str, ...], b: np.ndarray, b_dims: Sequence[str]
           ) -> tuple[np.ndarray, tuple[str, ...]]:
    """The product of two named scales, broadcast by name: dims ``a_dims`` then the new ones of ``b_dims``."""
    from ..ops import to_order
    dims = tuple(a_dims) + tuple(n for n in b_dims if n not in a_dims)
    product = to_order(np.asarray(a), a_dims, dims) * to_order(np.asarray(b), tuple(b_dims), dims)
    return product.astype(np.float32), dims

