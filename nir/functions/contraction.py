"""Contraction in the named API: matmul/mm/bmm/mv/dot/addmm with PyTorch's naming, and `contract` by name."""

from __future__ import annotations

from typing import Sequence


from ..tensor import NamedTensor, bind
from ..types import (NamedShapeError, check_user_name, fresh_name,
                    is_generated)

from ._common import TensorLike, _align_ir, _fresh_unnamed, _pretty, _promote, _rename_ir, _unify, _unify_types



def matmul(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """PyTorch's matmul: contracts ``a``'s last dim with ``b``'s second-to-last (or only) dim, whatever
    their names; batch dims broadcast by position with name checks (a batch name may not meet an
    unnamed batch dim of an operand that has that name elsewhere: "misaligned"); the output's names are
    the batch names, ``a``'s row name and ``b``'s column name (an error if a name would repeat)."""
    return _matmul("matmul", a, b)


def _matmul(op: str, a: NamedTensor, b: NamedTensor) -> NamedTensor:
    a, b = _promote(op, a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise NamedShapeError(f"{op}: both arguments need at least 1 dim, got {_pretty(a, b)}")
    shown = [a.type, b.type]  # errors show the operands as given, before the renames below
    b = _fresh_unnamed(b)
    ka, kb = a.type.names[-1], b.type.names[-2 if b.ndim >= 2 else -1]
    if a.type.size(ka) != b.type.size(kb):
        raise NamedShapeError(
            f"{op}: contracted dims differ in size: {a.names[-1] or 'None'}={a.type.size(ka)} of the first and "
            f"{b.names[-2 if b.ndim >= 2 else -1] or 'None'}={b.type.size(kb)} of the second "
            f"(named shapes {_pretty(a, b)})")
    k = fresh_name()
    a, b = _rename_ir(a, {ka: k}), _rename_ir(b, {kb: k})
    a_row = [a.type.dims[-2]] if a.ndim >= 2 else []
    b_col = [b.type.dims[-1]] if b.ndim >= 2 else []
    a_batch, b_batch = a.type.with_dims(a.type.dims[:-2]), b.type.with_dims(b.type.dims[:-2])
    batch: list[tuple[str, int]] = []
    if a_batch.ndim or b_batch.ndim:
        ma, mb = _unify_types(op, [a_batch, b_batch], shown=shown)
        a, b = _rename_ir(a, ma), _rename_ir(b, mb)
        longer = [ma[n] for n in a_batch.names] if a_batch.ndim >= b_batch.ndim else [mb[n] for n in b_batch.names]
        sizes = {nm: s for t in (a, b) for nm, s in t.type.dims[:-2] if s != 1}
        batch = [(nm, sizes.get(nm, 1)) for nm in longer]
        bs = dict(batch)  # contract needs equal sizes: expand size-1 batch dims shared with the other operand
        a = _align_ir(a, [(nm, bs[nm] if nm in bs and nm in b.type.names else s) for nm, s in a.type.dims])
        b = _align_ir(b, [(nm, bs[nm] if nm in bs and nm in a.type.names else s) for nm, s in b.type.dims])
    want = batch + a_row + b_col
    names = [nm for nm, _ in want if not is_generated(nm)]
    if len(set(names)) != len(names):
        raise NamedShapeError(f"{op}: the result would repeat a dim name {names} (named shapes "
                              f"{shown[0].pretty()} and {shown[1].pretty()}); "
                              "rename() one operand's dim")
    y = bind("contract", [a, b], over=(k,))
    return _align_ir(y, [(nm, y.type.size(nm)) for nm, _ in want])


def _ranked_matmul(op: str, a: NamedTensor, b: NamedTensor, ranks: tuple[int, int], what: str) -> NamedTensor:
    if (a.ndim, b.ndim) != ranks:
        raise NamedShapeError(f"{op}: expects {what}, got {_pretty(a, b)}; use matmul for other ranks")
    return _matmul(op, a, b)


def mm(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Matrix product of two 2-dim tensors."""
    return _ranked_matmul("mm", a, b, (2, 2), "two 2-dim tensors")


def bmm(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Batched matrix product of two 3-dim tensors."""
    return _ranked_matmul("bmm", a, b, (3, 3), "two 3-dim tensors")


def mv(a: NamedTensor, v: NamedTensor) -> NamedTensor:
    """Matrix-vector product."""
    return _ranked_matmul("mv", a, v, (2, 1), "a 2-dim and a 1-dim tensor")


def dot(a: NamedTensor, b: NamedTensor) -> NamedTensor:
    """Inner product of two 1-dim tensors."""
    return _ranked_matmul("dot", a, b, (1, 1), "two 1-dim tensors")


def addmm(input: TensorLike, a: NamedTensor, b: NamedTensor, *, beta: float = 1.0,  # noqa: A002
          alpha: float = 1.0) -> NamedTensor:
    """``beta * input + alpha * (a @ b)``."""
    prod_ = _ranked_matmul("addmm", a, b, (2, 2), "two 2-dim matrices")
    if alpha != 1:
        prod_ = prod_ * alpha
    if beta == 0:
        return prod_
    return bind("add", _unify("addmm", *_promote("addmm", input * beta if beta != 1 else input, prod_)))


def contract(a: NamedTensor, b: NamedTensor, over: str | Sequence[str]) -> NamedTensor:
    """Einsum by name: sum ``a * b`` over the dims named in ``over``. Dims present in both operands
    and not contracted are batch dims, kept once; their sizes must agree.

    >>> nir.contract(q, k, over="D")   # q{B, Q, D}, k{B, K, D} -> {B, Q, K}
    """
    over = (over,) if isinstance(over, str) else tuple(over)
    for n in over:
        check_user_name(n, "contract")
        for t, which in ((a, "first"), (b, "second")):
            if n not in t.names:
                raise NamedShapeError(f"contract: dim {n!r} is not in the {which} operand (named shapes "
                                      f"{_pretty(a, b)}); contract sums over dims both operands name")
    a, b = _promote("contract", a, b)
    return bind("contract", [a, _fresh_unnamed(b)], over=over)
