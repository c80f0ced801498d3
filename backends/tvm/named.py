"""Named Relax expressions and the helpers every TVM lowering moves axes with (`lower.py`, `int8.py`,
`control.py`): an expression plus the dimension name of each of its axes, permuted, aligned, reshaped,
broadcast and cast by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import tvm
from tvm import relax
from tvm.relax import op as R

LOW_PRECISION = ("float16", "bfloat16")


@dataclass(frozen=True)
class Named:
    """A Relax expression together with the dimension name of each of its axes (in axis order)."""

    expr: relax.Expr
    names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The static shape of the expression (nir programs have static shapes only)."""
        return tuple(int(s) for s in self.expr.ty.shape)

    @property
    def sizes(self) -> dict[str, int]:
        """``{name: size}`` of the expression's axes."""
        return dict(zip(self.names, self.shape))

    @property
    def dtype(self) -> str:
        """The element type (``"float32"``, ...)."""
        return str(self.expr.ty.dtype)


Lowering = Callable[..., Named]


# ---------------------------------------------------------------------------------------------
# helpers: every axis move goes through these
# ---------------------------------------------------------------------------------------------

def bind(expr: relax.Expr, names: Sequence[str]) -> Named:
    """Emit ``expr`` into the current dataflow block (so its shape is known) and name its axes. A non-zero
    scalar constant stays an operand of its users: legalization then writes it into their kernels as a
    literal, where a bound one is a 0-d buffer loaded at every element. (A zero stays bound: TVM's
    simplifier aborts on a division by a literal zero, as in the mean over an empty dim.)"""
    scalar = isinstance(expr, tvm.ir.expr.Constant) and expr.ty.ndim == 0 and expr.value.numpy()[()] != 0
    var = expr if isinstance(expr, relax.Var) or scalar else relax.BlockBuilder.current().emit(expr)
    return Named(var, tuple(names))


def rewrite_functions(rewriter: relax.PyExprMutator, mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every Relax function visited by ``rewriter`` (a mutator made over ``mod``): the body of
    nir's Relax passes (`vmath`, `sink_reshape`, `conv_width`, `scalars`)."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()


_PERMUTE_DIMS = tvm.ir.Op.get("relax.permute_dims")


def permute(x: Named, order: Sequence[str]) -> Named:
    """``x`` with its axes moved into ``order`` (a permutation of ``x.names``); no-op when equal.
    A permute of a permute becomes one permute (or none) of the original."""
    order = tuple(order)
    if order == x.names:
        return x
    assert sorted(order) == sorted(x.names), (order, x.names)
    source = relax.BlockBuilder.current().lookup_binding(x.expr)
    if isinstance(source, relax.Call) and source.op.same_as(_PERMUTE_DIMS) and source.attrs.axes is not None:
        names = [""] * len(x.names)
        for name, axis in zip(x.names, source.attrs.axes):
            names[int(axis)] = name
        return permute(Named(source.args[0], tuple(names)), order)
    return bind(R.permute_dims(x.expr, [x.names.index(n) for n in order]), order)


def align(x: Named, order: Sequence[str]) -> relax.Expr:
    """``x`` permuted into the order of the names of ``order`` it has, with size-1 axes inserted for
    the names it lacks: ready for numpy-style broadcasting against a tensor with axes ``order``
    (the Relax twin of `nir.ops.to_order`)."""
    sizes = x.sizes
    y = permute(x, [n for n in order if n in x.names])
    return reshape(y, [(n, sizes.get(n, 1)) for n in order]).expr


def reshape(x: Named, dims: Sequence[tuple[str, int]]) -> Named:
    """``x`` (row-major) reshaped to named ``dims``; no-op when the shape already matches."""
    shape = tuple(s for _, s in dims)
    names = tuple(n for n, _ in dims)
    if shape == x.shape:
        return Named(x.expr, names)
    if 0 in shape:  # Relax reads a 0 in a reshape's shape as "copy that input axis": say it with -1 and 1s
        z = shape.index(0)
        y = bind(R.reshape(x.expr, [-1 if i == z else s or 1 for i, s in enumerate(shape)]), names)
        return broadcast(y, dict(dims)) if shape.count(0) > 1 else y
    return bind(R.reshape(x.expr, list(shape)), names)


def broadcast(x: Named, sizes: dict[str, int]) -> Named:
    """``x`` expanded to ``sizes`` along its size-1 axes; no-op when it already has that shape."""
    shape = tuple(sizes[n] for n in x.names)
    return x if shape == x.shape else bind(R.broadcast_to(x.expr, list(shape)), x.names)


def upcast(x: Named) -> Named:
    """float16/bfloat16 -> float32 (how the reference computes low precision); others unchanged."""
    return bind(R.astype(x.expr, "float32"), x.names) if x.dtype in LOW_PRECISION else x


def downcast(x: Named, dtype: str) -> Named:
    """Round ``x`` back to ``dtype`` if it was computed in another dtype."""
    return x if x.dtype == dtype else bind(R.astype(x.expr, dtype), x.names)


def _axes(x: Named, names: Sequence[str]) -> list[int]:
    return [x.names.index(n) for n in names]


def _image_layout(x: Named, channels: str | None, spatial: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """NHWC when the channels already follow the spatial dims in memory, else NCHW; plus batch names."""
    batch = tuple(n for n in x.names if n != channels and n not in spatial)
    if channels is not None and x.names.index(channels) > max(_axes(x, spatial)):
        return "NHWC", batch
    return "NCHW", batch


def _to_image(x: Named, layout: str, batch: tuple[str, ...], c: tuple[str, ...], spatial: Sequence[str]) -> Named:
    """Permute into batch+C+H+W (or batch+H+W+C) and merge the batch dims (and, with no channel
    dim, the non-spatial dims) into one N axis."""
    sizes = x.sizes
    order = batch + c + tuple(spatial) if layout == "NCHW" else batch + tuple(spatial) + c
    y = permute(x, order)
    n = [("_n", math.prod(sizes[d] for d in batch))]
    cdim = [(c[0], sizes[c[0]])] if c else [("_c", 1)]
    hw = [(s, sizes[s]) for s in spatial]
    return reshape(y, n + cdim + hw if layout == "NCHW" else n + hw + cdim)
