"""Loops and branches by name: `scan` over a named dim and `cond` on a 0-d bool.

Eagerly they run the Python functions directly. Inside `nir.trace`/`nir.compile` each function is
traced once into a closed sub-program (tensors it captures from the enclosing program become explicit
inputs) and the loop or branch becomes one IR equation, which backends compile as a loop or a branch
(`lax.scan`/`lax.cond` on XLA, a Relax loop on TVM) instead of unrolling it.

Trees: ``init``, ``xs``, step outputs and cond operands may be NamedTensors or tuples, lists and dicts
of them (and None); Python numbers in them become 0-d tensors.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..ir import Program, Value
from ..ops.control import show, stacked, without
from ..tensor import _TRACE, NamedTensor, Trace, as_tensor, bind_multi, current_trace
from ..types import NamedShapeError, TensorType, check_user_name, is_generated
from ._common import _align_ir, _rename_ir

__all__ = ["scan", "cond"]


# ------------------------------------------------------------------------------------------------
# trees of tensors
# ------------------------------------------------------------------------------------------------

class _Leaf:
    def __repr__(self) -> str:
        return "tensor"


LEAF = _Leaf()


def _flatten(tree: Any, what: str) -> tuple[list[NamedTensor], Any]:
    """The tensors of ``tree`` in order, and its structure (the tree with `LEAF` for each tensor);
    dict entries go in sorted key order, as in JAX."""
    leaves: list[NamedTensor] = []

    def go(x: Any) -> Any:
        if isinstance(x, NamedTensor) or isinstance(x, (bool, int, float, np.number, np.bool_)):
            leaves.append(as_tensor(x, op=what))
            return LEAF
        if x is None:
            return None
        if isinstance(x, (tuple, list)):
            items = [go(i) for i in x]
            return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
        if isinstance(x, dict):
            return {k: go(x[k]) for k in sorted(x)}
        raise TypeError(f"{what}: expected NamedTensors, or tuples, lists and dicts of them (or None), got "
                        f"{type(x).__name__}. Wrap arrays with nir.tensor(data, names=...)")
    return leaves, go(tree)


def _unflatten(structure: Any, leaves: Sequence[Any]) -> Any:
    it = iter(leaves)

    def go(s: Any) -> Any:
        if s is LEAF:
            return next(it)
        if s is None:
            return None
        if isinstance(s, (tuple, list)):
            items = [go(i) for i in s]
            return type(s)(*items) if hasattr(s, "_fields") else type(s)(items)
        return {k: go(v) for k, v in s.items()}
    return go(structure)


def _conform(x: NamedTensor, want: TensorType, what: str) -> NamedTensor:
    """``x`` as type ``want``: unnamed dims match by position and named dims by name (so a permuted
    carry is put back in order); anything else that differs is an error showing both types."""
    if x.type == want:
        return x
    if x.dtype == want.dtype and x.names == want.user_names and x.shape == want.shape:
        return _rename_ir(x, dict(zip(x.type.names, want.names)))
    named = not any(is_generated(n) for n in (*x.type.names, *want.names))
    if x.dtype == want.dtype and named and x.type.sizes == want.sizes:
        return _align_ir(x, want.dims)
    raise NamedShapeError(f"{what} must keep its named type {show(want)}, but it is {show(x.type)}; names, sizes "
                          "and dtypes must match (rename(), align_to() or .to(dtype) in the step function)")


@contextlib.contextmanager
def _sub_trace() -> Iterator[Trace]:
    """A trace for a sub-program of the innermost active trace, active inside the block."""
    child = Trace(parent=current_trace())
    token = _TRACE.set(child)
    try:
        yield child
    finally:
        _TRACE.reset(token)


def _closed(trace: Trace, inputs: Sequence[Value], outputs: Sequence[NamedTensor]) -> Program:
    """The sub-program a trace recorded: its captured tensors first, then ``inputs``."""
    outs = tuple(trace.lift(t)._value for t in outputs)  # type: ignore[union-attr]  # may capture more
    ins = tuple(v for _, v in trace.captures) + tuple(inputs)
    return Program(ins, tuple(trace.builder.eqns), outs)


def _input(trace: Trace, t: TensorType) -> NamedTensor:
    return NamedTensor._traced(trace.builder.input(t), trace)


# ------------------------------------------------------------------------------------------------
# scan
# ------------------------------------------------------------------------------------------------

def scan(step: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, over: str = "T",
         reverse: bool = False) -> tuple[Any, Any]:
    """Loop ``step`` over dim ``over`` of ``xs``, threading a carry: ``jax.lax.scan`` by name.

    ``step(carry, x_t) -> (carry, y_t)``. ``xs`` is a NamedTensor or a tree of them, all with dim
    ``over``; ``x_t`` is ``xs`` without that dim (one index of it). The carry must keep its named type
    (names, sizes, dtype; a permuted carry is put back in order). Returns ``(carry, ys)``: the final
    carry, and each ``y_t`` (a tree, or None) stacked along ``over`` as its first dim. ``reverse=True``
    runs from the last index to the first (``ys`` still in index order).

    >>> h, hs = nir.scan(lambda h, x: ((x @ w + h @ u).tanh(),) * 2, h0, x, over="T")   # an RNN
    """
    over = check_user_name(over, "scan")
    carry, carry_tree = _flatten(init, "scan init")
    x_leaves, x_tree = _flatten(xs, "scan xs")
    if not x_leaves:
        raise NamedShapeError(f"scan: xs holds no tensor, so there is nothing to scan over dim {over!r}; "
                              f"give a tensor with dim {over!r}")
    length = None
    for x in x_leaves:
        if over not in x.type.names:
            raise NamedShapeError(f"scan: dim {over!r} is not in the xs tensor {show(x.type)} (its dims: "
                                  f"{list(x.names)}); every tensor in xs needs the dim scanned over")
        if length is not None and x.type.size(over) != length:
            raise NamedShapeError(f"scan: the xs tensors disagree on the size of {over!r}: "
                                  f"{', '.join(show(t.type) for t in x_leaves)}")
        length = x.type.size(over)
    if current_trace() is None and length:
        return _scan_eager(step, carry, carry_tree, x_leaves, x_tree, over, reverse)
    return _scan_traced(step, carry, carry_tree, x_leaves, x_tree, over, reverse)


def _step_outputs(step: Callable, carry: Any, x_t: Any, carry_tree: Any, want: Sequence[TensorType]
                  ) -> tuple[list[NamedTensor], list[NamedTensor], Any]:
    """Run ``step``; its new carry (conformed to ``want``), its y_t leaves and their structure."""
    out = step(carry, x_t)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"scan: the step function must return a pair (carry, y_t), got {type(out).__name__}"
                        f"{f' of length {len(out)}' if isinstance(out, tuple) else ''}")
    new, new_tree = _flatten(out[0], "scan carry")
    if new_tree != carry_tree:
        raise TypeError(f"scan: the carry must keep its structure, but it goes in as {carry_tree!r} and comes "
                        f"out as {new_tree!r}")
    new = [_conform(c, t, "scan: the carry") for c, t in zip(new, want)]
    ys, y_tree = _flatten(out[1], "scan y_t")
    return new, ys, y_tree


def _scan_eager(step: Callable, carry: list[NamedTensor], carry_tree: Any, xs: list[NamedTensor], x_tree: Any,
                over: str, reverse: bool) -> tuple[Any, Any]:
    want = [c.type for c in carry]
    length = xs[0].type.size(over)
    ys: list[list[NamedTensor]] = [[] for _ in range(length)]
    y_tree, y_types = None, None
    for i in (range(length - 1, -1, -1) if reverse else range(length)):
        x_t = _unflatten(x_tree, [x.select(over, i) for x in xs])
        carry, ys[i], tree = _step_outputs(step, _unflatten(carry_tree, carry), x_t, carry_tree, want)
        if y_types is None:
            y_tree, y_types = tree, [y.type for y in ys[i]]
        elif tree != y_tree:
            raise TypeError(f"scan: y_t changed structure between steps: {y_tree!r} then {tree!r}")
        ys[i] = [_conform(y, t, "scan: a per-step output") for y, t in zip(ys[i], y_types)]
    stacks = []
    for k, t in enumerate(y_types or []):
        if over in t.names:
            raise NamedShapeError(f"scan: a per-step output {show(t)} already has the dim {over!r} that scan "
                                  f"stacks it along; rename() that dim in the step function")
        data = np.stack([np.asarray(ys[i][k].numpy()) for i in range(length)])
        stacks.append(NamedTensor._eager(data, stacked(t, over, length)))
    return _unflatten(carry_tree, carry), _unflatten(y_tree, stacks)


def _scan_traced(step: Callable, carry: list[NamedTensor], carry_tree: Any, xs: list[NamedTensor], x_tree: Any,
                 over: str, reverse: bool) -> tuple[Any, Any]:
    want = [c.type for c in carry]
    with _sub_trace() as body:
        c_in = [_input(body, t) for t in want]
        x_in = [_input(body, without(x.type, over)) for x in xs]
        new, ys, y_tree = _step_outputs(step, _unflatten(carry_tree, c_in), _unflatten(x_tree, x_in), carry_tree,
                                        want)
        program = _closed(body, [t._value for t in c_in + x_in], new + ys)  # type: ignore[misc]
    consts = [outer for outer, _ in body.captures]
    outs = bind_multi("scan", consts + carry + xs, body=program, over=over, reverse=bool(reverse),
                      num_consts=len(consts), num_carry=len(carry))
    return _unflatten(carry_tree, outs[:len(carry)]), _unflatten(y_tree, outs[len(carry):])


# ------------------------------------------------------------------------------------------------
# cond
# ------------------------------------------------------------------------------------------------

def cond(pred: NamedTensor, true_fn: Callable[..., Any], false_fn: Callable[..., Any], *operands: Any) -> Any:
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``: ``jax.lax.cond`` by name.

    ``pred`` is a 0-d bool NamedTensor. Both functions must return the same structure of the same
    named types (names, sizes, dtypes; dims in another order are put in the true branch's order).
    Eagerly only the chosen function runs; traced, both become branches of one IR equation.

    >>> y = nir.cond(x.sum() > 0, lambda x: x * 2, lambda x: -x, x)
    """
    if not isinstance(pred, NamedTensor) or pred.ndim != 0 or pred.dtype != "bool":
        got = show(pred.type) if isinstance(pred, NamedTensor) else type(pred).__name__
        raise NamedShapeError(f"cond: the predicate must be a 0-d bool NamedTensor, got {got}; reduce and "
                              "compare to get one, e.g. x.sum() > 0")
    leaves, tree = _flatten(tuple(operands), "cond operands")
    if current_trace() is None and not pred.is_traced:
        return (true_fn if pred.item() else false_fn)(*operands)
    branches, results = [], []
    for fn in (true_fn, false_fn):
        with _sub_trace() as tr:
            ins = [_input(tr, t.type) for t in leaves]
            out, out_tree = _flatten(fn(*_unflatten(tree, ins)), "cond branch output")
            if results:
                _check_same_branches(results[0], (out, out_tree))
                out = [_conform(o, t.type, "cond: the false branch's output") for o, t in zip(out, results[0][0])]
            for o in out:
                tr.lift(o)  # captures happen here, before the branch inputs are fixed
        branches.append((tr, ins))
        results.append((out, out_tree))
    captured = _union_captures([tr for tr, _ in branches])
    programs = [_branch_program(tr, ins, captured, out) for (tr, ins), (out, _) in zip(branches, results)]
    outs = bind_multi("cond", [pred, *leaves, *captured], true_branch=programs[0], false_branch=programs[1])
    return _unflatten(results[0][1], outs)


def _check_same_branches(true: tuple[list[NamedTensor], Any], false: tuple[list[NamedTensor], Any]) -> None:
    if true[1] != false[1]:
        raise TypeError(f"cond: both branches must return the same structure, but the true branch returns "
                        f"{true[1]!r} and the false branch {false[1]!r}")


def _union_captures(traces: Sequence[Trace]) -> list[NamedTensor]:
    """The enclosing tensors any branch captured, each once."""
    seen: dict[int, NamedTensor] = {}
    for tr in traces:
        for outer, _ in tr.captures:
            seen.setdefault(outer._value.id, outer)  # type: ignore[union-attr]
    return list(seen.values())


def _branch_program(tr: Trace, ins: Sequence[NamedTensor], captured: Sequence[NamedTensor],
                    out: Sequence[NamedTensor]) -> Program:
    """A branch taking the operands and then every captured tensor (an unused input where this
    branch did not capture it), so both branches have the same inputs."""
    mine = {outer._value.id: v for outer, v in tr.captures}  # type: ignore[union-attr]
    extra = [mine.get(t._value.id) or tr.builder.input(t.type) for t in captured]  # type: ignore[union-attr]
    outs = tuple(tr.lift(o)._value for o in out)  # type: ignore[union-attr]
    return Program(tuple(t._value for t in ins) + tuple(extra), tuple(tr.builder.eqns), outs)  # type: ignore[misc]
