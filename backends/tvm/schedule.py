"""Default CPU schedules: fast code with no tuning.

Untuned TVM CPU code is plain loop nests (about 2 GFLOP/s for a matmul). After legalization and
fusion (`relax.get_pipeline("zero")`) every PrimFunc goes through `RULES` in order; the first rule
that accepts it schedules it:

* `contraction` - one multiply-accumulate reduction block (matmul, batched matmul, conv2d): a
  register tile (rows x vector) with the reduction loops outside it, the outer tiles in parallel;
  input padding stays a loop nest of its own (its condition inside the vectorized loop would stop
  vectorization), and the elementwise epilogue is scheduled like `generic` blocks.
* `row_reduction` - softmax / layer_norm shaped funcs (reductions over the innermost dims and
  elementwise blocks sharing leading spatial axes).
* `column_reduction` - a single reduction over outer dims: the innermost output loop is vectorized
  inside the reduction loops.
* `transpose` - an elementwise block reading an input across its rows: tiled.
* `generic` - everything else: inline what can be inlined, then each block gets its leading spatial
  loops fused and run in parallel and (when it is elementwise) its innermost loop vectorized.

A rule that raises or produces nothing is skipped, so an unusual PrimFunc keeps TVM's plain (slow but
correct) loops rather than breaking the build. Functions already marked ``tirx.is_scheduled`` (e.g.
by a MetaSchedule database) are left alone.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.target import Target

__all__ = ["schedule_module", "RULES", "MIN_PARALLEL_WORK", "lanes"]

# below this many iterations a loop nest runs on one thread (a parallel launch costs microseconds)
MIN_PARALLEL_WORK = 16384
# a contraction's parallel loop should have at least this many tiles, so that threads share them evenly
MIN_PARALLEL_TASKS = 8

# a rule schedules in place and returns True, or returns a new Schedule; False/None: not this rule
Rule = Callable[[s_tir.Schedule, Target], "bool | s_tir.Schedule | None"]


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


def _row_vector(n: int, lanes: int) -> int | None:
    """How many elements of a row of ``n`` one vectorized step takes in the row rule: the largest divisor
    of ``n`` up to four vectors that is a whole number of quarter vectors (rows of 1000 floats on
    AVX-512: 40, two zmm and a ymm; 768: 64), or None when no such divisor exists (a prime like 197)."""
    quarter = max(lanes // 4, 1)
    return next((d for d in range(min(n, 4 * lanes), quarter - 1, -1) if n % d == 0 and d % quarter == 0), None)


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
    enough work."""
    loops = sch.get_loops(info.block_rv)
    if not loops:
        return
    big = _iterations(sch, info.block_rv) >= MIN_PARALLEL_WORK
    kinds = info.dom_kind()
    lead = len(kinds) - len(kinds.lstrip("S"))
    if _elementwise(sch, info):
        lanes = _lanes(target, _write_dtype(sch, info.block_rv))
        steps = [lanes * 4, lanes * 2, lanes, lanes // 2]
        n = _extent(sch, loops[-1])
        vec, tail = _divisor(n, steps), 1
        while vec is None and tail < len(loops) and _contiguous_tail(sch, info, tail + 1):
            tail += 1  # rows of 28 (or 14, 7): no vector divides them, but 28 x 28 = 49 vectors
            n *= _extent(sch, loops[-tail])
            vec = _divisor(n, steps)
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
    if big and lead > 0:
        sch.parallel(_one_loop(sch, loops[:lead]))


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
    t = max(candidates, key=lambda i: int(iters[i].dom)) if candidates else None
    n, m = int(iters[v].dom), int(iters[t].dom) if t is not None else 1
    tile = _register_tile(n, m, lanes, _accumulators(target), _is_einsum(sch, main), _registers(target))
    if tile is None:
        return False
    nv, vec, ti, pad_n, pad_m = tile
    if pad_n > n or pad_m > m:
        factors = [1] * len(iters)
        factors[v] = pad_n if pad_n > n else 1
        if t is not None and pad_m > m:
            factors[t] = pad_m
        sch.pad_einsum(main.block_rv, factors)
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
    for info in normalize_prim_func(sch) or []:
        if info.name != main.name and not info.name.endswith("_init") and _elementwise(sch, info):
            _parallel_vectorize(sch, info, target)
    return True


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
        best = min(range(max(2, rows - 2), rows + 1), key=lambda r: (-(-m // r) * r, -r))
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


def _contiguous_in(region: tvm.ir.expr.TensorRegion, var: tirx.Var) -> bool:
    """Whether ``var`` indexes only the last (contiguous) dimension of ``region``."""
    dims = [tirx.analysis.undefined_vars(r.min) for r in region.region]
    return any(v.same_as(var) for v in dims[-1]) and not any(v.same_as(var) for d in dims[:-1] for v in d)


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
    loops = sch.get_loops(rest[-1])
    row_loops = [_one_loop(sch, loops[:rows])]
    for b in reversed(rest[:-1]):
        sch.compute_at(b, row_loops[0])
    for b in infos[:lead]:
        loops = sch.get_loops(b.block_rv)
        row = _one_loop(sch, loops[:rows])
        for rf in reversed(partials.get(b.name, [])):
            sch.compute_at(rf, row)
        row_loops.append(row)
    for row in row_loops:
        if parallel:
            sch.parallel(row)  # (before decompose_reduction, which leaves blocks parallel refuses)
    for block in [b for row in row_loops for b in sch.get_child_blocks(row)]:
        inner = sch.get_loops(block)[1:]
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
    if outer and _iterations(sch, info.block_rv) >= MIN_PARALLEL_WORK:
        sch.parallel(_one_loop(sch, outer))
    sch.vectorize(inner)
    sch.decompose_reduction(info.block_rv, reduce[0])
    return True


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
