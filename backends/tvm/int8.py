"""int8 contractions and convolutions on x86 CPUs with AVX-512 VNNI: a tensorized GEMM kernel.

LLVM never turns an int8 loop nest into ``vpdpbusd`` by itself (about 20 GOP/s per core here), so the
`contract_wide` and `conv2d_wide` lowerings call a TIR kernel that is scheduled by hand: a register tile
of ``rows x (cols x 16)`` int32 accumulators, each 16-lane vector updated by one ``vpdpbusd`` (16 lanes x
4 products). The instruction multiplies *unsigned* bytes by signed ones, so the int8 activations are
shifted by +128 to uint8 on the way in and ``128 * sum_k w[n, k]`` is subtracted from the result:

    sum_k (a[m, k] + 128) * w[n, k] - 128 * sum_k w[n, k] = sum_k a[m, k] * w[n, k]   (exactly)

The weight is packed as ``(N/16, K/4, 16, 4)`` (one 64-byte vector per 16 columns x 4 k); a constant
weight is packed, and its column sums taken, at compile time. A convolution is an im2col of the NHWC
image (shifted, padded with 128, i.e. int8 zero) followed by the same GEMM.

TVM's own VNNI intrinsic passes ``i32`` vectors where LLVM >= 21 wants ``<64 x i8>``; `VNNI_INTRIN` is
the same description with an implementation that LLVM 22 accepts. Where the CPU lacks VNNI, or the
contraction has batch dims or groups, the lowerings return None and the generic int32 loops run.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import tvm
from tvm import relax, s_tir, te
from tvm.relax import op as R
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from nir.ir import Eqn

from .intrinsics import x86_intrinsics
from .named import Named, _to_image, bind, permute, reshape

__all__ = ["VNNI_INTRIN", "has_vnni", "gemm_kernel", "pack_weight", "contract_wide", "conv2d_wide"]

VNNI_INTRIN = "nir_dot_16x4_u8i8i32_vnni"
SHIFT = 128  # int8 -> uint8
ROWS = 4     # register tile: ROWS x (COLS x 16) int32 accumulators (16 of the 32 zmm registers)
COLS = 4


@T.prim_func(s_tir=True)
def _vnni_impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
               C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"), a, B.vload([0, 0], dtype="int8x64"), dtype="int32x16")


@functools.lru_cache(maxsize=None)
def _register_vnni() -> str:
    """Register `VNNI_INTRIN` (TVM's description, nir's implementation) on first use: importing TVM's x86
    intrinsics costs seconds, which a process that never runs an int8 kernel should not pay."""
    TensorIntrin.register(VNNI_INTRIN, x86_intrinsics().dot_product_16x4_u8i8i32_desc, _vnni_impl)
    return VNNI_INTRIN


def has_vnni(target: tvm.target.Target | None) -> bool:
    """Whether ``target`` is a CPU with AVX-512 VNNI (LLVM's view of its ``mcpu``)."""
    if target is None or target.kind.name != "llvm":
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["avx512vnni"], target))
    except Exception:  # noqa: BLE001 - a CPU LLVM does not know
        return False


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@functools.lru_cache(maxsize=None)
def gemm_kernel(m: int, n: int, k: int) -> tvm.tirx.PrimFunc:
    """``C[m, n] = sum_k A[m, k] * W[n, k]`` (uint8 x int8 -> int32) with W packed as (n/16, k/4, 16, 4);
    ``m`` a multiple of `ROWS`, ``n`` of 16, ``k`` of 4. Scheduled, tensorized, marked opaque so that
    fusion leaves it alone."""
    cols = next(c for c in (COLS, 2, 1) if (n // 16) % c == 0)
    a = te.placeholder((m, k), "uint8", name="A")
    w = te.placeholder((n // 16, k // 4, 16, 4), "int8", name="W")
    r = te.reduce_axis((0, k), name="k")
    c = te.compute((m, n), lambda i, j: te.sum(a[i, r].astype("int32") * w[j // 16, r // 4, j % 16, r % 4]
                                               .astype("int32"), axis=r), name="C")
    sch = s_tir.Schedule(te.create_prim_func([a, w, c]))
    block = sch.get_sblock("C")
    i, j, kk = sch.get_loops(block)
    i0, i1 = sch.split(i, [None, ROWS])
    j0, j1, j2 = sch.split(j, [None, cols, 16])
    k0, k1 = sch.split(kk, [None, 4])
    sch.reorder(i0, j0, k0, i1, j1, j2, k1)
    sch.parallel(sch.fuse(i0, j0))
    init = sch.decompose_reduction(block, k0)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(j2, _register_vnni())
    sch.unroll(i1)
    sch.unroll(j1)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True).with_attr("op_pattern", 8)  # 8: opaque


def pack_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An int8 ``(n, k)`` weight packed as ``(n/16, k/4, 16, 4)`` (zero-padded) and ``128 * sum_k w``."""
    n, k = w.shape
    padded = np.zeros((_round_up(n, 16), _round_up(k, 4)), np.int8)
    padded[:n, :k] = w
    packed = padded.reshape(padded.shape[0] // 16, 16, padded.shape[1] // 4, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(packed), SHIFT * w.astype(np.int32).sum(axis=1, dtype=np.int32)


def _constant(x: Named) -> np.ndarray | None:
    """The value of ``x`` if it is a constant bound in the current block (a weight), else None."""
    bound = relax.BlockBuilder.current().lookup_binding(x.expr) if isinstance(x.expr, relax.Var) else x.expr
    return bound.value.numpy() if isinstance(bound, tvm.ir.expr.Constant) else None


def _weight(w: Named, free: Sequence[str], over: Sequence[str]) -> tuple[relax.Expr, relax.Expr, int, int]:
    """The packed weight and ``128 * column sums`` of ``w`` as an (n = free, k = over) matrix: computed
    now for a constant, as Relax ops otherwise. Also n and k."""
    sizes = w.sizes
    n, k = math.prod(sizes[d] for d in free), math.prod(sizes[d] for d in over)
    value = _constant(w)
    if value is not None:
        matrix = np.transpose(value, [w.names.index(d) for d in (*free, *over)]).reshape(n, k)
        packed, sums = pack_weight(matrix)
        return relax.const(packed, "int8"), relax.const(sums, "int32"), n, k
    matrix = reshape(permute(w, (*free, *over)), [("_n", n), ("_k", k)]).expr
    padded = R.nn.pad(matrix, [0, _round_up(n, 16) - n, 0, _round_up(k, 4) - k], pad_value=0)
    packed = R.permute_dims(R.reshape(padded, [_round_up(n, 16) // 16, 16, _round_up(k, 4) // 4, 4]), [0, 2, 1, 3])
    sums = R.multiply(R.sum(R.astype(matrix, "int32"), axis=[1]), relax.const(SHIFT, "int32"))
    return packed, sums, n, k


def _gemm(rows_u8: relax.Expr, m: int, packed: relax.Expr, sums: relax.Expr, n: int) -> relax.Expr:
    """``rows_u8`` (m_pad, k_pad) x packed weight -> int32 (m, n), the +128 shift taken back out."""
    bb = relax.BlockBuilder.current()
    rows_u8 = rows_u8 if isinstance(rows_u8, relax.Var) else bb.emit(rows_u8)
    mp, kp = (int(s) for s in rows_u8.ty.shape)
    np_ = _round_up(n, 16)
    kernel = gemm_kernel(mp, np_, kp)
    name = f"nir_int8_gemm_{mp}x{np_}x{kp}"
    gv = bb.add_func(kernel.with_attr("global_symbol", name), name)
    y = bb.emit(R.call_tir(gv, [rows_u8, packed], relax.TensorType((mp, np_), "int32")))
    if (mp, np_) != (m, n):
        y = bb.emit(R.strided_slice(y, [0, 1], [0, 0], [m, n]))
    return R.subtract(y, sums)


def contract_wide(eqn: Eqn, a: Named, b: Named) -> Named | None:
    """int8 x int8 -> int32 `contract_wide` through the VNNI GEMM (the constant operand, if any, is the
    packed one); None where it does not apply (no VNNI, other dtypes, batch dims, no elements)."""
    over = tuple(eqn.kwargs["over"])
    if a.dtype != "int8" or set(a.names) & set(b.names) - set(over) or not has_vnni(tvm.target.Target.current(True)):
        return None
    if 0 in a.shape or 0 in b.shape:  # the generic loops handle empty operands (a sum of no terms is 0)
        return None
    if _constant(a) is not None and _constant(b) is None:
        a, b = b, a
    a_free = tuple(d for d in a.names if d not in over)
    b_free = tuple(d for d in b.names if d not in over)
    sizes = {**a.sizes, **b.sizes}
    m, k = math.prod(sizes[d] for d in a_free), math.prod(sizes[d] for d in over)
    packed, sums, n, _ = _weight(b, b_free, over)
    rows = reshape(permute(a, a_free + over), [("_m", m), ("_k", k)]).expr
    rows = R.astype(R.add(R.astype(rows, "int16"), relax.const(SHIFT, "int16")), "uint8")
    rows = R.nn.pad(rows, [0, _round_up(m, ROWS) - m, 0, _round_up(k, 4) - k], pad_value=SHIFT)
    y = bind(_gemm(rows, m, packed, sums, n), ("_m", "_n"))
    return reshape(y, [(d, sizes[d]) for d in a_free + b_free])


def _windows(xp: te.Tensor, kernel: tuple[int, int], stride, dilation, out_hw: tuple[int, int]) -> te.Tensor:
    """(N, Ho, Wo, kh, kw, C) windows of a padded NHWC image: an im2col whose innermost loop copies
    contiguous channels (no bounds checks: the padding is already there)."""
    nb, _, _, c = (int(s) for s in xp.shape)
    return te.compute((nb, *out_hw, *kernel, c), lambda b, oh, ow, i, j, ch: xp[
        b, oh * stride[0] + i * dilation[0], ow * stride[1] + j * dilation[1], ch], name="im2col")


def conv2d_wide(eqn: Eqn, x: Named, w: Named) -> Named | None:
    """int8 `conv2d_wide` as an im2col of the NHWC image (shifted to uint8, padded with 128 = int8 zero)
    and the VNNI GEMM; None where it does not apply (no VNNI, other dtypes, groups)."""
    p = eqn.kwargs
    if x.dtype != "int8" or p["groups"] != 1 or not has_vnni(tvm.target.Target.current(True)):
        return None
    c, o, (h, wd) = p["channels"], p["out_channels"], p["spatial"]
    batch = tuple(d for d in x.names if d not in (c, h, wd))
    image = _to_image(x, "NHWC", batch, (c,), (h, wd))
    packed, sums, n, k = _weight(w, (o,), (h, wd, c))
    out = eqn.out.type.sizes
    (ph, pw), kernel = p["padding"], (w.sizes[h], w.sizes[wd])
    bb = relax.BlockBuilder.current()
    shifted = R.astype(R.add(R.astype(image.expr, "int16"), relax.const(SHIFT, "int16")), "uint8")
    padded = bb.emit(R.nn.pad(shifted, [0, 0, ph, ph, pw, pw, 0, 0], pad_value=SHIFT))
    cols = bb.call_te(_windows, padded, kernel, p["stride"], p["dilation"], (out[h], out[wd]),
                      primfunc_name_hint="im2col")
    m = int(image.shape[0]) * out[h] * out[wd]
    rows = R.reshape(cols, [m, k])
    if m % ROWS or k % 4:
        rows = R.nn.pad(rows, [0, _round_up(m, ROWS) - m, 0, _round_up(k, 4) - k], pad_value=SHIFT)
    y = bind(_gemm(rows, m, packed, sums, n), ("_m", o))
    return reshape(y, [(d, out[d]) for d in batch] + [(h, out[h]), (wd, out[wd]), (o, out[o])])
