"""The layout search space. No nir op depends on dimension order, so the physical order of every value
is free; the candidates here are whole-program strategies (pruned, not a product over values):

- ``logical``: every value in the order the user sees.
- ``channels_last`` / ``channels_first``: values around convolution and pooling with the channel dim
  innermost (NHWC, HWIO weights) or before the spatial dims (NCHW, OIHW weights).
- ``reduce_inner``: contracted and reduced dims innermost for contractions, reductions, softmax and
  layer norm inputs (the contiguous-reduction layout), and the weight of a contraction "transposed".
- ``reduce_outer``: contracted dims outermost (the other classic matmul layout).

A layout is stored as ``{value index: permutation of the value's logical dims}``, where the value index
is the value's position in `Program.values()` — stable across traces of the same function, unlike
value ids and generated dim names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..ir import Program, Value

__all__ = ["LayoutCandidate", "layout_candidates", "apply_layouts", "STRATEGIES"]

STRATEGIES = ("logical", "channels_last", "channels_first", "reduce_inner", "reduce_outer")


@dataclass(frozen=True)
class LayoutCandidate:
    """A named strategy and the permutations it assigns (``{value index: permutation}``)."""

    name: str
    layouts: dict[int, tuple[int, ...]]

    def describe(self, program: Program) -> str:
        """e.g. ``channels_last: %0 (N,H,W,C), %3 (N,H,W,O)``."""
        values = program.values()
        parts = [f"%{values[i].id} ({','.join(values[i].type.names[j] for j in perm)})"
                 for i, perm in sorted(self.layouts.items())]
        return f"{self.name}: " + (", ".join(parts) if parts else "logical order everywhere")


def _perm(v: Value, order: Sequence[str]) -> tuple[int, ...]:
    names = v.type.names
    return tuple(names.index(n) for n in order)


def _move(v: Value, inner: Sequence[str], last: bool) -> tuple[int, ...]:
    rest = [n for n in v.type.names if n not in inner]
    inner = [n for n in v.type.names if n in inner]
    return _perm(v, rest + inner if last else inner + rest)


def _strategy(program: Program, name: str) -> dict[int, tuple[int, ...]]:
    index = {v.id: i for i, v in enumerate(program.values())}
    out: dict[int, tuple[int, ...]] = {}

    def put(v: Value, perm: tuple[int, ...]) -> None:
        if perm != tuple(range(v.type.ndim)) and v.type.ndim >= 2:
            out[index[v.id]] = perm

    for e in program.eqns:
        p = e.kwargs
        if name in ("channels_last", "channels_first") and e.prim in ("conv2d", "pool2d"):
            spatial = list(p["spatial"])
            last = name == "channels_last"
            if e.prim == "conv2d":
                c, o = p["channels"], p["out_channels"]
                x, w = e.inputs
                put(x, _move(x, spatial + [c] if last else [c] + spatial, True))
                put(w, _perm(w, spatial + [c, o] if last else [o, c] + spatial))
                put(e.out, _move(e.out, spatial + [o] if last else [o] + spatial, True))
            else:
                x = e.inputs[0]
                chans = [n for n in x.type.names if n not in spatial][-1:]  # the innermost non-spatial dim
                put(x, _move(x, spatial + chans if last else chans + spatial, True))
                put(e.out, _move(e.out, spatial + chans if last else chans + spatial, True))
        elif name in ("reduce_inner", "reduce_outer") and e.prim == "contract":
            a, b = e.inputs
            over = list(p["over"])
            last = name == "reduce_inner"
            put(a, _move(a, over, last))
            put(b, _move(b, over, last))
        elif name == "reduce_inner" and e.prim in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod",
                                                     "layer_norm", "softmax", "log_softmax", "argmax", "argmin"):
            dims = list(p["dims"]) if "dims" in p else [p["dim"]]
            put(e.inputs[0], _move(e.inputs[0], dims, True))
    return out


def layout_candidates(program: Program) -> list[LayoutCandidate]:
    """The distinct layout strategies that change something in ``program`` (``logical`` always first)."""
    seen: set[tuple] = set()
    out = []
    for name in STRATEGIES:
        layouts = {} if name == "logical" else _strategy(program, name)
        key = tuple(sorted(layouts.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(LayoutCandidate(name, layouts))
    return out


def apply_layouts(program: Program, layouts: dict[int | str, Sequence[int]]) -> Program:
    """``program`` with the physical orders of a candidate (keys may be strings, as stored in JSON)."""
    values = program.values()
    by_id = {}
    for k, perm in layouts.items():
        v = values[int(k)]
        if sorted(perm) != list(range(v.type.ndim)):
            raise ValueError(f"layout {list(perm)} is not a permutation of the dims of %{v.id} {v.type.pretty()}")
        by_id[v.id] = tuple(v.type.names[j] for j in perm)
    return program.with_layouts(by_id)

