"""Default schedules of reductions: over the innermost dims with their elementwise neighbours
(`row_reduction`: softmax, layer_norm, RMSNorm) and over outer dims (`column_reduction`)."""

from __future__ import annotations

import math

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.target import Target

from .blocks import (MIN_PARALLEL_WORK, _contiguous_in, _divisor, _extent, _first_divided, _fuse_undivided,
                     _inline_all, _iterations, _lanes, _one_loop, _region_vars, _write_dtype)


def _row_vector(n: int, lanes: int) -> int | None:
    """How many elements of a row of ``n`` one vectorized step takes in the row rule: the largest divisor
    of ``n`` up to four vectors that is a whole number of quarter vectors (rows of 1000 floats on
    AVX-512: 40, two zmm and a ymm; 768: 64), or None when no such divisor exists (a prime like 197)."""
    quarter = max(lanes // 4, 1)
    return next((d for d in range(min(n, 4 * lanes), quarter - 1, -1) if n % d == 0 and d % quarter == 0), None)



_ROW_REDUCTION = dl.cpu.Reduction()


def _reduces_innermost(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """Whether the block's reduction loops index only the innermost (trailing) dims of what it reads."""
    rvars = [it.var for it in info.iters if it.kind == "R"]
    stmt = sch.get(info.block_rv)
    out = stmt.writes[0].source
    for region in stmt.reads:
        if region.source.same_as(out):
            continue
        dims = [tirx.analysis.undefined_vars(d.min) for d in region.region]
        uses = [any(v.same_as(r) for v in d for r in rvars) for d in dims if d]  # constant dims: no matter
        if True in uses and not all(uses[uses.index(True):]):
            return False
    return True


def row_reduction(sch: s_tir.Schedule, target: Target) -> bool | s_tir.Schedule | None:
    """Reductions over the innermost dims with their elementwise neighbours (softmax, layer_norm,
    RMSNorm), in parallel over the rows. Each reduction is split into vector-wide partial results
    (`rfactor`) that run vectorized, folded to 4 in vector steps (`_fold_lanes`), then combined;
    elementwise blocks are vectorized (in steps of `_row_vector`; a row no step divides, such as 197, as
    whole vectors and a scalar tail); epilogues (the user's scale and shift) inlined. The leading blocks
    that make one value per row (all of layer_norm's but the output: sum, mean, sum of squared
    deviations; softmax's max) are each a pass over all rows of its own; the rest run under one loop
    over the rows, so that a row of an intermediate (softmax's exponentials, which feed the sum and the
    output) stays in L1 rather than going to memory. A pass is one short dependency chain per row, so the
    CPU runs ahead into the next rows' loads; under one loop per row, a row's mean, variance and output
    wait on each other and the loads stall (hand-written layer_norm kernels on Zen 4, 2048x1024, five
    runs: 0.62-0.70 ms in passes, 0.66-0.98 row by row; torch.compile, which makes passes too,
    0.83-0.93; softmax's max as a pass: 4-7% faster than row by row).

    A reduction over a row no step divides stays a scalar chain unless its producer split it (vmath's
    softmax and layer_norm do). Where that does not apply, dlight's CPU reduction rule. (Over outer dims
    either would recompute each reduction per output row: not this rule.)"""
    infos = normalize_prim_func(sch) or []
    if not all(_reduces_innermost(sch, b) for b in infos if b.is_reduction()):
        return None
    original = sch.mod["main"]
    try:
        if _rows(sch, target):
            return True
    except Exception:  # noqa: BLE001 - a shape this rule does not cover
        pass
    return _ROW_REDUCTION.apply(original, target, False)


def _rows(sch: s_tir.Schedule, target: Target) -> bool:
    infos = normalize_prim_func(sch) or []
    reductions = [b for b in infos if b.is_reduction()]
    if not reductions:
        return False
    fed = {r.source for b in reductions for r in sch.get(b.block_rv).reads}
    # a block that feeds a reduction keeps its buffer (a row of it): inlined, it would be recomputed
    # by every consumer (softmax's exp by the sum and by the division)
    keep = [b for b in infos if sch.get(b.block_rv).writes[0].source in fed]
    infos = _inline_all(sch, keep=keep)
    rows = min(len(b.dom_kind()) - len(b.dom_kind().lstrip("S")) for b in infos if b.is_reduction())
    extents = [int(it.dom) for it in infos[-1].iters[:rows]]
    if rows == 0 or any([int(it.dom) for it in b.iters[:rows]] != extents for b in infos):
        return False
    lanes = _lanes(target, "float32")
    parallel = _iterations(sch, infos[-1].block_rv) >= MIN_PARALLEL_WORK
    divided = min(_first_divided(sch, b) for b in infos)  # the row loops are fused up to it (`_fuse_undivided`)
    # the leading blocks that write one value per row (layer_norm's all, softmax's max): a pass each (see above)
    lead = next((i for i, b in enumerate(infos[:-1]) if sum(1 for it in b.iters if it.kind == "S") != rows),
                len(infos) - 1)
    partials = {}  # rfactor first: it wants the reduction's loops to lead their nest
    for b in infos:
        inner = sch.get_loops(b.block_rv)[rows:]
        n = math.prod(_extent(sch, lp) for lp in inner)
        vec = _row_vector(n, lanes) if _write_dtype(sch, b.block_rv) == "float32" else None
        if b.is_reduction() and vec is not None and vec < n:
            k = _one_loop(sch, inner)
            rf = sch.rfactor(sch.split(k, [None, vec])[1], 0)  # rf[lane] over the row, then over the lanes
            partials[b.name] = [rf] + _fold_lanes(sch, b.block_rv, vec, lanes)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))  # in program order: each rfactor block before its own
    rest = blocks[lead + sum(len(partials.get(b.name, [])) for b in infos[:lead]):]
    row_loops = [_fuse_undivided(sch, sch.get_loops(rest[-1])[:rows], divided)]  # (parallel loop, row loops)
    for b in reversed(rest[:-1]):
        sch.compute_at(b, row_loops[0][1][-1])
    for b in infos[:lead]:
        row_loops.append(_fuse_undivided(sch, sch.get_loops(b.block_rv)[:rows], divided))
        for rf in reversed(partials.get(b.name, [])):
            sch.compute_at(rf, row_loops[-1][1][-1])
    for par, _ in row_loops:
        if parallel:
            sch.parallel(par)  # (before decompose_reduction, which leaves blocks parallel refuses)
    for row, block in [(r, b) for _, r in row_loops for b in sch.get_child_blocks(r[-1])]:
        inner = sch.get_loops(block)[len(row):]
        if not inner or sch.get(block).init is not None or _write_dtype(sch, block) != "float32":
            continue
        k = _one_loop(sch, inner)
        n = _extent(sch, k)
        vec = _row_vector(n, lanes)
        if vec is None and n > lanes:  # no step divides the row (197): whole vectors, then a scalar tail
            n = n - n % lanes
            k = sch.loop_partition(k, [n, None])[0]
            vec = _row_vector(n, lanes)
        if vec is not None:
            if vec < n:
                k = sch.split(k, [None, vec])[1]
            sch.vectorize(k)
    for rf in [rf for group in partials.values() for rf in group]:
        k_i, k_o = sch.get_loops(rf)[-2:]  # compute_at made the loops in the rf block's iter order: lane first
        sch.reorder(k_o, k_i)
        sch.vectorize(k_i)
        sch.vectorize(sch.get_loops(sch.decompose_reduction(rf, k_o))[-1])
    return True


def _fold_lanes(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, width: int, lanes: int) -> list:
    """Fold a reduction over ``width`` partial results (an rfactor's write-back ``block``) in vector
    steps: first to one vector of ``lanes``, then to 4, each step an rfactor block of its own, so that
    only 4 partials are left to a scalar chain. Without it the write-back is one chain of dependent
    scalar operations (64 for a 4-vector partial sum: some 200 cycles a row, on the critical path
    between a softmax's or layer_norm's passes). Returns the new rfactor blocks."""
    folds = []
    for step in (lanes, 4):
        if width <= step or width % step:
            continue
        lane = sch.get_loops(block)[-1]
        folds.append(sch.rfactor(sch.split(lane, [None, step])[1], 0))
        width = step
    return folds


def column_reduction(sch: s_tir.Schedule, target: Target) -> bool:
    """One reduction block over outer dims (``y[a, c] = sum_b x[a, b, c]``): the innermost spatial loop
    moves inside the reduction loops and is vectorized; the other spatial loops run in parallel."""
    if sum(1 for b in normalize_prim_func(sch) or [] if not b.is_injective()) != 1:
        return False
    infos = _inline_all(sch)
    if len(infos) != 1 or not infos[0].is_reduction() or _reduces_innermost(sch, infos[0]):
        return False
    info = infos[0]
    kinds = info.dom_kind()
    if "O" in kinds or "S" not in kinds or _write_dtype(sch, info.block_rv) == "bfloat16":
        return False  # (TVM cannot lower a vectorized bfloat16 accumulation)
    inner = [it.var for it, k in zip(info.iters, kinds) if k == "S"][-1]
    stmt = sch.get(info.block_rv)
    if not all(_contiguous_in(r, inner) for r in stmt.reads if inner in _region_vars(r)):
        return False
    loops = sch.get_loops(info.block_rv)
    spatial = [lp for lp, k in zip(loops, kinds) if k == "S"]
    reduce = [lp for lp, k in zip(loops, kinds) if k == "R"]
    lanes = _lanes(target, _write_dtype(sch, info.block_rv))
    n = _extent(sch, spatial[-1])
    vec = _divisor(n, [lanes * 2, lanes, lanes // 2]) or (n if n <= lanes * 2 else None)
    if vec is None:
        return False
    outer = spatial[:-1]
    if vec < n:
        s_o, s_i = sch.split(spatial[-1], [None, vec])
        outer, inner = outer + [s_o], s_i
    else:
        inner = spatial[-1]
    sch.reorder(*outer, *reduce, inner)
    if outer and _iterations(sch, info.block_rv) >= MIN_PARALLEL_WORK:  # (outer: the spatial iterators in order)
        divided = sum(1 for i, k in enumerate(kinds) if k == "S" and i < _first_divided(sch, info))
        sch.parallel(_fuse_undivided(sch, outer, divided)[0])
    sch.vectorize(inner)
    sch.decompose_reduction(info.block_rv, reduce[0])
    return True
