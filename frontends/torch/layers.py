"""Converters of layers: Linear and matrix products, layer and batch norm, convolution, pooling, attention,
embedding. Each picks the dims it acts on from ATen's positions and calls nir's by-name function."""

from __future__ import annotations

import math
from typing import Any, Sequence

import nir.functions as nf
from nir.functions import _rename_ir
from nir.functions._common import _align_ir
from nir.ops.windows import _window_out
from nir.tensor import NamedTensor
from nir.types import fresh_name

from ._common import (_NOT_CONVERTED, _matmul, _named_as, _reconcile, _rename_at, _restore, _temp_names,
                      _Unsupported, _visible, converts)

@converts("layer", "aten.linear.default")
def _linear(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None = None) -> NamedTensor:
    """``matmul(x, weight.t()) + bias``: the weight's in-dim takes the name of x's last dim; the output's
    last dim is the weight's out-dim (``fc1.out``)."""
    name = x.names[-1]
    if name is not None and name not in weight.names:
        weight = _rename_at(weight, -1, name)
    y = _matmul(x, nf.t(weight), weight=True)
    return y if bias is None else nf.add(*_reconcile(y, bias))


@converts("layer", "aten.matmul.default", "aten.mm.default", "aten.bmm.default")
def _matmul_converter(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """`nir.matmul` (contracted names are ignored; a column name that the result already has is dropped)."""
    return _matmul(a, b)


@converts("layer", "aten.addmm.default")
def _addmm(bias: Any, a: NamedTensor, b: NamedTensor, *, beta: float = 1, alpha: float = 1) -> NamedTensor:
    """``beta * bias + alpha * (a @ b)``."""
    y = _matmul(a, b)
    y = y * alpha if alpha != 1 else y
    return nf.add(*_reconcile(y, bias * beta if beta != 1 else bias))


@converts("layer", "aten.layer_norm.default")
def _layer_norm(x: NamedTensor, normalized_shape: Sequence[int], weight: NamedTensor | None = None,
                bias: NamedTensor | None = None, eps: float = 1e-5, cudnn_enable: bool = True) -> NamedTensor:
    """`nir.layer_norm` over x's last ``len(normalized_shape)`` dims, by name; weight and bias take those names."""
    xv, over, undo = _visible(x, range(x.ndim - len(normalized_shape), x.ndim))
    return _restore(nf.layer_norm(xv, over, _named_as(weight, over), _named_as(bias, over), eps), undo)


@converts("layer", "aten.native_layer_norm.default")
def _native_layer_norm(x: NamedTensor, normalized_shape: Sequence[int], weight: NamedTensor | None,
                       bias: NamedTensor | None, eps: float) -> tuple[Any, ...]:
    """As ``aten.layer_norm`` (only the first output, the normalized tensor, is available)."""
    return (_layer_norm(x, normalized_shape, weight, bias, eps), _NOT_CONVERTED, _NOT_CONVERTED)


def _per_channel(p: NamedTensor, x: NamedTensor) -> NamedTensor:
    """A per-channel vector ``{C}`` named after x's channel dim (position 1) and shaped ``{C, H: 1, W: 1}``
    (size-1 dims named after x's) to broadcast against x, as torch's ``{C, 1, 1}`` does."""
    c = x.type.names[1]
    p = _rename_ir(p, {p.type.names[0]: c})
    return _align_ir(p, [(c, p.type.size(c)), *((n, 1) for n in x.type.names[2:])])


@converts("layer", "aten.batch_norm.default")
def _batch_norm(x: NamedTensor, weight: NamedTensor | None, bias: NamedTensor | None,
                running_mean: NamedTensor | None, running_var: NamedTensor | None, training: bool,
                momentum: float, eps: float, cudnn_enabled: bool = True) -> NamedTensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` along x's channel dim (position 1), by name; the
    batch's own statistics in training mode. In eval mode, with the running statistics, it is one
    multiply-add per element, ``x * scale + shift`` with ``scale = weight / sqrt(var + eps)`` and
    ``shift = bias - mean * scale`` computed per channel (as torch's CPU kernel does)."""
    if x.ndim < 2:
        raise _Unsupported(f"batch_norm needs a channel dim at position 1, got {x.type.pretty()}")
    if training or running_mean is None or running_var is None:
        dims = [i for i in range(x.ndim) if i != 1]
        mean, var = nf.mean(x, dims, keepdim=True), nf.var(x, dims, correction=0, keepdim=True)
        y = (x - mean) / nf.sqrt(var + eps)
        if weight is not None:
            y = y * _per_channel(weight, x)
        return y if bias is None else y + _per_channel(bias, x)
    scale = 1.0 / nf.sqrt(_per_channel(running_var, x) + eps)
    if weight is not None:
        scale = scale * _per_channel(weight, x)
    shift = _per_channel(running_mean, x) * scale
    shift = -shift if bias is None else _per_channel(bias, x) - shift
    return x * scale + shift


@converts("layer", "aten._native_batch_norm_legit_no_training.default")
def _batch_norm_no_training(x: NamedTensor, weight: NamedTensor | None, bias: NamedTensor | None,
                            running_mean: NamedTensor, running_var: NamedTensor, momentum: float,
                            eps: float) -> tuple[Any, ...]:
    """As ``aten.batch_norm`` in eval mode (only the first output is available)."""
    y = _batch_norm(x, weight, bias, running_mean, running_var, False, momentum, eps)
    return (y, _NOT_CONVERTED, _NOT_CONVERTED)


@converts("layer", "aten.conv2d.default", "aten.conv2d.padding")
def _conv2d(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None = None, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1) -> NamedTensor:
    """`nir.conv2d` with ``channels`` and ``spatial`` taken from x's dims at positions -3, -2, -1 (the
    weight's in, kh and kw dims take those names) and ``out_channels`` from the weight's out-dim (``conv1.out``)."""
    if x.ndim not in (3, 4) or weight.ndim != 4:
        raise _Unsupported(f"only 2-d convolution converts (input {x.type.pretty()}, weight {weight.type.pretty()})")
    xv, (c, h, w), undo = _visible(x, (-3, -2, -1))
    out = weight.names[0]
    if out is None or out in xv.names:  # unnamed, or taken: a conv applied to its own output
        tmp = f"nir_tmp{next(_temp_names)}"
        undo[tmp] = out if out is not None else fresh_name()
        out = tmp
    y = nf.conv2d(xv, _named_as(weight, (out, c, h, w)), _named_as(bias, (out,)), stride=stride, padding=padding,
                  dilation=dilation, groups=groups, channels=c, out_channels=out, spatial=(h, w))
    return _restore(y, undo)


@converts("layer", "aten.convolution.default")
def _convolution(x: NamedTensor, weight: NamedTensor, bias: NamedTensor | None, stride: Any, padding: Any,
                 dilation: Any, transposed: bool, output_padding: Any, groups: int) -> NamedTensor:
    """As ``aten.conv2d`` (2-d, not transposed)."""
    if transposed:
        raise _Unsupported("transposed convolution has no nir primitive")
    return _conv2d(x, weight, bias, stride, padding, dilation, groups)


def _ceil_pool_out(size: int, k: int, s: int, p: int) -> int:
    """torch's pooled size with ceil_mode=True (a last window must start inside the input or left padding)."""
    out = -(-(size + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= size + p else out


def _pool(kind: str, x: NamedTensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> NamedTensor:
    k = nf._pair(kernel_size, "kernel_size", kind)
    s = nf._pair(stride if stride else k, "stride", kind)
    p = nf._pair(padding, "padding", kind)
    if ceil_mode and any(_ceil_pool_out(n, *a) != _window_out(n, *a, 1) for n, a in zip(x.shape[-2:], zip(k, s, p))):
        raise _Unsupported("ceil_mode=True changes the output size here; nir pools with floor (ceil_mode=False)")
    xv, spatial, undo = _visible(x, (-2, -1))
    return _restore((nf.max_pool2d if kind == "max" else nf.avg_pool2d)(xv, k, s, p, spatial=spatial), undo)


@converts("layer", "aten.max_pool2d.default")
def _max_pool2d(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False) -> NamedTensor:
    """`nir.max_pool2d` over x's last two dims, by name."""
    if nf._pair(dilation, "dilation", "max_pool2d") != (1, 1):
        raise _Unsupported(f"dilation={dilation}: nir's pool2d has no dilation")
    return _pool("max", x, kernel_size, stride, padding, ceil_mode)


@converts("layer", "aten.max_pool2d_with_indices.default")
def _max_pool2d_with_indices(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0,
                             dilation: Any = 1, ceil_mode: bool = False) -> tuple[Any, ...]:
    """As ``aten.max_pool2d`` (the indices are not available)."""
    return (_max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode), _NOT_CONVERTED)


@converts("layer", "aten.avg_pool2d.default")
def _avg_pool2d(x: NamedTensor, kernel_size: Any, stride: Any = (), padding: Any = 0, ceil_mode: bool = False,
                count_include_pad: bool = True, divisor_override: int | None = None) -> NamedTensor:
    """`nir.avg_pool2d` over x's last two dims, by name (padding counts as zeros, torch's default)."""
    if divisor_override is not None:
        raise _Unsupported(f"divisor_override={divisor_override}")
    if not count_include_pad and any(nf._pair(padding, "padding", "avg_pool2d")):
        raise _Unsupported("count_include_pad=False with padding: nir's average counts the padding")
    return _pool("avg", x, kernel_size, stride, padding, ceil_mode)


@converts("layer", "aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(x: NamedTensor, output_size: Any) -> NamedTensor:
    """`nir.avg_pool2d` with kernel = stride = input size / output size (which must divide)."""
    out = nf._pair(output_size, "output_size", "adaptive_avg_pool2d")
    size = x.shape[-2:]
    if any(o is None or o == 0 or n % o for n, o in zip(size, out)):
        raise _Unsupported(f"output size {out} does not divide the input size {tuple(size)}")
    k = tuple(n // o for n, o in zip(size, out))
    return _pool("avg", x, k, k, 0, False)


@converts("layer", "aten.scaled_dot_product_attention.default")
def _sdpa(query: NamedTensor, key: NamedTensor, value: NamedTensor, attn_mask: NamedTensor | None = None,
          dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
          enable_gqa: bool = False) -> NamedTensor:
    """``softmax(q @ k.T * scale + mask) @ v`` with `nir.matmul` and `nir.softmax`; the key's sequence dim
    is unnamed first, since it is not the query's even when both are named S. Grouped-query attention
    (``enable_gqa``, fewer key/value heads) splits the query's heads into (key heads, group) so that each
    key head serves its group by broadcasting, then merges them back."""
    if dropout_p:
        raise _Unsupported(f"dropout_p={dropout_p} is random at run time; pass dropout_p=0.0 outside training")
    if enable_gqa and query.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk:
            raise _Unsupported(f"enable_gqa with {hq} query heads and {hk} key heads, which do not divide them")
        group = [(None, hk), (None, hq // hk)]  # unnamed parts
        if attn_mask is not None and attn_mask.ndim >= 3:
            attn_mask = (nf.unsqueeze(attn_mask, -3) if attn_mask.shape[-3] == 1
                         else nf.unflatten(attn_mask, attn_mask.ndim - 3, group))
        y = _sdpa(nf.unflatten(query, query.ndim - 3, group), nf.unsqueeze(key, -3), nf.unsqueeze(value, -3),
                  attn_mask, 0.0, is_causal, scale=scale)
        y = nf.flatten(y, y.ndim - 4, y.ndim - 3)
        return y if query.names[-3] is None else _rename_at(y, -3, query.names[-3])
    s = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = _matmul(query, nf.transpose(_rename_at(key, -2, None), -2, -1)) * s
    if is_causal:
        keep = nf.unsqueeze(nf.arange(query.shape[-2]), -1) >= nf.arange(key.shape[-2])
        scores = nf.where(keep, scores, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == "bool":
            attn_mask, scores = _reconcile(attn_mask, scores)
            scores = nf.where(attn_mask, scores, -math.inf)
        else:
            scores = nf.add(*_reconcile(scores, attn_mask))
    return _matmul(nf.softmax(scores, -1), value)


@converts("layer", "aten.embedding.default")
def _embedding(weight: NamedTensor, indices: NamedTensor, padding_idx: int = -1, scale_grad_by_freq: bool = False,
               sparse: bool = False) -> NamedTensor:
    """`nir.take` along the table's first dim: table ``{emb.vocab, emb.dim}`` and tokens ``{B, S}`` give
    ``{B, S, emb.dim}``."""
    return nf.take(weight, indices, 0)


