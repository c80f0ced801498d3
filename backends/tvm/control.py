"""scan and cond on TVM: real loops and branches in the Relax module, never unrolled.

A scan becomes private Relax functions, built once whatever the trip count:

* ``scanK_step(i, consts..., carries..., xs..., ys...)``: a dataflow function (so TVM fuses it) that
  slices ``x_t = xs[i]`` (each xs with the scanned dim moved to the front), runs the body, and writes
  each ``y_t`` into row ``i`` of its stacked output in place (`call_tir_inplace`: O(1) per step).
* ``scanK_loop0 .. scanK_loopL``: self-recursive functions with an ``If`` (Relax has no loop
  statement). The VM does not eliminate tail calls and each call takes native stack, so one
  recursion over T steps would overflow the stack beyond ~2,000 steps (a segfault, measured). Instead
  the loops are nested: level 0 runs at most `FANOUT` steps, level l at most `FANOUT` calls of level
  l-1, so the stack depth is about (L+1) x `FANOUT` calls for T <= FANOUT^(L+1): 96 calls for
  T = 32,768, 192 for T = 10^9. `MAX_DEPTH` bounds the whole program's depth (nested scans add up);
  beyond it the build is refused with a clear error.

A cond becomes two dataflow functions (the branches) and ``condK(pred, operands...)``, whose body is
one Relax ``If``. Sub-programs take and return their values in logical order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tvm import relax, tirx
from tvm.relax import op as R
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from nir.backends import BackendError
from nir.ir import Eqn, Program
from nir.types import TensorType

from .lower import LOWERINGS, Control, LoweringContext, Named, bind, emit_program, permute, reshape

__all__ = ["CONTROL", "FANOUT", "MAX_DEPTH", "stack_depth"]

FANOUT = 32      # steps (or calls of the level below) per recursion level
MAX_DEPTH = 1500  # nested VM calls a program may need: ~4 KB of native stack each, 8 MB stacks


_OPAQUE = 8  # TVM's OpPatternKind::kOpaque


def _ty(t: TensorType, names: Sequence[str] | None = None) -> relax.TensorType:
    sizes = t.sizes
    return relax.TensorType([sizes[n] for n in (names or t.names)], t.dtype)


def _var(name: str, t: TensorType, names: Sequence[str] | None = None) -> relax.Var:
    return relax.Var(name, _ty(t, names))


def _levels(length: int) -> int:
    """Recursion levels above level 0 for ``length`` steps."""
    levels = 0
    while FANOUT ** (levels + 1) < length:
        levels += 1
    return levels


def stack_depth(program: Program) -> int:
    """The deepest nesting of VM calls ``program``'s scans and conds need (0 without any)."""
    depth = 0
    for e in program.eqns:
        inner = max((stack_depth(sub) for _, sub in e.subprograms), default=0)
        if e.prim == "scan":
            length = e.inputs[-1].type.size(e.kwargs["over"])
            depth = max(depth, (_levels(length) + 1) * (FANOUT + 1) + 1 + inner)
        elif e.subprograms:
            depth = max(depth, 2 + inner)
    return depth


def check_depth(program: Program) -> None:
    """Refuse a program whose loops would nest VM calls deeper than `MAX_DEPTH` (a stack overflow)."""
    depth = stack_depth(program)
    if depth > MAX_DEPTH:
        raise BackendError(f"the tvm backend runs scan as nested recursive calls, and this program's nested "
                           f"scans and conds need {depth} of them at once, more than the {MAX_DEPTH} that fit "
                           "TVM's native stack safely. Nest fewer loops, or use backend='xla'")


# ---------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------

def _write_row(name: str, rows: TensorType, dtype: str) -> tirx.PrimFunc:
    """``ys[i, ...] = y[...]`` in place: a PrimFunc(ys, y, i) for ys of type ``rows`` (row dim first)."""
    shape = rows.shape[1:]
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name(name)
            ys = T.arg("ys", T.buffer(rows.shape, dtype))
            y = T.arg("y", T.buffer(shape, dtype))
            i = T.arg("i", T.int64())
            if shape:
                with T.grid(*shape) as idx:
                    idx = list(idx) if len(shape) > 1 else [idx]
                    with T.sblock("write_row"):
                        v = T.axis.remap("S" * len(shape), idx)
                        v = list(v) if len(shape) > 1 else [v]
                        T.buffer_store(ys, y[tuple(v)], [i, *v])
            else:
                with T.sblock("write_row"):
                    T.reads(y[()])
                    T.writes(ys[i])
                    T.buffer_store(ys, y[()], [i])
    # opaque: FuseOps must not fuse an in-place write with the producer of y (FuseTIR then maps two
    # buffers to one variable and fails)
    return ib.get().with_attr("op_pattern", _OPAQUE)


@dataclass(frozen=True)
class _Scan:
    """The prepared functions of one scan: the outermost loop and the types it passes around."""

    loop: relax.GlobalVar
    levels: int
    length: int
    xs_names: tuple[tuple[str, ...], ...]  # each xs's axes: the scanned dim first, then its logical order
    ys: tuple[TensorType, ...]


def _state_vars(consts: Sequence[TensorType], carry: Sequence[TensorType], xs: Sequence[TensorType],
                xs_names: Sequence[Sequence[str]], ys: Sequence[TensorType]) -> list[relax.Var]:
    return ([_var(f"c{k}", t) for k, t in enumerate(consts)] + [_var(f"h{k}", t) for k, t in enumerate(carry)]
            + [_var(f"x{k}", t, n) for k, (t, n) in enumerate(zip(xs, xs_names))]
            + [_var(f"y{k}", t) for k, t in enumerate(ys)])


def _prepare_scan(ctx: LoweringContext, eqn: Eqn) -> _Scan:
    p = eqn.kwargs
    body: Program = p["body"]
    over, nc, ncar = p["over"], p["num_consts"], p["num_carry"]
    types = [v.type for v in eqn.inputs]
    consts, carry, xs = types[:nc], types[nc:nc + ncar], types[nc + ncar:]
    xs_names = tuple((over, *[n for n in t.names if n != over]) for t in xs)
    ys = tuple(v.type for v in eqn.outputs[ncar:])
    length = xs[0].size(over)
    bb = ctx.bb
    name = ctx.unique("scan")
    ret = relax.TupleType([_ty(t) for t in (*carry, *ys)])

    writers = [bb.add_func(_write_row(f"{name}_write{k}", t, t.dtype), f"{name}_write{k}") for k, t in enumerate(ys)]
    i = tirx.Var("i", "int64")
    state = _state_vars(consts, carry, xs, xs_names, ys)
    with bb.function(f"{name}_step", [relax.Var("i", relax.ShapeType([i])), *state], private=True):
        with bb.dataflow():
            c_vars, h_vars = state[:nc], state[nc:nc + ncar]
            x_vars, y_vars = state[nc + ncar:nc + ncar + len(xs)], state[nc + ncar + len(xs):]
            x_t = [reshape(bind(R.strided_slice(x, axes=[0], begin=[i], end=[i + 1], assume_inbound=True), n),
                           [(d, t.size(d)) for d in n[1:]]) for x, t, n in zip(x_vars, xs, xs_names)]
            args = [Named(v, t.names) for v, t in zip(c_vars + h_vars, consts + carry)] + x_t
            results = emit_program(ctx, body, args)
            new = [permute(r, v.type.names).expr for r, v in zip(results, body.outputs)]
            rows = [bind(R.call_tir_inplace(w, (yv, y, relax.prim_value(i)), [0], _ty(t)), t.names).expr
                    for w, yv, y, t in zip(writers, y_vars, new[ncar:], ys)]
            out = bb.emit_output(relax.Tuple(new[:ncar] + rows))
        step = bb.emit_func_output(out)  # (the builder may return an equal function's GlobalVar)

    levels = _levels(length)
    below = None
    for level in range(levels + 1):
        below = _loop(ctx, f"{name}_loop{level}", level, below or step, state, nc, ncar, len(xs), ret, length,
                      reverse=bool(p["reverse"]) and level == 0)
    return _Scan(below, levels, length, xs_names, ys)  # type: ignore[arg-type]


def _loop(ctx: LoweringContext, name: str, level: int, inner: relax.GlobalVar, state: Sequence[relax.Var],
          nc: int, ncar: int, nx: int, ret: relax.TupleType, length: int, reverse: bool) -> relax.GlobalVar:
    """``name(i, end, state...)``: while i < end, run ``inner`` on [i, i + chunk) (level > 0) or on the
    step i (level 0, index length-1-i when ``reverse``) and recurse from i + chunk; returns
    ``(carries..., ys...)``."""
    i, end = tirx.Var("i", "int64"), tirx.Var("end", "int64")
    params = [relax.Var("i", relax.ShapeType([i])), relax.Var("end", relax.ShapeType([end]))]
    params += [relax.Var(v.name, v.ty) for v in state]
    gv = relax.GlobalVar(name)
    relax.expr._update_type(gv, relax.FuncType([v.ty for v in params], ret))
    chunk = FANOUT ** level
    consts, carry = params[2:2 + nc], params[2 + nc:2 + nc + ncar]
    xs, ys = params[2 + nc + ncar:2 + nc + ncar + nx], params[2 + nc + ncar + nx:]
    with ctx.bb.function(name, params, private=True):
        if level == 0:
            index = (length - 1 - i) if reverse else i
            result = relax.Call(inner, [relax.ShapeExpr([index]), *consts, *carry, *xs, *ys])
        else:
            result = relax.Call(inner, [relax.ShapeExpr([i]), relax.ShapeExpr([tirx.min(i + chunk, end)]),
                                        *consts, *carry, *xs, *ys])
        parts = [relax.TupleGetItem(result, k) for k in range(ncar + len(ys))]
        again = relax.Call(gv, [relax.ShapeExpr([i + chunk]), params[1], *consts, *parts[:ncar], *xs,
                                *parts[ncar:]])
        out = ctx.bb.emit(relax.If(relax.prim_value(i < end), again, relax.Tuple([*carry, *ys])))
        own = ctx.bb.emit_func_output(out)
    # it was built calling ``gv``, made before it existed: make it call itself through its own GlobalVar
    ctx.bb.update_func(own, _substitute(ctx.bb.get()[own], gv, own))
    return own


def _substitute(func: relax.Function, old: relax.GlobalVar, new: relax.GlobalVar) -> relax.Function:
    @relax.expr_functor.mutator
    class Replace(relax.expr_functor.PyExprMutator):
        def visit_global_var_(self, op: relax.GlobalVar) -> relax.Expr:  # noqa: N802 - TVM's name
            return new if op.same_as(old) else op
    return Replace().visit_expr(func)


def _emit_scan(ctx: LoweringContext, eqn: Eqn, prep: _Scan, *args: Named) -> list[Named]:
    p = eqn.kwargs
    nc, ncar = p["num_consts"], p["num_carry"]
    types = [v.type for v in eqn.inputs]
    fixed = [permute(a, t.names).expr for a, t in zip(args[:nc + ncar], types)]
    xs = [permute(a, n).expr for a, n in zip(args[nc + ncar:], prep.xs_names)]
    # fresh, uninitialized buffers: every row is written. (R.zeros would be constant-folded into a
    # module constant, which the in-place writes would then share between scans and calls.)
    ys = [bind(R.builtin.alloc_tensor(relax.ShapeExpr(list(t.shape)), t.dtype, 0), t.names).expr for t in prep.ys]
    call = relax.Call(prep.loop, [relax.ShapeExpr([0]), relax.ShapeExpr([prep.length]), *fixed[:nc],
                                  *fixed[nc:], *xs, *ys])
    result = bind(call, ()).expr
    return [bind(relax.TupleGetItem(result, k), v.type.names) for k, v in enumerate(eqn.outputs)]


# ---------------------------------------------------------------------------------------------
# cond
# ---------------------------------------------------------------------------------------------

def _prepare_cond(ctx: LoweringContext, eqn: Eqn) -> relax.GlobalVar:
    bb = ctx.bb
    name = ctx.unique("cond")
    operands = [v.type for v in eqn.inputs[1:]]
    branches = []
    for label in ("true_branch", "false_branch"):
        program: Program = eqn.kwargs[label]
        params = [_var(f"a{k}", t) for k, t in enumerate(operands)]
        with bb.function(f"{name}_{label}", params, private=True):
            with bb.dataflow():
                outs = emit_program(ctx, program, [Named(v, t.names) for v, t in zip(params, operands)])
                out = bb.emit_output(relax.Tuple([permute(o, v.type.names).expr
                                                  for o, v in zip(outs, program.outputs)]))
            branches.append(bb.emit_func_output(out))  # equal branches share one function
    pred = relax.Var("pred", relax.TensorType([], "bool"))
    params = [_var(f"a{k}", t) for k, t in enumerate(operands)]
    with bb.function(name, [pred, *params], private=True):
        out = bb.emit(relax.If(pred, relax.Call(branches[0], params), relax.Call(branches[1], params)))
        return bb.emit_func_output(out)


def _emit_cond(ctx: LoweringContext, eqn: Eqn, gv: relax.GlobalVar, pred: Named, *args: Named) -> list[Named]:
    operands = [permute(a, v.type.names).expr for a, v in zip(args, eqn.inputs[1:])]
    result = bind(relax.Call(gv, [pred.expr, *operands]), ()).expr
    return [bind(relax.TupleGetItem(result, k), v.type.names) for k, v in enumerate(eqn.outputs)]


CONTROL: dict[str, Control] = {
    "scan": Control(_prepare_scan, _emit_scan),
    "cond": Control(_prepare_cond, _emit_cond),
}
LOWERINGS.update(CONTROL)
