"""The lowering of `pad`: edge pads with R.nn.pad, crops with strided_slice, interior pads as one TE
compute (`_spread`) that reads by a truncating division, which TVM 0.27 flattens correctly."""

from __future__ import annotations

from tvm import relax, te, tirx
from tvm.relax import op as R

from nir.ir import Eqn

from .named import Named, bind

__all__ = ["lower_pad"]


def _edge_pad(expr: relax.Expr, rank: int, ax: int, low: int, high: int, value: float) -> relax.Expr:
    """R.nn.pad of axis ``ax`` alone (of a rank-``rank`` tensor) by ``low`` and ``high`` values."""
    width = [0] * (2 * rank)
    width[2 * ax], width[2 * ax + 1] = low, high
    return R.nn.pad(expr, width, pad_value=float(value))


def _spread(x: te.Tensor, ax: int, low: int, high: int, interior: int, value: float) -> te.Tensor:
    """``x`` with ``interior`` values between its elements along axis ``ax`` and ``low``/``high`` at its
    edges (negative: cropped), all ``value``: element ``e`` reads ``x[(e - low) // s]`` (s = interior + 1)
    where that is an element, by a select of an index clamped into ``x``.

    The index is a truncating division, not a floor division: once a reshape has merged the padded dim
    with another in one kernel (``x[v // 30, (v % 30 - 1) // 3]`` of a flattened loop ``v``), TVM 0.27's
    FlattenBuffer simplifies the flat floor-division index ``v // 30 * 10 + (v % 30 + 2) // 3 - 1`` to
    ``(v + 2) // 3 - 11`` (right: ``- 1``), and the kernel reads 10 rows off (`nir fuzz` found a
    contraction over the merged dims reading garbage). The clamp keeps the read inside ``x`` either way."""
    n, s = int(x.shape[ax]), interior + 1
    shape = list(x.shape)
    shape[ax] = low + high + (n - 1) * s + 1

    def element(*i: tirx.PrimExpr) -> tirx.PrimExpr:
        e = i[ax] - low
        k = tirx.max(tirx.min(tirx.truncdiv(e, s), n - 1), 0)  # (truncdiv: see the docstring)
        hit = tirx.all(e >= 0, e <= (n - 1) * s, tirx.floormod(e, s) == 0)
        return tirx.Select(hit, x[(*i[:ax], k, *i[ax + 1:])], tirx.const(value, x.dtype))
    return te.compute(shape, element, name="T_pad")


def lower_pad(eqn: Eqn, x: Named) -> Named:
    """Interior padding (with the edges of that dim) by `_spread`; edge padding alone with R.nn.pad;
    negative (cropping) edges with strided_slice. (Not a concatenation with a filled tensor: TVM's
    FoldConstant folds a broadcast fill into a constant of the full size, which the fused kernel then
    reads.)"""
    value = eqn.kwargs["value"]
    for dim, low, high, interior in eqn.kwargs["pads"]:
        ax = x.names.index(dim)
        if interior and x.shape[ax] > 1:
            bb = relax.BlockBuilder.current()
            x = bind(bb.call_te(_spread, x.expr, ax, low, high, interior, float(value), primfunc_name_hint="pad"),
                     x.names)
            continue
        if low > 0 or high > 0:
            x = bind(_edge_pad(x.expr, len(x.names), ax, max(low, 0), max(high, 0), value), x.names)
        if low < 0 or high < 0:
            x = bind(R.strided_slice(x.expr, [ax], [max(-low, 0)], [x.shape[ax] - max(-high, 0)]), x.names)
    return x
