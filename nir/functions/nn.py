"""Neural-network functions of the named API: layer_norm, conv2d and pooling with dims picked by name."""

from __future__ import annotations

import builtins
from typing import Sequence

import numpy as np

from ..tensor import NamedTensor, bind
from ..types import (NamedShapeError)

from ._common import _align_by_name, _cast, _promote
from .reductions import _float_input



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
