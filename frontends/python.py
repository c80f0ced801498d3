"""The Python tracing frontend: run a function over NamedTensors once, record a Program.

Example inputs are NamedTensors or `nir.spec(N=32, C=3, dtype="float32")`, or trees of them (dicts,
lists, tuples: a dict of parameters, an optimizer state). Name errors surface while
tracing, at the user's line; Python control flow on a traced value raises `TraceError`; loops with a
static trip count simply unroll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nir import tree as _tree
from nir.ir import Program
from nir.tensor import NamedTensor, Trace, _TRACE, _user_names
from nir.types import TensorType, canonical_dtype

__all__ = ["Spec", "spec", "trace", "Traced"]


@dataclass(frozen=True)
class Spec:
    """The signature of one input: names (None for unnamed), sizes and dtype."""

    names: tuple[str | None, ...]
    shape: tuple[int, ...]
    dtype: str = "float32"

    @staticmethod
    def of(x: "NamedTensor | Spec") -> "Spec":
        """The spec of a tensor (or a spec itself)."""
        if isinstance(x, Spec):
            return x
        if isinstance(x, NamedTensor):
            return Spec(x.names, x.shape, x.dtype)
        raise TypeError(f"expected a NamedTensor or nir.spec(...), got {type(x).__name__}; wrap arrays with "
                        "nir.tensor(data, names=...)")

    def __str__(self) -> str:
        dims = ", ".join(f"{n}: {s}" for n, s in zip(self.names, self.shape))
        return f"{self.dtype}{{{dims}}}"


def spec(*unnamed: int, dtype: Any = "float32", names: Sequence[str | None] | None = None,
         shape: Sequence[int] | None = None, **sizes: int) -> Spec:
    """An input signature: ``nir.spec(N=32, C=3)`` (keyword order is dim order), or
    ``nir.spec(names=("N", None), shape=(32, 3))``, or ``nir.spec(4, 5)`` for unnamed dims."""
    if names is not None or shape is not None:
        if names is None or shape is None or len(names) != len(shape) or sizes or unnamed:
            raise ValueError("spec: give names= and shape= of equal length, or N=32, C=3 keywords, not both")
        return Spec(tuple(names), tuple(int(s) for s in shape), canonical_dtype(dtype))
    if unnamed and sizes:
        raise ValueError("spec: give unnamed sizes or named ones (N=32), not both; use names=/shape= to mix")
    if unnamed:
        return Spec((None,) * len(unnamed), tuple(int(s) for s in unnamed), canonical_dtype(dtype))
    return Spec(tuple(sizes), tuple(int(s) for s in sizes.values()), canonical_dtype(dtype))


@dataclass(frozen=True)
class Traced:
    """A traced function: the program, and how to rebuild its Python output structure."""

    program: Program
    structure: Any  # the output tree with output indices at the leaves
    inputs: "_tree.Tree | None" = None  # the arguments' tree (None: one tensor per argument)

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """Put ``leaves`` (one per program output) back into the function's output structure."""
        return _rebuild(self.structure, leaves)


def _flatten_out(out: Any, leaves: list[NamedTensor]) -> Any:
    if isinstance(out, NamedTensor):
        leaves.append(out)
        return len(leaves) - 1
    if isinstance(out, (tuple, list)):
        items = [_flatten_out(o, leaves) for o in out]
        return type(out)(items) if not hasattr(out, "_fields") else type(out)(*items)
    if isinstance(out, dict):
        return {k: _flatten_out(v, leaves) for k, v in out.items()}
    raise TypeError(f"a compiled function must return NamedTensors (or tuples, lists, dicts of them); got "
                    f"{type(out).__name__}")


def _rebuild(structure: Any, leaves: Sequence[Any]) -> Any:
    if isinstance(structure, int):
        return leaves[structure]
    if isinstance(structure, (tuple, list)):
        items = [_rebuild(s, leaves) for s in structure]
        return type(structure)(items) if not hasattr(structure, "_fields") else type(structure)(*items)
    return {k: _rebuild(v, leaves) for k, v in structure.items()}


def flatten_args(args: Sequence[Any]) -> tuple[list[Any], "_tree.Tree"]:
    """The leaves of a call's arguments (each a tensor, spec or array, or a dict/list/tuple of them) and
    their tree; program inputs are these leaves, in this order."""
    return _tree.flatten(tuple(args))


def trace(fn: Callable[..., Any], *example_inputs: Any) -> Traced:
    """Run ``fn`` once on traced stand-ins for ``example_inputs`` and record a Program. Each example
    input is a NamedTensor or `nir.spec(...)`, or a dict/list/tuple tree of them (the program takes the
    leaves as inputs, dict keys in sorted order).

    >>> t = nir.trace(lambda x: x.sum("C"), nir.spec(N=2, C=3))
    >>> print(t.program)
    """
    tr = Trace()
    leaves, in_tree = flatten_args(example_inputs)
    traced_leaves = []
    for x in leaves:
        s = Spec.of(x)
        ir = _user_names(s.names, "trace")
        v = tr.builder.input(TensorType(tuple(zip(ir, s.shape)), s.dtype))
        traced_leaves.append(NamedTensor._traced(v, tr))
    args = _tree.unflatten(in_tree, traced_leaves)
    token = _TRACE.set(tr)
    try:
        out = fn(*args)
    finally:
        _TRACE.reset(token)
    leaves: list[NamedTensor] = []
    structure = _flatten_out(out, leaves)
    values = [tr.lift(t)._value for t in leaves]
    flat = all(t.kind == "leaf" for t in in_tree.children)
    return Traced(tr.builder.build(values), structure, None if flat else in_tree)

