"""Window primitives over two named spatial dims: `conv2d` and `pool2d`."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..types import TensorType, fresh_name
from . import _ad as ad
from ._core import _check_present, _fail, _register, defvjp, to_order


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


# ------------------------------------------------------------------------------------------------
# reverse-mode rules (see nir/ops/_ad.py): transposed convolutions and window scatters spelled with
# pad, take, slice and conv2d itself, so every backend runs them with the kernels it already has
# ------------------------------------------------------------------------------------------------

def _spread(ct: Any, in_sizes: Sequence[int], kernel: Sequence[int], spatial: Sequence[str], stride, padding,
            dilation) -> Any:
    """The output cotangent dilated by the stride and padded so that a stride-1 window pass with the
    (flipped) kernel lands on every input position: the transpose of a strided, padded window."""
    pads = {}
    for i, s in enumerate(spatial):
        out = ct.type.size(s)
        span = dilation[i] * (kernel[i] - 1)
        pads[s] = (span - padding[i], in_sizes[i] + padding[i] - 1 - (out - 1) * stride[i], stride[i] - 1)
    return ad.pad(ct, pads)


def _conv2d_input_grad(ct: Any, x: Any, w: Any, channels: str, out_channels: str, spatial: Sequence[str],
                       stride, padding, dilation, groups: int) -> Any:
    """A stride-1 convolution of the spread cotangent with the spatially flipped kernel, whose in and out
    channels swap roles (per group)."""
    wt = w
    if groups > 1:  # {O: G*Og, C: Cg} -> {C: G*Cg, O: Og}
        g, og, gc = fresh_name(), fresh_name(), fresh_name()
        og_size = w.type.size(out_channels) // groups
        wt = ad.emit("unflatten", wt, dim=out_channels, parts=((g, groups), (og, og_size)))
        wt = ad.rename(ad.emit("flatten", wt, dims=(g, channels), into=gc), {gc: channels, og: out_channels})
    for s in spatial:
        k = w.type.size(s)
        if k > 1:
            wt = ad.emit("take", wt, ad.emit("iota", dim=s, size=k, start=k - 1, step=-1, dtype="int64"), dim=s)
    kernel = [w.type.size(s) for s in spatial]
    spread = _spread(ct, [x.type.size(s) for s in spatial], kernel, spatial, stride, padding, dilation)
    dx = ad.emit("conv2d", spread, wt, channels=out_channels, out_channels=channels, spatial=tuple(spatial),
                 stride=(1, 1), padding=(0, 0), dilation=tuple(dilation), groups=groups)
    return ad.to_type(dx, x.type)


def _conv2d_weight_grad(ct: Any, x: Any, w: Any, channels: str, out_channels: str, spatial: Sequence[str],
                        stride, padding, dilation, groups: int) -> Any:
    """A convolution of the input with the output cotangent as its kernel: the batch dims are the
    contracted channels, the input channels the batch, and stride and dilation swap roles. The result
    can run past the kernel's size when the stride skips trailing rows; it is cut back."""
    batch = [n for n in x.type.names if n != channels and n not in spatial]
    if not batch:  # no batch dim: a size-1 one to contract over
        one = fresh_name()
        x = ad.emit("align", x, dims=((one, 1),) + x.type.dims)
        ct = ad.emit("align", ct, dims=((one, 1),) + ct.type.dims)
        batch = [one]
    rows, c = channels, channels
    if groups > 1:  # the groups become the leading part of the contracted channels
        g, c = fresh_name(), fresh_name()
        x = ad.emit("unflatten", x, dim=channels, parts=((g, groups), (c, w.type.size(channels))))
        batch = [g] + batch
    into = fresh_name()
    xs = ad.emit("flatten", x, dims=tuple(batch), into=into) if len(batch) > 1 else ad.rename(x, {batch[0]: into})
    ct_batch = [n for n in batch if n in ct.type.names]
    kern = (ad.emit("flatten", ct, dims=tuple(ct_batch), into=into) if len(ct_batch) > 1
            else ad.rename(ct, {ct_batch[0]: into}))
    dw = ad.emit("conv2d", xs, kern, channels=into, out_channels=out_channels, spatial=tuple(spatial),
                 stride=tuple(dilation), padding=tuple(padding), dilation=tuple(stride), groups=groups)
    for s in spatial:
        k = w.type.size(s)
        if dw.type.size(s) != k:
            dw = ad.emit("slice", dw, dim=s, start=0, stop=k, step=1)
    return ad.to_type(ad.rename(dw, {c: rows}), w.type)


def _conv2d_vjp(ct: Any, x: Any, w: Any, *, out: Any, needs: Sequence[bool], **p: Any) -> tuple:
    return (_conv2d_input_grad(ct, x, w, **p) if needs[0] else None,
            _conv2d_weight_grad(ct, x, w, **p) if needs[1] else None)


def _pool2d_vjp(ct: Any, x: Any, *, out: Any, needs: Sequence[bool], kind: str, kernel, stride, padding,
                spatial) -> tuple:
    sizes = [x.type.size(s) for s in spatial]
    if kind == "avg":  # every window spreads its cotangent evenly: a stride-1 average of the spread cotangent
        spread = _spread(ct, sizes, kernel, spatial, stride, padding, (1, 1))
        dx = ad.emit("pool2d", spread, kind="avg", kernel=tuple(kernel), stride=(1, 1), padding=(0, 0),
                     spatial=tuple(spatial))
        return (ad.to_type(dx, x.type),)
    # max: each window's cotangent goes back to its first maximum (as PyTorch). The window position of
    # that maximum comes from one argmax over the windows stacked along a new dim — never from comparing
    # the input with the pooled result, which a compiler may have computed from differently fused values.
    lowest = ad.pad(x, {s: (padding[i], padding[i], 0) for i, s in enumerate(spatial)}, value=-math.inf)
    offsets = [(a, b) for a in range(kernel[0]) for b in range(kernel[1])]
    k = fresh_name()
    windows = []
    for a, b in offsets:
        at = lowest
        for s, off, i in ((spatial[0], a, 0), (spatial[1], b, 1)):
            m = out.type.size(s)
            at = ad.emit("slice", at, dim=s, start=off, stop=off + (m - 1) * stride[i] + 1, step=stride[i])
        windows.append(ad.emit("align", at, dims=((k, 1),) + at.type.dims))
    first = ad.emit("argmax", ad.emit("concat", *windows, dim=k), dim=k)
    if tuple(stride) == tuple(kernel) and tuple(padding) == (0, 0):
        return (ad.to_type(_max_pool_tiles(ct, first, kernel, spatial, sizes), x.type),)
    dx = None
    for j, (a, b) in enumerate(offsets):
        hit = ad.emit("eq", first, ad.scalar(j, "int64"))
        part = ad.pad(ad.mask(hit, ct), {
            s: (off - padding[i], sizes[i] - (off - padding[i]) - (out.type.size(s) - 1) * stride[i] - 1,
                stride[i] - 1) for s, off, i in ((spatial[0], a, 0), (spatial[1], b, 1))})
        dx = part if dx is None else ad.add(dx, part)
    return (ad.to_type(dx, x.type),)


def _max_pool_tiles(ct: Any, first: Any, kernel, spatial, sizes) -> Any:
    """The cotangent of a max-pool whose windows tile the input (stride = kernel, no padding): each input
    position takes its window's cotangent when it is the window's first maximum (``first``, the argmax
    over the window positions), else 0; rows and columns past the last whole window get 0.

    One select per input position, reading its window at ``h // kh, w // kw`` (an upsampling by
    broadcast and flatten), where the general rule sums one interior-padded tensor per window position:
    conditions per term that keep a compiler's loops scalar (TVM: 4.8 ns per element of LeNet-5's first
    max-pool gradient, against 0.2 ns for the select)."""
    sub = {spatial[0]: (fresh_name(), kernel[0]), spatial[1]: (fresh_name(), kernel[1])}
    dims = tuple(d for n, size in ct.type.dims for d in ((n, size), *([sub[n]] if n in sub else [])))
    (a, ka), (b, kb) = sub[spatial[0]], sub[spatial[1]]
    index = TensorType(((a, ka), (b, kb)), "int64")
    at = ad.add(ad.to_type(ad.emit("iota", dim=a, size=ka, start=0, step=kb, dtype="int64"), index),
                ad.to_type(ad.emit("iota", dim=b, size=kb, start=0, step=1, dtype="int64"), index))
    hit = ad.emit("eq", ad.to_type(first, TensorType(dims, "int64")), at)  # (at: a constant, left small)
    dx = ad.mask(hit, ad.to_type(ct, TensorType(dims, ct.dtype)))
    for (s, (inner, k)), size in zip(sub.items(), sizes):
        merged = fresh_name()
        dx = ad.rename(ad.emit("flatten", dx, dims=(s, inner), into=merged), {merged: s})
        dx = ad.pad(dx, {s: (0, size - dx.type.size(s), 0)})
    return dx


defvjp("conv2d", _conv2d_vjp)
defvjp("pool2d", _pool2d_vjp)
