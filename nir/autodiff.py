"""Reverse-mode autodiff on nir's IR: `grad`, `value_and_grad`, `vjp`.

``fn`` is traced once into a Program (inside a trace nested in whatever is active), the program is
replayed on the actual arguments — eagerly, or into the enclosing trace under `nir.trace`/`nir.compile`
— and the cotangents flow back through each primitive's VJP rule (kept beside the primitive in
``nir/ops/<family>.py``). Rules are written with nir primitives, so a gradient is an ordinary nir
computation: eager, traced, compiled by every backend, and differentiable again (grad of grad).

    loss = lambda p, x: (x @ p["w"]).relu().sum()
    g = nir.grad(loss)(params, x)             # g["w"].names == params["w"].names
    step = nir.compile(nir.grad(loss), backend="xla")
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from . import ops
from . import tree as _tree
from .ir import Program
from .ops import _ad as ad
from .tensor import _TRACE, NamedTensor, Trace, bind_multi
from .types import NamedShapeError, is_float

__all__ = ["grad", "value_and_grad", "vjp", "call_program", "vjp_program"]


class _NestedTrace(Trace):
    """A trace of the function being differentiated, nested in whatever is active: every tensor from
    outside it (eager, or traced by an enclosing trace) that the function uses becomes an extra input,
    bound back to that tensor when the program is replayed (so nothing is copied into constants)."""

    def __init__(self) -> None:
        super().__init__()
        self.captured: dict[int, NamedTensor] = {}  # input value id -> the outside tensor
        self._by_tensor: dict[int, NamedTensor] = {}

    def lift(self, t: NamedTensor) -> NamedTensor:
        if t._trace is self:
            return t
        if id(t) not in self._by_tensor:
            v = self.builder.input(t.type)
            inner = NamedTensor._traced(v, self)
            inner._keepalive = t  # keeps id(t) from being reused while the trace lives
            self._by_tensor[id(t)] = inner
            self.captured[v.id] = t
        return self._by_tensor[id(t)]


class _Linearized:
    """``fn`` evaluated at the primals, with what the backward pass needs: every value of the traced
    program as a NamedTensor (eager, or traced in the enclosing trace) and which values need cotangents."""

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], wrt: Sequence[bool], op: str) -> None:
        leaves, in_tree = _tree.flatten(tuple(args))
        for i, x in enumerate(leaves):
            if not isinstance(x, NamedTensor):
                raise TypeError(f"{op}: arguments must be NamedTensors or dicts/lists/tuples of them; leaf {i} is a "
                                f"{type(x).__name__}. Wrap arrays with nir.tensor(data, names=...), or close over "
                                "non-tensor arguments (functools.partial)")
        tr = _NestedTrace()
        inner = [NamedTensor._traced(tr.builder.input(x.type), tr) for x in leaves]
        token = _TRACE.set(tr)
        try:
            out = fn(*_tree.unflatten(in_tree, inner))
        finally:
            _TRACE.reset(token)
        out_leaves, self.out_tree = _tree.flatten(out)
        for i, o in enumerate(out_leaves):
            if not isinstance(o, NamedTensor):
                raise TypeError(f"{op}: the function must return NamedTensors (or dicts/lists/tuples of them); "
                                f"output leaf {i} is a {type(o).__name__}")
        self.program: Program = tr.builder.build([tr.lift(o)._value for o in out_leaves])
        self.env: dict[int, NamedTensor] = dict(tr.captured)
        self.inputs = self.program.inputs[:len(leaves)]
        for v, x in zip(self.inputs, leaves):
            self.env[v.id] = x
        self.needs = {v.id for v, w in zip(self.inputs, wrt) if w and is_float(v.type.dtype)}
        for e in self.program.eqns:
            if any(v.id in self.needs for v in e.inputs):
                self.needs.update(o.id for o in e.outputs if is_float(o.type.dtype))
        _replay(self.program, self.env)
        self.in_tree = in_tree
        self.outputs = [self.env[v.id] for v in self.program.outputs]

    def backward(self, cts: Sequence[NamedTensor | None]) -> list[NamedTensor | None]:
        """Cotangents of the inputs (None where not wanted) from those of the outputs (None: zero)."""
        acc: dict[int, NamedTensor] = {}

        def accumulate(vid: int, ct: NamedTensor) -> None:
            acc[vid] = ad.add(acc[vid], ct) if vid in acc else ct

        for v, ct in zip(self.program.outputs, cts):
            if ct is not None and v.id in self.needs:
                accumulate(v.id, ct)
        for e in reversed(self.program.eqns):
            cts = [acc.pop(o.id, None) for o in e.outputs]
            if all(c is None for c in cts):
                continue
            needs = tuple(v.id in self.needs for v in e.inputs)
            prim = ops.get(e.prim)
            if prim.vjp is None:
                where = f" (at {e.where})" if e.where else ""
                raise NotImplementedError(f"no gradient rule for primitive {e.prim!r}{where}: nir/ops defines no VJP "
                                          "for it, so gradients cannot flow through it")
            ins = [self.env[v.id] for v in e.inputs]
            if prim.multiple_results:  # (scan, cond) every output's cotangent, None where it has none
                got = prim.vjp(cts, *ins, out=[self.env[o.id] for o in e.outputs], needs=needs, **e.kwargs)
            else:
                got = prim.vjp(cts[0], *ins, out=self.env[e.out.id], needs=needs, **e.kwargs)
            for v, need, c in zip(e.inputs, needs, got):
                if need and c is not None:
                    accumulate(v.id, c)
        return [ad.to_type(acc[v.id], v.type) if v.id in acc else (ad.zeros(v.type) if v.id in self.needs else None)
                for v in self.inputs]


def _replay(program: Program, env: dict[int, NamedTensor]) -> None:
    """Evaluate ``program``'s equations on the tensors in ``env`` (eagerly, or into the active trace)."""
    for e in program.eqns:
        outs = bind_multi(e.prim, [env[v.id] for v in e.inputs], **e.kwargs)
        env.update((v.id, o) for v, o in zip(e.outputs, outs))


def call_program(program: Program, *args: NamedTensor) -> list[NamedTensor]:
    """``program``'s outputs on ``args`` (NamedTensors of exactly its input types), computed op by op with
    `bind`: eagerly, or recorded into the active trace — so a program can be differentiated."""
    if len(args) != len(program.inputs):
        raise TypeError(f"call_program: the program takes {len(program.inputs)} inputs, got {len(args)}")
    env: dict[int, NamedTensor] = {}
    for i, (v, a) in enumerate(zip(program.inputs, args)):
        if a.type != v.type:
            raise NamedShapeError(f"call_program: input {i} is {a.type} but the program takes {v.type}")
        env[v.id] = a
    _replay(program, env)
    return [env[v.id] for v in program.outputs]


def vjp_program(program: Program) -> Program:
    """The backward program of ``program``: inputs are its inputs followed by one cotangent per float
    output; outputs are the cotangents of its float inputs (an ordinary program every backend compiles)."""
    from .ir import verify
    tr = Trace()
    primals = [NamedTensor._traced(tr.builder.input(v.type), tr) for v in program.inputs]
    float_out = [v for v in program.outputs if is_float(v.type.dtype)]
    cts = [NamedTensor._traced(tr.builder.input(v.type), tr) for v in float_out]
    token = _TRACE.set(tr)
    try:
        outs, back = vjp(lambda *xs: tuple(call_program(program, *xs)), *primals)
        it = iter(cts)
        got = back(tuple(next(it) if is_float(o.dtype) else None for o in outs))
    finally:
        _TRACE.reset(token)
    results = [tr.lift(g)._value for g, v in zip(got, program.inputs) if is_float(v.type.dtype)]
    return verify(tr.builder.build(results))


def _match(ct: Any, want: NamedTensor, i: int, op: str) -> NamedTensor | None:
    """A user's cotangent for output ``want``: same names (any order), sizes and dtype."""
    if ct is None or not is_float(want.dtype):
        return None
    if not isinstance(ct, NamedTensor):
        raise TypeError(f"{op}: cotangent {i} must be a NamedTensor like the output {want.type.pretty()}, got "
                        f"{type(ct).__name__}")
    if ct.dtype != want.dtype:
        raise TypeError(f"{op}: cotangent {i} has dtype {ct.dtype}, the output {want.dtype}; cast it with "
                        f".to('{want.dtype}')")
    if ct.type.dims == want.type.dims:
        return ct
    if ct.names == want.names and ct.shape == want.shape:  # unnamed dims match by position
        return ad.rename(ct, dict(zip(ct.type.names, want.type.names)))
    if None not in ct.names and None not in want.names and ct.type.same_dims(want.type):
        return ad.to_type(ct, want.type)
    raise NamedShapeError(f"{op}: cotangent {i} has named shape {ct.type.pretty()} but the output has "
                          f"{want.type.pretty()}; give it the output's names and sizes (align_as / rename)")


def _check_argnums(argnums: int | Sequence[int], nargs: int, op: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(f"{op}: argnums={argnums!r} does not fit a call with {nargs} positional arguments")
    return tuple(n % nargs for n in nums)


def _differentiate(fn: Callable[..., Any], args: tuple, kwargs: dict, argnums: int | Sequence[int],
                   has_aux: bool, op: str) -> tuple[Any, Any, Any]:
    """(value, aux, gradients) of scalar ``fn`` at ``args`` with respect to ``argnums``."""
    nums = _check_argnums(argnums, len(args), op)
    wrt: list[bool] = []
    for i, a in enumerate(args):
        leaves = _tree.leaves(a)
        if i in nums:
            for x in leaves:
                if isinstance(x, NamedTensor) and not is_float(x.dtype):
                    raise TypeError(f"{op}: argument {i} has a {x.dtype} tensor {x.type.pretty()}; only floating-point "
                                    f"inputs have gradients. Cast it with .to('float32'), or leave argument {i} "
                                    "out of argnums")
        wrt += [i in nums] * len(leaves)
    call = (lambda *a: fn(*a, **kwargs)) if kwargs else fn
    lin = _Linearized(call, args, wrt, op)
    out = lin.outputs
    if has_aux:
        if lin.out_tree.kind not in ("tuple", "list") or len(lin.out_tree.children) != 2:
            raise TypeError(f"{op}: with has_aux=True the function must return a pair (scalar loss, aux), got the "
                            f"structure {lin.out_tree}")
        n_loss = lin.out_tree.children[0].num_leaves
        value_tree = lin.out_tree.children[0]
        aux = _tree.unflatten(lin.out_tree.children[1], out[n_loss:])
    else:
        n_loss, value_tree, aux = len(out), lin.out_tree, None
    if value_tree.kind != "leaf" or out[0].ndim != 0 or not is_float(out[0].dtype):
        got = ", ".join(f"{o.type.pretty()} {o.dtype}" for o in out[:n_loss]) or "nothing"
        raise NamedShapeError(f"{op}: grad needs a scalar output (a 0-d float tensor), but the function returned "
                              f"{got}. Reduce it to a scalar first (e.g. .sum() or .mean()), or use nir.vjp for a "
                              "non-scalar output")
    cts = lin.backward([ad.full(out[0].type, 1.0)] + [None] * (len(out) - 1))
    grads, start = [], 0
    for i, a in enumerate(args):
        leaves, structure = _tree.flatten(a)
        if i in nums:
            grads.append(_tree.unflatten(structure, cts[start:start + len(leaves)]))
        start += len(leaves)
    by_num = {n: g for n, g in zip((i for i in range(len(args)) if i in nums), grads)}
    picked = tuple(by_num[n] for n in nums)
    return out[0], aux, picked[0] if isinstance(argnums, int) else picked


def value_and_grad(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
                   ) -> Callable[..., Any]:
    """A function returning ``(fn(*args), gradient)``: the gradient of ``fn``'s scalar output with respect to
    argument ``argnums`` (an int, or a tuple of ints for a tuple of gradients), with that argument's tree
    structure, names and dim order. With ``has_aux=True``, ``fn`` returns ``(loss, aux)`` and the result
    is ``((loss, aux), gradient)``. Works eagerly, under `nir.trace` and `nir.compile`, and composes.

    >>> loss, g = nir.value_and_grad(lambda w, x: (x @ w).tanh().sum())(w, x)
    """
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, aux, grads = _differentiate(fn, args, kwargs, argnums, has_aux, "value_and_grad")
        return ((value, aux) if has_aux else value), grads
    return wrapped


def grad(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """A function returning the gradient of ``fn``'s scalar output with respect to argument ``argnums``
    (an int, or a tuple of ints -> a tuple of gradients). Each gradient has its argument's tree
    structure (dicts, lists, tuples of NamedTensors), names and dim order. With ``has_aux=True``, ``fn``
    returns ``(loss, aux)`` and the result is ``(gradient, aux)``.

    >>> g = nir.grad(lambda p, x: (x @ p["w"]).relu().sum())(params, x)
    >>> g["w"].names == params["w"].names
    True
    """
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _, aux, grads = _differentiate(fn, args, kwargs, argnums, has_aux, "grad")
        return (grads, aux) if has_aux else grads
    return wrapped


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
    """``(fn(*primals), vjp_fn)``: ``vjp_fn(cotangent)`` — a cotangent tree shaped like the output — returns
    a tuple with one cotangent tree per primal (None at integer or bool leaves, which have none).

    >>> y, back = nir.vjp(lambda x: x.softmax("C"), x)
    >>> (dx,) = back(nir.randn(*y.shape, names=y.names))
    """
    lin = _Linearized(fn, primals, [True] * len(_tree.leaves(tuple(primals))), "vjp")
    out = _tree.unflatten(lin.out_tree, lin.outputs)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        cts, structure = _tree.flatten(cotangent, is_leaf=lambda x: x is None)
        if structure != lin.out_tree:
            raise ValueError(f"vjp: the cotangent has the structure {structure}, but the output has {lin.out_tree}")
        got = lin.backward([_match(c, o, i, "vjp") for i, (c, o) in enumerate(zip(cts, lin.outputs))])
        result, start = [], 0
        for p in primals:
            leaves, s = _tree.flatten(p)
            result.append(_tree.unflatten(s, got[start:start + len(leaves)]))
            start += len(leaves)
        return tuple(result)

    return out, vjp_fn
