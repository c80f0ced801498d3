"""Building blocks of the default CPU schedules (`schedule`, `reductions`): the target's vector width
and registers, what a block reads and writes, inlining, and the parallel/vectorized loop nest of an
elementwise block."""

from __future__ import annotations

import math
from typing import Sequence

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.target import Target

# below this many iterations a loop nest runs on one thread (a parallel launch costs microseconds)
MIN_PARALLEL_WORK = 16384
# a contraction's parallel loop should have at least this many tiles, so that threads share them evenly
MIN_PARALLEL_TASKS = 8


# x86 vector widths by the widest vector extension the target has (TVM 0.27's llvm_get_vector_width
# answers 512 for every x86 CPU, AVX2-only and SSE-only ones included)
_X86_VECTOR_BITS = (("avx512f", 512), ("avx", 256), ("sse2", 128))


def _vector_bits(target: Target) -> int:
    """The CPU's vector width in bits: on x86 from the target's features (AVX-512 512, AVX/AVX2 256,
    SSE2 128), elsewhere as LLVM reports it (256 when LLVM does not say)."""
    try:
        has = tvm.target.codegen.target_has_features
        bits = next((b for feature, b in _X86_VECTOR_BITS if has(feature, target)), 0)
        if bits:
            return bits
        width = int(tvm.target.codegen.llvm_get_vector_width(target))
    except Exception:  # noqa: BLE001 - an unknown CPU
        width = 0
    return width if width > 0 else 256


def lanes(target: Target, dtype: str) -> int:
    """Vector lanes of ``dtype`` on ``target`` (at least 4)."""
    return max(4, _vector_bits(target) // max(tvm.DataType(dtype).bits, 8))


_lanes = lanes


def _accumulators(target: Target) -> int:
    """Vector registers a contraction's register tile may hold: three quarters of the register file
    (32 registers with AVX-512, 16 with AVX2), leaving the rest for loads and broadcasts."""
    return 24 if _vector_bits(target) >= 512 else 12


def _registers(target: Target) -> int:
    """Vector registers of the CPU: 32 with AVX-512, 16 with AVX/AVX2 and SSE."""
    return 32 if _vector_bits(target) >= 512 else 16


def _extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int:
    return int(sch.get(loop).extent)


def _divisor(n: int, candidates: Sequence[int]) -> int | None:
    """The first candidate that divides ``n`` (and is smaller than or equal to it)."""
    return next((c for c in candidates if c <= n and n % c == 0), None)


def _region_vars(region: tvm.ir.expr.TensorRegion) -> set[tirx.Var]:
    """The variables the index expressions of a block's read/write region use."""
    return {v for r in region.region for v in tirx.analysis.undefined_vars(r.min)}


def _write_dtype(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> str:
    return str(sch.get(block).writes[0].source.dtype)


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------

_has_if_then_else = tvm.get_global_func("s_tir.schedule.HasIfThenElse")
_FIELDS = ("a", "b", "value", "args", "condition", "true_value", "false_value", "indices")
# inlining copies a block's expression into every place that loads its result: only small ones may
# be copied more than once (a chain of `where(a > b, a, b)` would otherwise grow exponentially)
MAX_COPIED_EXPR = 12


def _walk(expr: object):
    """Every node of a TIR expression (the fields a BufferStore value can hold)."""
    yield expr
    for f in _FIELDS:
        sub = getattr(expr, f, None)
        if sub is None:
            continue
        for item in (sub if isinstance(sub, (list, tuple, tvm.ir.Array)) else [sub]):
            if not isinstance(item, (int, float, str)):
                yield from _walk(item)


def _value(sch: s_tir.Schedule, block: SBlockInfo) -> object:
    """The expression a block stores."""
    body = sch.get(block.block_rv).body
    return body.value if isinstance(body, tirx.BufferStore) else body


def _loads(expr: object, buffer: tirx.Buffer) -> int:
    """How many times ``expr`` loads from ``buffer``."""
    return sum(1 for e in _walk(expr) if isinstance(e, tvm.ir.expr.TensorLoad) and e.source.same_as(buffer))


def _cheap_to_inline(sch: s_tir.Schedule, producer: SBlockInfo, blocks: Sequence[SBlockInfo]) -> bool:
    """Whether inlining ``producer`` into its consumers (either way) copies little: its result is
    loaded once, or its expression is small."""
    out = sch.get(producer.block_rv).writes[0].source
    copies = sum(_loads(_value(sch, b), out) for b in blocks if b.name != producer.name)
    return copies <= 1 or sum(1 for _ in _walk(_value(sch, producer))) <= MAX_COPIED_EXPR


def _elementwise(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """An injective block that is no reduction, not even over a loop of extent 1 (which
    normalization hides, and which TVM's reverse_compute_inline then mishandles: the consumer's
    epilogue lands in the reduction's init and update both)."""
    return info.is_injective() and sch.get(info.block_rv).init is None


def _inline_all(sch: s_tir.Schedule, keep: Sequence[SBlockInfo] = (), keep_pads: bool = False) -> list[SBlockInfo]:
    """Inline every injective block that can be inlined cheaply (into its consumers, else its consumer
    into it); return the blocks that remain, in program order. ``keep_pads`` keeps blocks with a
    condition (padding): inlined into a vectorized loop, the condition stops vectorization."""
    keep_names = {b.name for b in keep}
    changed = True
    while changed:  # a pass per normalization (which is costly on big fused functions)
        changed = False
        blocks = list(normalize_prim_func(sch) or [])
        for b in list(blocks):
            if b.name in keep_names or not _elementwise(sch, b):
                continue
            if keep_pads and _has_if_then_else(sch.get(b.block_rv)):
                continue
            writers = {sch.get(w.block_rv).writes[0].source: w for w in blocks if w is not b}
            producers = [writers[r.source] for r in sch.get(b.block_rv).reads if r.source in writers]
            for inline, cheap in ((sch.compute_inline, lambda: _cheap_to_inline(sch, b, blocks)),
                                  (sch.reverse_compute_inline,
                                   lambda: len(producers) == 1 and _elementwise(sch, producers[0])
                                   and _cheap_to_inline(sch, producers[0], blocks))):
                if not cheap():
                    continue
                try:
                    inline(b.block_rv)
                except Exception:  # noqa: BLE001 - not inlinable this way
                    continue
                blocks.remove(b)
                changed = True
                break
    return normalize_prim_func(sch) or []


def _one_loop(sch: s_tir.Schedule, loops: Sequence[s_tir.schedule.LoopRV]) -> s_tir.schedule.LoopRV:
    """``loops`` (adjacent, outermost first) fused into one; a single loop as it is."""
    return sch.fuse(*loops) if len(loops) > 1 else loops[0]


def _fuse_undivided(sch: s_tir.Schedule, loops: Sequence[s_tir.schedule.LoopRV],
                    first: int) -> tuple[s_tir.schedule.LoopRV, list[s_tir.schedule.LoopRV]]:
    """``loops`` (adjacent, outermost first) fused up to the ``first`` one, whose iterator the blocks under
    them divide (`_first_divided`: a TVM bug), or the outermost alone: (the loop to run in parallel, the
    loops left, outermost first). Unit loops (batch 1) above the divided one stay apart: it runs in
    parallel alone."""
    taken = max(min(len(loops), first), 1)
    if taken < len(loops) and all(_extent(sch, lp) == 1 for lp in loops[:taken]):
        return loops[taken], list(loops)
    fused = _one_loop(sch, loops[:taken])
    return fused, [fused, *loops[taken:]]


def _iterations(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> int:
    """How many times the block's body runs."""
    return math.prod(_extent(sch, lp) for lp in sch.get_loops(block))


def _contiguous_tail(sch: s_tir.Schedule, info: SBlockInfo, m: int) -> bool:
    """Whether the block's last ``m`` loops can be fused into one vectorized loop: every buffer it reads
    or writes either does not depend on them (a scalar, a per-row value) or is indexed by exactly those
    iterators in its last ``m`` dims, over the whole of each. Then the fused loop walks each such buffer
    contiguously (a broadcast or a strided read would become a gather)."""
    tail = [it.var for it in info.iters[-m:]]
    extents = [int(it.dom) for it in info.iters[-m:]]
    stmt = sch.get(info.block_rv)
    for region in list(stmt.reads) + list(stmt.writes):
        dims = region.region
        uses = [any(v.same_as(t) for v in tirx.analysis.undefined_vars(d.min) for t in tail) for d in dims]
        if not any(uses):
            continue
        if len(dims) < m or any(uses[:-m]):
            return False
        for d, var, size, dim in zip(dims[-m:], tail, extents, region.source.shape[-m:]):
            if not (isinstance(d.min, tirx.Var) and d.min.same_as(var) and int(d.extent) == 1
                    and isinstance(dim, tirx.IntImm) and int(dim) == size):
                return False
    return True


def _parallel_vectorize(sch: s_tir.Schedule, info: SBlockInfo, target: Target) -> None:
    """Vectorize the innermost loop of an elementwise block (fused with the loops outside it while no vector
    step divides it and the fused loop walks every buffer contiguously, `_contiguous_tail`); fuse the
    leading spatial loops (the others of an elementwise block) and run them in parallel when there is
    enough work, but not past a loop the block divides (`_first_divided`: a TVM bug). The innermost loops
    of an elementwise block that reads by ``h // 2`` and ``h % 2`` are split by 2 and unrolled (`_strided`)."""
    loops = sch.get_loops(info.block_rv)
    if not loops:
        return
    original = list(loops)
    big = _iterations(sch, info.block_rv) >= MIN_PARALLEL_WORK
    kinds = info.dom_kind()
    lead = len(kinds) - len(kinds.lstrip("S"))
    strided: dict[int, int] = {}
    if _elementwise(sch, info):
        lanes = _lanes(target, _write_dtype(sch, info.block_rv))
        steps = [lanes * 4, lanes * 2, lanes, lanes // 2]
        n = _extent(sch, loops[-1])
        vec, tail = _divisor(n, steps), 1
        while vec is None and tail < len(loops) and _contiguous_tail(sch, info, tail + 1):
            tail += 1  # rows of 28 (or 14, 7): no vector divides them, but 28 x 28 = 49 vectors
            n *= _extent(sch, loops[-tail])
            vec = _divisor(n, steps)
        if vec is None:  # (vectorized, the innermost loops are not split)
            strided = _strided(sch, info)
        if vec is not None and tail > 1:
            loops = loops[:-tail] + [sch.fuse(*loops[-tail:])]
        if vec is not None and vec < n:
            rest, inner = sch.split(loops[-1], [None, vec])
            loops = loops[:-1] + [rest]
            sch.vectorize(inner)
        else:
            if vec is not None:
                sch.vectorize(loops[-1])
            loops = loops[:-1]
        lead = len(loops)
    taken = 0  # loops [0, taken) are fused into the parallel loop (or are unit loops above it)
    if big and lead > 0:
        taken = max(min(lead, _first_divided(sch, info)), 1)
        if taken < lead and all(_extent(sch, lp) == 1 for lp in loops[:taken]):
            taken += 1  # unit loops above a divided one (batch 1): that one alone in parallel, not fused
            sch.parallel(loops[taken - 1])
        else:
            sch.parallel(_one_loop(sch, loops[:taken]))
    for i, k in strided.items():
        if i < taken:
            continue
        outer, inner = sch.split(original[i], [None, k])
        sch.unroll(inner)
        if i == len(original) - 1 and not _guarded(sch, info):
            _vector_across(sch, outer, inner, steps)


def _guarded(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """Whether the block's value holds an ``if_then_else`` (a guarded load): TVM scalarizes a vectorized
    loop whose guard differs between lanes."""
    return any(isinstance(e, tvm.ir.expr.Call) and str(e.op.name).endswith("if_then_else")
               for e in _walk(_value(sch, info)))


def _vector_across(sch: s_tir.Schedule, outer: s_tir.schedule.LoopRV, inner: s_tir.schedule.LoopRV,
                   steps: Sequence[int]) -> None:
    """Vectorize ``outer``, the loop over whole strides of the innermost loop split by `_strided`, with the
    unrolled ``inner`` moved outside it: each unrolled copy reads ``w // k`` contiguously and ``w`` by a
    stride of k (a gather), and its selects become blends (scalar, they were branches mispredicted on
    random data: LeNet-5's first max-pool gradient 3.5 -> 0.13 ms)."""
    sch.reorder(inner, outer)
    n = _extent(sch, outer)
    vec = _divisor(n, steps)
    if vec is not None and vec < n:
        sch.vectorize(sch.split(outer, [None, vec])[1])
    elif vec is not None or n <= steps[0]:
        sch.vectorize(outer)


def _strided(sch: s_tir.Schedule, info: SBlockInfo) -> dict[int, int]:
    """The block's innermost two iterators that its body uses under floordiv and floormod only as
    ``v // k`` and ``v % k`` (of ``v`` plus or minus a constant), with one k of 2-4 dividing v's extent:
    position -> k.

    The gradients of strided windows (a max-pool's, through interior pads) read the pooled tensors at
    ``h // 2`` and choose by ``h % 2``; split as ``h = 2 * ho + a`` with ``a`` unrolled, each copy of
    the body has constant offsets, its conditions fold away and its index is ``ho`` (the gradient of
    LeNet-5's first max-pool, 128x6x28x28: from 18% of its training step's profile to 13%)."""
    found: dict[int, set[int]] = {}
    for e in _divisions(sch, info):
        for i, it in enumerate(info.iters):
            if any(it.var.same_as(v) for v in tirx.analysis.undefined_vars(e.a)):
                k = int(e.b) if isinstance(e.b, tirx.IntImm) and _shifted(e.a, it.var) else 0
                found.setdefault(i, set()).add(k)
    inner = len(info.iters) - 2  # only the innermost two loops: an outer one unrolled copies whole loop nests
    return {i: k for i, ks in found.items() for k in ks
            if i >= inner and len(ks) == 1 and 2 <= k <= 4 and int(info.iters[i].dom) % k == 0}


def _divisions(sch: s_tir.Schedule, info: SBlockInfo) -> list:
    """The floordiv and floormod nodes of the block's body (its indices, conditions and value)."""
    return [e for e in _walk(sch.get(info.block_rv).body) if isinstance(e, (tirx.FloorDiv, tirx.FloorMod))]


def _shifted(expr: object, var: tirx.Var) -> bool:
    """Whether ``expr`` is ``var``, ``var + c`` or ``var - c`` for a constant c."""
    if isinstance(expr, tirx.Var):
        return expr.same_as(var)
    return (isinstance(expr, (tirx.Add, tirx.Sub)) and isinstance(expr.b, tirx.IntImm)
            and isinstance(expr.a, tirx.Var) and expr.a.same_as(var))


def _first_divided(sch: s_tir.Schedule, info: SBlockInfo) -> int:
    """The position of the block's first iterator that its body uses under a floordiv or floormod (an
    index ``(h - 1) // 2`` of an interior pad, a condition ``h % 2 < 1``); the number of iterators if none.

    Loops up to it may be fused, not beyond: TVM 0.27's FlattenBuffer mis-simplifies such an index of a
    fused loop's ``fused % 28`` under a guard ``1 <= fused % 28`` (the load ``A[n, c, (h - 1) // 2, w // 2]``
    became ``A[(fused + 1) // 2 * 14 + w // 2 - 210]``, off by a whole 14 x 14 plane: a wrong answer, and
    a read before the buffer for the first plane). Kept apart, ``h`` stays a loop variable and the index
    comes out right."""
    used = [v for e in _divisions(sch, info) for v in tirx.analysis.undefined_vars(e)]
    return next((i for i, it in enumerate(info.iters) if any(it.var.same_as(v) for v in used)), len(info.iters))


def _contiguous_in(region: tvm.ir.expr.TensorRegion, var: tirx.Var) -> bool:
    """Whether ``var`` indexes only the last (contiguous) dimension of ``region``."""
    dims = [tirx.analysis.undefined_vars(r.min) for r in region.region]
    return any(v.same_as(var) for v in dims[-1]) and not any(v.same_as(var) for d in dims[:-1] for v in d)
