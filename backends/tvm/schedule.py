"""Default CPU schedules: fast code with no tuning.

Untuned TVM CPU code is plain loop nests (about 2 GFLOP/s for a matmul). After legalization and
fusion (`relax.get_pipeline("zero")`) every PrimFunc goes through `RULES` in order; the first rule
that accepts it schedules it:

* `contraction` - one multiply-accumulate reduction block (matmul, batched matmul, conv2d): a
  register tile (rows x vector) with the reduction loops outside it, the outer tiles in parallel;
  input padding stays a parallel loop nest of its own (its condition inside the vectorized loop would
  stop vectorization), and the elementwise epilogue (bias, batch norm, activation) runs inside the
  outer parallel loop on each tile as it is finished (`_epilogue_into`).
* `row_reduction` - softmax / layer_norm shaped funcs (reductions over the innermost dims and
  elementwise blocks sharing leading spatial axes; in `reductions`).
* `column_reduction` - a single reduction over outer dims: the innermost output loop is vectorized
  inside the reduction loops (in `reductions`).
* `transpose` - an elementwise block reading an input across its rows: tiled.
* `generic` - everything else: inline what can be inlined, then each block gets its leading spatial
  loops fused and run in parallel and (when it is elementwise) its innermost loop vectorized.

A rule that raises or produces nothing is skipped, so an unusual PrimFunc keeps TVM's plain (slow but
correct) loops rather than breaking the build. Functions already marked ``tirx.is_scheduled`` (e.g.
by a MetaSchedule database) are left alone.
"""

from __future__ import annotations

import math
from typing import Callable

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.target import Target

from .blocks import (MIN_PARALLEL_TASKS, MIN_PARALLEL_WORK, _accumulators, _contiguous_in, _divisor,
                     _elementwise, _extent, _inline_all, _iterations, _lanes, _one_loop, _parallel_vectorize,
                     _region_vars, _registers, _write_dtype, lanes)
from .reductions import column_reduction, row_reduction

__all__ = ["schedule_module", "RULES", "MIN_PARALLEL_WORK", "lanes"]

# a rule schedules in place and returns True, or returns a new Schedule; False/None: not this rule
Rule = Callable[[s_tir.Schedule, Target], "bool | s_tir.Schedule | None"]


# ---------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------

def _is_contraction(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """A reduction block ``out[S] += a[...] * b[...]`` over at least one spatial and one reduction
    loop, reading two buffers besides its output."""
    block = sch.get(info.block_rv)
    if not info.is_reduction() or len(block.writes) != 1:
        return False
    kinds = info.dom_kind()
    if "S" not in kinds or "R" not in kinds or "O" in kinds:
        return False
    out = block.writes[0].source
    inputs = {r.source for r in block.reads if not r.source.same_as(out)}
    if len(inputs) != 2:
        return False
    return isinstance(block.body, tirx.BufferStore) and _has_mul(block.body.value)


def _has_mul(expr: object) -> bool:
    """Whether an update ``acc + a * b`` (casts allowed) multiplies."""
    if isinstance(expr, tirx.Mul):
        return True
    return any(_has_mul(getattr(expr, f)) for f in ("a", "b", "value") if hasattr(expr, f))


def contraction(sch: s_tir.Schedule, target: Target) -> bool:
    """Register-tiled matmul / conv2d:
    ``[outer spatial..., V/vi, (K/kc), T/ti, reductions..., ti, vi/lanes, lanes]``.

    V is the innermost spatial loop (contiguous in the output), vectorized, a few registers per tile
    row; T is a spatial loop that the operand streamed along V does not depend on (the rows of a
    matmul, the output channels of a convolution), unrolled so that each loaded vector feeds ``ti``
    accumulators (`_register_tile`). A long single reduction (a matmul's K) is blocked by ``kc`` so
    that the streamed panel (kc x vi) stays in L1 while the row tiles pass over it. Extents without
    a good divisor (ViT's 197 tokens) are padded when the block is an einsum (`pad_einsum`; the
    padded copies are small next to the product), else the tile shrinks to a divisor.
    """
    infos = normalize_prim_func(sch)
    if not infos:
        return False
    mains = [b for b in infos if b.is_reduction()]
    if len(mains) != 1 or not _is_contraction(sch, mains[0]):
        return False
    main = mains[0]
    infos = _inline_all(sch, keep=[main], keep_pads=True)
    main = next(b for b in infos if b.name == main.name)
    iters = main.iters
    spatial = [i for i, it in enumerate(iters) if it.kind == "S"]
    reduce = [i for i, it in enumerate(iters) if it.kind == "R"]
    v = spatial[-1]
    stmt = sch.get(main.block_rv)
    lanes = _lanes(target, str(stmt.writes[0].source.dtype))
    reads = [r for r in stmt.reads if not r.source.same_as(stmt.writes[0].source)]
    streamed = [r for r in reads if iters[v].var in _region_vars(r)]
    if not streamed or not all(_contiguous_in(r, iters[v].var) for r in streamed + list(stmt.writes)):
        return False  # V is not the fast axis of what it streams (e.g. a matrix-vector product): not this rule
    used_by_streamed = set().union(*[_region_vars(r) for r in streamed])
    candidates = [i for i in spatial[:-1] if iters[i].var not in used_by_streamed and int(iters[i].dom) > 1]
    # the longest; of equal ones the innermost (a convolution's output width rather than its height: the
    # epilogue then writes whole output rows of each parallel iteration)
    t = max(reversed(candidates), key=lambda i: int(iters[i].dom)) if candidates else None
    n, m = int(iters[v].dom), int(iters[t].dom) if t is not None else 1
    einsum = _is_einsum(sch, main)
    # a convolution's broadcast operand is a pixel loaded straight into its multiply-add, so it may hold all
    # but 4 registers (AVX-512: 2 vectors x 14 output columns, against 4 x 4 within 24; 64@56 3x3, 1 thread:
    # 1.78 -> 1.63 ms NHWC); a matmul keeps the budget its tiles were measured with
    accumulators = _accumulators(target) if einsum else _registers(target) - 4
    tile = _register_tile(n, m, lanes, accumulators, einsum, _registers(target))
    if tile is None:
        return False
    nv, vec, ti, pad_n, pad_m = tile
    if pad_n > n or pad_m > m:
        factors = [1] * len(iters)
        factors[v] = pad_n if pad_n > n else 1
        if t is not None and pad_m > m:
            factors[t] = pad_m
        sch.pad_einsum(main.block_rv, factors)
    # split the other blocks before the main one's loops change (normalize_prim_func then returns None):
    # producers (padding) run as parallel loops of their own, the epilogue moves into the main loop below
    infos = normalize_prim_func(sch) or []
    at = next(i for i, b in enumerate(infos) if b.name == main.name)
    for info in infos[:at]:
        if _elementwise(sch, info):
            _parallel_vectorize(sch, info, target)
    epilogue = [info for info in infos[at + 1:] if _elementwise(sch, info)]
    block = main.block_rv
    loops = sch.get_loops(block)
    v_o, v_n, v_l = sch.split(loops[v], [None, nv, vec])
    if ti > 1:
        t_o, t_i = sch.split(loops[t], [None, ti])
    outer = [loops[i] for i in spatial if i != v and (i != t or ti == 1)]
    red = [loops[i] for i in reduce]
    blocked = []
    kc = _divisor(_extent(sch, red[0]), [KC, KC // 2, KC * 2]) if len(red) == 1 else None
    if kc is not None and _extent(sch, red[0]) > KC:
        blocked = list(sch.split(red[0], [None, kc]))
        red = blocked[1:]
    par = outer + [v_o]
    rows = [t_o] if ti > 1 else []
    shared = math.prod(_extent(sch, lp) for lp in par)
    if rows and shared < MIN_PARALLEL_TASKS:  # too few column panels to share out: split the row tiles too
        e = _extent(sch, t_o)
        tp = next((d for d in range(2, e + 1) if e % d == 0 and d * shared >= MIN_PARALLEL_TASKS), e)
        if tp > 1:
            t_p, t_o = sch.split(t_o, [tp, None])
            par, rows = par + [t_p], [t_o]
    order = par + blocked[:1] + rows + red + ([t_i] if ti > 1 else []) + [v_n, v_l]
    sch.reorder(*order)
    fused = _one_loop(sch, par)
    if _iterations(sch, block) >= MIN_PARALLEL_WORK:
        sch.parallel(fused)
    sch.vectorize(v_l)
    sch.unroll(v_n)
    if ti > 1:
        sch.unroll(t_i)
    sch.decompose_reduction(block, (blocked[:1] + rows + red)[0])
    _epilogue_into(sch, block, epilogue, fused, lanes, target)
    return True


def _epilogue_into(sch: s_tir.Schedule, main: s_tir.schedule.SBlockRV, epilogue: list[SBlockInfo],
                   loop: s_tir.schedule.LoopRV, lanes: int, target: Target) -> None:
    """Compute the epilogue blocks that consume the contraction's output inside ``loop``, its outermost
    (parallel) loop, on the tile each iteration finished, while it is in cache, their innermost loop
    vectorized; the other blocks run as parallel loops of their own after it (`_parallel_vectorize`).

    A block moves only when each element it computes reads one element of the tiles (the contraction's
    output, or a moved block's), and every other buffer of the function it reads is one no block writes:
    then an iteration computes exactly the elements of its tile, from data it finished. (Moved with TVM's
    ``reverse_compute_at`` alone, a block reading nothing of the tile was computed whole in every
    iteration, racing the others; a block reading a neighbourhood would read tiles not yet computed.)"""
    tiles = {sch.get(main).writes[0].source}
    written = tiles | {sch.get(b.block_rv).writes[0].source for b in epilogue}
    apart = []
    for info in epilogue:
        stmt = sch.get(info.block_rv)
        of_tiles = [r for r in stmt.reads if r.source in tiles]
        fits = bool(of_tiles) and all(_one_element(r) for r in of_tiles) and \
            all(r.source in tiles or r.source not in written for r in stmt.reads)
        try:
            if not fits:
                raise s_tir.ScheduleError("not computed from its own elements of the tiles")
            sch.reverse_compute_at(info.block_rv, loop, preserve_unit_loops=False)
        except s_tir.ScheduleError:  # (or an index TVM cannot relate to the loop)
            apart.append(info)
            continue
        tiles.add(stmt.writes[0].source)
        inner = sch.get_loops(info.block_rv)[1:]  # below ``loop``, which is the outermost
        n = _extent(sch, inner[-1]) if inner else 1
        if 1 < n <= 4 * lanes:
            sch.vectorize(inner[-1])
        elif n > 4 * lanes and (vec := _divisor(n, [4 * lanes, 2 * lanes, lanes])) is not None:
            sch.vectorize(sch.split(inner[-1], [None, vec])[1])
    for info in apart:
        _parallel_vectorize(sch, info, target)


def _one_element(region: tvm.ir.expr.TensorRegion) -> bool:
    """Whether a block's access reads a single element per block instance."""
    return all(isinstance(r.extent, tirx.IntImm) and int(r.extent) == 1 for r in region.region)


# reduction block of a matmul: the streamed panel (KC x tile width) should stay in L1
KC = 256


def _is_einsum(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """Whether every index of the block's accesses is one of its iteration variables or a constant
    (what `pad_einsum` accepts; a convolution's ``h + kh`` is not)."""
    stmt = sch.get(info.block_rv)
    ivars = {it.var for it in info.iters}
    for region in list(stmt.reads) + list(stmt.writes):
        for r in region.region:
            if not (isinstance(r.min, tirx.IntImm) or any(r.min.same_as(x) for x in ivars)):
                return False
    return True


def _register_tile(n: int, m: int, lanes: int, accumulators: int, can_pad: bool,
                   registers: int = 32) -> tuple[int, int, int, int, int] | None:
    """(vectors per row, lanes per vector, rows, padded n, padded m) of the register tile over the
    innermost output extent ``n`` and the row extent ``m``, or None.

    Wide rows first (each broadcast row value feeds several vectors), ``rows * vectors`` about the
    accumulator budget; with a single row, wider still. The accumulators, one row's loaded vectors and
    a broadcast must fit the ``registers``: where they bound the widest tile below the budget (AVX2's
    16 registers hold 2 rows x 4 vectors, and 3 x 4 spilled and ran 1.6-2.1x slower), a narrower tile
    with more accumulators is taken (`_narrower_tile`). An ``n`` that no vector divides is padded
    (``can_pad``) to a whole number of vectors when that wastes little, else served by a part-vector
    tile (`_vector_tile`); an ``m`` that the row count does not divide is padded likewise, else the
    row count shrinks to a divisor. Padding copies the operands along the padded dim, so it needs
    enough of the other dim (`MIN_PAD_REUSE`) to pay for itself.
    """
    widths = (8, 4, 2, 1) if m == 1 else (4, 3, 2, 1)
    nv, vec, pad_n = next((k for k in widths if n % (lanes * k) == 0), None), lanes, n
    if nv is None and can_pad and n > lanes and m >= MIN_PAD_REUSE:
        padded = {k: -(-n // (lanes * k)) * lanes * k for k in widths}
        nv = next(k for k in widths if padded[k] <= n * MAX_PAD_WASTE or k == 1
                  or padded[k] <= padded[1] * MAX_WIDEN_WASTE)
        pad_n = padded[nv]
    if nv is None:
        vec = _vector_tile(n, lanes)
        if vec is None:
            return None
        nv = 1
    rows = max(1, min(16, accumulators // nv))
    fit = max(1, (registers - 1 - nv) // nv)
    if m > 1 and fit < rows:
        narrower = _narrower_tile(n, m, lanes, nv, accumulators, can_pad, registers)
        if narrower is not None and narrower[0] * narrower[2] > nv * min(fit, m):
            return narrower
        rows = fit
    if m <= rows:
        return nv, vec, m, pad_n, m
    if m % rows == 0:
        return nv, vec, rows, pad_n, m
    if can_pad and pad_n >= MIN_PAD_REUSE:
        near = range(rows, max(2, rows - 2) - 1, -1)
        best = next((r for r in near if -(-m // r) * r <= m * MAX_ROW_PAD_WASTE), None) or \
            min(near, key=lambda r: (-(-m // r) * r, -r))
        return nv, vec, best, pad_n, -(-m // best) * best
    return nv, vec, next(r for r in range(rows, 0, -1) if m % r == 0), pad_n, m


def _narrower_tile(n: int, m: int, lanes: int, widest: int, accumulators: int, can_pad: bool,
                   registers: int) -> tuple[int, int, int, int, int] | None:
    """The tile of 2 or 3 vectors per row (fewer than ``widest``) with the most accumulators that fit
    the ``registers``, then the widest; ``n`` padded to whole tiles where that wastes little
    (`MAX_PAD_WASTE`), ``m`` to whole row tiles only where that wastes almost nothing
    (`MAX_ROW_PAD_WASTE`: 128 rows as 22 tiles of 6 ran 10% slower than 64 of 2). None if no such
    width applies. On AVX2 (Zen, 1 thread, against 2 rows x 4 vectors): 1024x128 @ 128x512 1.70 ->
    1.26 ms with 4 x 3 (n padded to 528), 1024x128 @ 128x128 0.363 -> 0.340 ms with 6 x 2 (m padded
    to 1026)."""
    best = None
    for nv in (k for k in (3, 2) if k < widest):
        width = lanes * nv
        pad_n = -(-n // width) * width
        if pad_n != n and not (can_pad and m >= MIN_PAD_REUSE and pad_n <= n * MAX_PAD_WASTE):
            continue
        fit = max(1, min(16, accumulators // nv, (registers - 1 - nv) // nv))
        if m <= fit or m % fit == 0:
            rows = min(m, fit)
        elif can_pad and pad_n >= MIN_PAD_REUSE:
            near = range(fit, max(2, fit - 2) - 1, -1)
            rows = next((r for r in near if -(-m // r) * r <= m * MAX_ROW_PAD_WASTE), None) or \
                min(near, key=lambda r: (-(-m // r) * r, -r))
        else:
            rows = next(r for r in range(fit, 0, -1) if m % r == 0)
        if best is None or rows * nv > best[0] * best[2]:
            best = (nv, lanes, rows, pad_n, -(-m // rows) * rows)
    return best


# padding an output extent to whole register tiles: at most this factor more work
MAX_PAD_WASTE = 1.07
# ... or at most this factor more than whole single vectors would, for a tile of 2-4 vectors per row
# instead of 1: a 1-vector tile issues a broadcast per FMA and, 16 rows of it, reads 16 weight rows a
# page apart at once (Zen 5, 1 thread: 256x1024 @ 1024x196 0.99 -> 0.58 ms with 2 vectors, the
# columns padded to 224; 2048x1024 @ 1024x49 2.44 -> 1.52 ms with 4 vectors, 64 columns either way)
MAX_WIDEN_WASTE = 1.15
# ... and padding the rows to let a narrower tile hold more of them (`_narrower_tile`)
MAX_ROW_PAD_WASTE = 1.01


# padding one dim of a contraction copies the operand it indexes; only worth it when each copied
# element then feeds at least this many products (the extent of the other output dim)
MIN_PAD_REUSE = 32


def _vector_tile(n: int, lanes: int) -> int | None:
    """Elements of the innermost output loop one register-tile row holds (one register): a vector,
    a half or a quarter vector that divides ``n``, else all of a short loop, else the largest divisor
    of ``n`` between 4 and a vector."""
    whole = _divisor(n, [lanes, lanes // 2, lanes // 4])
    if whole is not None and whole >= 4:
        return whole
    if n <= lanes:
        return n
    return next((d for d in range(lanes, 3, -1) if n % d == 0), None)


def _last_dim_iter(region: tvm.ir.expr.TensorRegion, info: SBlockInfo) -> int | None:
    """The index of the block iter that alone indexes the region's last dim (None if not just one)."""
    if not region.region:
        return None
    used = tirx.analysis.undefined_vars(region.region[-1].min)
    found = [i for i, it in enumerate(info.iters) if any(v.same_as(it.var) for v in used)]
    return found[0] if len(found) == 1 else None


def transpose(sch: s_tir.Schedule, target: Target) -> bool:
    """An elementwise block that reads some input along another axis than it writes (a transpose,
    possibly fused with arithmetic): square tiles, so the strided reads of a tile stay in L1, the
    tiles in parallel and the writes vectorized."""
    if not all(b.is_injective() for b in normalize_prim_func(sch) or []):
        return False
    infos = _inline_all(sch)
    if len(infos) != 1 or not infos[0].is_injective():
        return False
    info = infos[0]
    stmt = sch.get(info.block_rv)
    w = _last_dim_iter(stmt.writes[0], info)
    reads = [_last_dim_iter(r, info) for r in stmt.reads]
    r = next((i for i in reads if i is not None and i != w), None)
    if w is None or r is None:
        return False
    lanes = _lanes(target, _write_dtype(sch, info.block_rv))
    loops = sch.get_loops(info.block_rv)
    tw = _divisor(_extent(sch, loops[w]), [lanes, lanes // 2, 4])
    tr = _divisor(_extent(sch, loops[r]), [lanes, lanes // 2, 4])
    if tw is None or tr is None:
        return False
    r_o, r_i = sch.split(loops[r], [None, tr])
    w_o, w_i = sch.split(loops[w], [None, tw])
    outer = [lp for i, lp in enumerate(loops) if i not in (r, w)] + [r_o, w_o]
    sch.reorder(*outer, r_i, w_i)
    if _iterations(sch, info.block_rv) >= MIN_PARALLEL_WORK:
        sch.parallel(sch.fuse(*outer))
    sch.vectorize(w_i)
    return True


def generic(sch: s_tir.Schedule, target: Target) -> bool:
    """Inline what can be inlined; parallelize and vectorize every remaining block."""
    infos = _inline_all(sch)
    if not infos:
        return False
    for info in infos:
        _parallel_vectorize(sch, info, target)
    return True


RULES: list[tuple[str, Rule]] = [("contraction", contraction), ("row_reduction", row_reduction),
                                     ("column_reduction", column_reduction), ("transpose", transpose),
                                     ("generic", generic)]


def _schedule_func(func: tirx.PrimFunc, target: Target) -> tuple[tirx.PrimFunc | None, str | None]:
    """The first rule's schedule of ``func`` and the rule's name; (None, None) if none applies."""
    for name, rule in RULES:
        sch = s_tir.Schedule(func)
        try:
            result = rule(sch, target)
        except Exception:  # noqa: BLE001 - a rule that does not fit: try the next one
            continue
        if isinstance(result, s_tir.Schedule):
            sch, result = result, True
        if result:
            return sch.mod["main"].with_attr("tirx.is_scheduled", True), name
    return None, None


def schedule_module(mod: tvm.IRModule, target: Target) -> tuple[tvm.IRModule, dict[str, str | None]]:
    """Apply the default schedules to every unscheduled PrimFunc of a legalized module.

    Returns the new module and, per PrimFunc, the rule that scheduled it (None: left as plain loops).
    """
    report: dict[str, str | None] = {}
    updates = {}
    mod = mod.clone()  # the caller keeps the unscheduled module to fall back on
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and "tirx.is_scheduled" in func.attrs and bool(func.attrs["tirx.is_scheduled"]):
            report[gv.name_hint] = "tuned"  # by the tuning database
            continue
        if relax.analysis.has_reshape_pattern(func):  # the VM turns these into views: keep them recognisable
            report[gv.name_hint] = "view"
            continue
        new, rule = _schedule_func(func, target)
        report[gv.name_hint] = rule
        if new is not None:
            updates[gv] = new
    for gv, func in updates.items():
        mod[gv] = func
    return mod, report

