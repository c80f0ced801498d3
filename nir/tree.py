"""Trees of tensors: nested dicts, lists, tuples (and namedtuples) whose leaves are NamedTensors (or
`Spec`s, or anything else a caller treats as a leaf). Parameters, gradients and optimizer states are trees;
`nir.compile` and `nir.trace` take them as arguments and return them as results.

    leaves, tree = nir.tree.flatten({"w": w, "b": b})     # leaves in key order: b, w
    nir.tree.unflatten(tree, [2 * x for x in leaves])
    nir.tree.map(lambda p, g: p - 0.1 * g, params, grads)

Dict keys are visited in sorted order (as in JAX), so two dicts with the same keys flatten alike
whatever order they were built in; `unflatten` rebuilds them in that order. ``None`` is an empty node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Tree", "flatten", "unflatten", "map", "leaves"]


@dataclass(frozen=True)
class Tree:
    """The structure of a tree without its leaves (hashable, so it can key a cache).

    ``kind`` is ``"leaf"``, ``"none"``, ``"dict"``, ``"list"``, ``"tuple"`` or ``"namedtuple"``; ``meta``
    holds the dict keys or the namedtuple class; ``children`` the sub-structures.
    """

    kind: str
    meta: Any = None
    children: tuple["Tree", ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.meta, self.children)) + "}"
        inner = ", ".join(str(c) for c in self.children)
        if self.kind == "list":
            return f"[{inner}]"
        if self.kind == "namedtuple":
            return f"{self.meta.__name__}({inner})"
        return f"({inner}{',' if len(self.children) == 1 else ''})"


_LEAF = Tree("leaf")


def _sorted_keys(d: dict) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:  # keys of mixed types: keep insertion order
        return list(d)


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], Tree]:
    """The leaves of ``tree`` (depth first; dict keys sorted) and its structure. Anything that is not a
    dict, list, tuple or None is a leaf; ``is_leaf(x)`` can declare more leaves."""
    leaves: list[Any] = []

    def walk(x: Any) -> Tree:
        if is_leaf is not None and is_leaf(x):
            leaves.append(x)
            return _LEAF
        if x is None:
            return Tree("none")
        if isinstance(x, dict):
            keys = _sorted_keys(x)
            return Tree("dict", tuple(keys), tuple(walk(x[k]) for k in keys))
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return Tree("namedtuple", type(x), tuple(walk(v) for v in x))
        if isinstance(x, (tuple, list)):
            return Tree("list" if isinstance(x, list) else "tuple", None, tuple(walk(v) for v in x))
        leaves.append(x)
        return _LEAF

    return leaves, walk(tree)


def unflatten(tree: Tree, leaves: Sequence[Any]) -> Any:
    """Rebuild the structure ``tree`` with ``leaves`` (as many as it has)."""
    if len(leaves) != tree.num_leaves:
        raise ValueError(f"unflatten: the structure {tree} has {tree.num_leaves} leaves, got {len(leaves)}")
    it = iter(leaves)

    def build(t: Tree) -> Any:
        if t.kind == "leaf":
            return next(it)
        if t.kind == "none":
            return None
        items = [build(c) for c in t.children]
        if t.kind == "dict":
            return dict(zip(t.meta, items))
        if t.kind == "namedtuple":
            return t.meta(*items)
        return list(items) if t.kind == "list" else tuple(items)

    return build(tree)


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree``, in `flatten` order."""
    return flatten(tree)[0]


def map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:  # noqa: A001 - the name JAX and optax use
    """``fn`` applied leaf by leaf: ``map(lambda p, g: p - lr * g, params, grads)``. The other trees must
    have ``tree``'s structure."""
    xs, structure = flatten(tree)
    others = []
    for i, r in enumerate(rest):
        ys, s = flatten(r)
        if s != structure:
            raise ValueError(f"tree.map: tree {i + 1} has structure {s}, but the first tree has {structure}")
        others.append(ys)
    return unflatten(structure, [fn(x, *ys) for x, *ys in zip(xs, *others)])
