"""Control-flow primitives: `scan` (a loop over a named dim) and `cond` (a two-way branch).

Their parameters include sub-programs: closed `Program`s (``body``; ``true_branch`` and
``false_branch``) that use nothing but their own inputs. A value the user's step function captured
from the enclosing program is an explicit input of the equation and of the sub-program (a "const").
Everything that walks programs (verifier, text form, fingerprint, interpreter, lowerings) finds
sub-programs generically, as the `Program`-valued parameters of an equation.

``scan[body, over, reverse, num_consts, num_carry](consts..., init..., xs...) -> (carries..., ys...)``
    ``body(consts..., carry..., x_t...) -> (carry..., y_t...)`` runs once per index of dim ``over``
    (from the last index down when ``reverse``). Each ``x_t`` is an ``xs`` tensor without ``over``
    (its other dims in their order); the carry keeps its type from step to step; each ``ys`` output
    stacks its ``y_t`` along ``over`` as its first dim. Like `jax.lax.scan`, by name.

``cond[true_branch, false_branch](pred, operands...) -> outputs...``
    ``pred`` is a 0-d bool tensor; both branches take the operands' types and return the same types.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..types import NamedShapeError, TensorType, numpy_dtype
from ._core import _register, defvjp


def show(t: TensorType) -> str:
    """A type as errors show it: ``float32{N: 2, H: 3}``."""
    return f"{t.dtype}{t.pretty()}"


def _show_all(types: Sequence[TensorType]) -> str:
    return "(" + ", ".join(show(t) for t in types) + ")"


def without(t: TensorType, dim: str) -> TensorType:
    """``t`` with ``dim`` removed (the type of one step's slice of a scanned tensor)."""
    return t.with_dims(d for d in t.dims if d[0] != dim)


def stacked(t: TensorType, dim: str, length: int) -> TensorType:
    """``t`` with ``dim`` of ``length`` in front (the type of a scan's stacked per-step outputs)."""
    return t.with_dims(((dim, length),) + t.dims)


def _types(program: Any, which: str) -> list[TensorType]:
    return [v.type for v in getattr(program, which)]


def _scan_rule(*types: TensorType, body: Any, over: str, reverse: bool, num_consts: int,
               num_carry: int) -> tuple[TensorType, ...]:
    consts, carry = types[:num_consts], types[num_consts:num_consts + num_carry]
    xs = types[num_consts + num_carry:]
    if not xs:
        raise NamedShapeError(f"scan: no tensor to scan over dim {over!r}; give xs with that dim")
    length = None
    for x in xs:
        if over not in x.names:
            raise NamedShapeError(f"scan: dim {over!r} is not in the xs tensor {show(x)} (its dims: "
                                  f"{list(x.user_names)}); every tensor in xs needs the dim scanned over")
        if length is None:
            length = x.size(over)
        elif x.size(over) != length:
            raise NamedShapeError(f"scan: the xs tensors disagree on the size of {over!r}: "
                                  f"{_show_all(xs)}; every tensor in xs needs the same {over!r}")
    want = [*consts, *carry, *(without(x, over) for x in xs)]
    got = _types(body, "inputs")
    if got != want:
        raise NamedShapeError(f"scan: the body takes inputs {_show_all(got)}, but consts, carry and one "
                              f"step of xs are {_show_all(want)}")
    outs = _types(body, "outputs")
    if len(outs) < num_carry or outs[:num_carry] != list(carry):
        raise NamedShapeError(f"scan: the carry must keep its type from step to step, but it goes in as "
                              f"{_show_all(carry)} and comes out of the step as {_show_all(outs[:num_carry])}")
    ys = []
    for y in outs[num_carry:]:
        if over in y.names:
            raise NamedShapeError(f"scan: a per-step output {show(y)} already has the dim {over!r} that scan "
                                  f"stacks it along; rename() that dim in the step function")
        ys.append(stacked(y, over, length))  # type: ignore[arg-type]
    return (*carry, *ys)


def _scan_impl(*arrays: np.ndarray, types: Sequence[TensorType], out: Sequence[TensorType], body: Any,
               over: str, reverse: bool, num_consts: int, num_carry: int) -> list[np.ndarray]:
    from ..interpret import interpret  # the interpreter runs sub-programs; it imports this package
    split = num_consts + num_carry
    consts, carry = list(arrays[:num_consts]), list(arrays[num_consts:split])
    xs = [np.moveaxis(x, t.names.index(over), 0) for x, t in zip(arrays[split:], types[split:])]
    ys = [np.empty(t.shape, numpy_dtype(t.dtype)) for t in out[num_carry:]]
    length = xs[0].shape[0]
    for i in (range(length - 1, -1, -1) if reverse else range(length)):
        results = interpret(body, *consts, *carry, *(x[i] for x in xs))
        carry = results[:num_carry]
        for y, r in zip(ys, results[num_carry:]):
            y[i] = r
    return carry + ys


def _cond_rule(pred: TensorType, *operands: TensorType, true_branch: Any,
               false_branch: Any) -> tuple[TensorType, ...]:
    if pred.ndim != 0 or pred.dtype != "bool":
        raise NamedShapeError(f"cond: the predicate must be a 0-d bool tensor, got {show(pred)}; "
                              "reduce and compare to get one, e.g. x.sum() > 0")
    for name, branch in (("true", true_branch), ("false", false_branch)):
        got = _types(branch, "inputs")
        if got != list(operands):
            raise NamedShapeError(f"cond: the {name} branch takes {_show_all(got)}, but the operands are "
                                  f"{_show_all(operands)}")
    t, f = _types(true_branch, "outputs"), _types(false_branch, "outputs")
    if t != f:
        raise NamedShapeError(f"cond: both branches must return the same named types, but the true branch "
                              f"returns {_show_all(t)} and the false branch {_show_all(f)}")
    return tuple(t)


def _cond_impl(pred: np.ndarray, *operands: np.ndarray, types: Sequence[TensorType], out: Sequence[TensorType],
               true_branch: Any, false_branch: Any) -> list[np.ndarray]:
    from ..interpret import interpret
    return interpret(true_branch if bool(pred) else false_branch, *operands)


_register("scan", "control", None, _scan_rule, _scan_impl,
          "loop `body` over dim `over`: carries threaded through, per-step outputs stacked", multiple_results=True)
_register("cond", "control", None, _cond_rule, _cond_impl,
          "run `true_branch` or `false_branch` on the operands, by a 0-d bool", multiple_results=True)


# ------------------------------------------------------------------------------------------------
# reverse mode. A rule of a primitive with several results receives one cotangent per output (None:
# zero) and the outputs as lists. Both rules are built from the sub-programs' own VJP programs
# (`nir.autodiff.vjp_program`) and the public scan/cond, so a gradient is again a loop or a branch:
# it compiles as one and can be differentiated again.
# ------------------------------------------------------------------------------------------------

def _scan_vjp(cts: Sequence[Any], *inputs: Any, out: Sequence[Any], needs: Sequence[bool], body: Any, over: str,
              reverse: bool, num_consts: int, num_carry: int) -> tuple[Any, ...]:
    """A forward scan that stacks the carry entering each step, then a scan the other way of the body's
    VJP program, carrying the carry's cotangent and the sum of the consts' cotangents; the xs'
    cotangents are its stacked outputs."""
    from ..autodiff import call_program, vjp_program  # autodiff builds on the op registry
    from ..functions.control import scan
    from ..types import fresh_name, is_float
    from . import _ad as ad
    nc, ncar = num_consts, num_carry
    consts, init, xs = list(inputs[:nc]), list(inputs[nc:nc + ncar]), list(inputs[nc + ncar:])
    # a carry may itself have the dim `over`: it is stacked under another name
    hide = {k: fresh_name() for k, c in enumerate(init) if over in c.type.names}

    def save(c: list, x_t: list) -> tuple[list, list]:
        new = call_program(body, *consts, *c, *x_t)[:ncar]
        return list(new), [ad.rename(v, {over: hide[k]}) if k in hide else v for k, v in enumerate(c)]
    _, saved = scan(save, init, xs, over=over, reverse=reverse)

    back = vjp_program(body)
    f_in = [is_float(v.type.dtype) for v in body.inputs]
    f_out = [is_float(v.type.dtype) for v in body.outputs]
    y_types = [v.type for v in body.outputs[ncar:]]
    ct_carry = [ct if ct is not None else ad.zeros(o.type) for ct, o, f in zip(cts[:ncar], out[:ncar], f_out) if f]
    ct_ys = [ct if ct is not None else ad.zeros(o.type) for ct, o, f in zip(cts[ncar:], out[ncar:], f_out[ncar:]) if f]
    acc0 = [ad.zeros(c.type) for c, f in zip(consts, f_in) if f]

    def step(carry: tuple, x: tuple) -> tuple[tuple, list]:
        ct_c, acc = carry
        x_t, c_t, ct_y = x
        c_t = [ad.rename(v, {hide[k]: over}) if k in hide else v for k, v in enumerate(c_t)]
        ct_y = iter(ad.to_type(g, t) for g, t in zip(ct_y, (t for t, f in zip(y_types, f_out[ncar:]) if f)))
        ct_c = iter(ct_c)
        ct_out = [next(ct_c) if k < ncar else next(ct_y) for k, f in enumerate(f_out) if f]
        grads = iter(call_program(back, *consts, *c_t, *x_t, *ct_out))
        g = [next(grads) if f else None for f in f_in]
        g_consts = [v for v in g[:nc] if v is not None]
        return ([v for v in g[nc:nc + ncar] if v is not None], [ad.add(a, v) for a, v in zip(acc, g_consts)]), \
            [v for v in g[nc + ncar:] if v is not None]
    (g_init, g_consts), g_xs = scan(step, (ct_carry, acc0), (xs, saved, ct_ys), over=over, reverse=not reverse)
    g_consts, g_init, g_xs = iter(g_consts), iter(g_init), iter(g_xs)
    result = [next(g_consts) if f else None for f in f_in[:nc]]
    result += [next(g_init) if f else None for f in f_in[nc:nc + ncar]]
    result += [ad.to_type(next(g_xs), x.type) if f else None for x, f in zip(xs, f_in[nc + ncar:])]
    return ad.none_unless(needs, *result)


def _cond_vjp(cts: Sequence[Any], pred: Any, *operands: Any, out: Sequence[Any], needs: Sequence[bool],
              true_branch: Any, false_branch: Any) -> tuple[Any, ...]:
    """A cond, on the same predicate, of the two branches' VJP programs."""
    from ..autodiff import call_program, vjp_program
    from ..functions.control import cond
    from ..types import is_float
    from . import _ad as ad
    f_in = [is_float(v.type.dtype) for v in true_branch.inputs]
    if not any(f_in):
        return (None,) * (1 + len(operands))
    ct = [ad.to_type(c, o.type) if c is not None else ad.zeros(o.type)
          for c, o in zip(cts, out) if is_float(o.dtype)]
    backs = [vjp_program(true_branch), vjp_program(false_branch)]
    grads = iter(cond(pred, lambda *a: tuple(call_program(backs[0], *a)),
                      lambda *a: tuple(call_program(backs[1], *a)), *operands, *ct))
    return ad.none_unless(needs, None, *[next(grads) if f else None for f in f_in])


defvjp("scan", _scan_vjp)
defvjp("cond", _cond_vjp)
