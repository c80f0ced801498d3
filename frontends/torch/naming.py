"""Names the graph itself suggests: parameters and buffers as named constants, with default dim names after
layer and role (``fc1.weight`` -> ``{fc1.out, fc1.in}``) from the op that first uses each parameter; and
``heads``/``head_dim`` for the dims a model reshapes into attention heads (`head_dims`)."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind
from torch.fx import Node

import nir.functions as nf
from nir.tensor import NamedTensor, from_array
from nir.types import NamedShapeError

from ._common import Names, op_key
from .layout import _reshape_groups  # the converter's own grouping, so both agree on what a reshape's runs are

# (op, argument index) -> the roles of a parameter's dims when that op is its first use
_ROLES: dict[tuple[str, int], tuple[str, ...]] = {
    ("aten.linear.default", 1): ("out", "in"), ("aten.linear.default", 2): ("out",),
    ("aten.embedding.default", 0): ("vocab", "dim"), ("aten.addmm.default", 0): ("out",),
}
for _op in ("aten.conv2d.default", "aten.conv2d.padding", "aten.convolution.default"):
    _ROLES[(_op, 1)], _ROLES[(_op, 2)] = ("out", "in", "kh", "kw"), ("out",)
for _op, _first in (("aten.batch_norm.default", 1), ("aten._native_batch_norm_legit_no_training.default", 1)):
    for _i in range(_first, _first + 4):
        _ROLES[(_op, _i)] = ("channels",)


def _layer_prefix(path: str) -> str:
    """A parameter path as the start of a dim name: ``fc1`` stays; Sequential's ``0`` becomes ``layer0``."""
    return path if re.match(r"[A-Za-z]", path) else f"layer{path}"


def default_param_names(target: str, shape: Sequence[int], uses: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Dim names for parameter or buffer ``target`` (``"fc1.weight"``) of ``shape``, from its first use
    ``(op, argument index)``: Linear weights ``(fc1.out, fc1.in)``, conv weights ``(conv1.out, conv1.in,
    conv1.kh, conv1.kw)``, biases ``(fc1.out,)``, embedding tables ``(emb.vocab, emb.dim)``, batchnorm
    vectors ``(bn1.channels,)``; any other tensor ``(pos.d0, pos.d1)`` after its own path. A layer_norm's
    weight and bias take the names of the dims they normalize when they are used."""
    layer, _, _ = target.rpartition(".")
    for use in uses[:1]:
        roles = _ROLES.get(use)
        if roles is not None and len(roles) == len(shape):
            return tuple(f"{_layer_prefix(layer or target)}.{r}" for r in roles)
    if len(shape) == 1 and uses[:1] and uses[0][0] == "aten.layer_norm.default":
        return (f"{_layer_prefix(layer or target)}.dim",)
    return tuple(f"{_layer_prefix(target)}.d{i}" for i in range(len(shape)))


_TRANSPOSES = ("aten.t.default", "aten.permute.default", "aten.transpose.int")
_MATMUL_RHS = {("aten.addmm.default", 2), ("aten.mm.default", 1), ("aten.matmul.default", 1)}


def _uses(node: Node) -> list[tuple[str, int]]:
    """(op, argument index) of each use of ``node``. A 2-d weight transposed into the right operand of a
    matrix product (Linear as torch's decompositions write it: ``addmm(b, x, w.t())``) counts as Linear's."""
    uses = []
    for u in node.users:
        op = op_key(u.target)
        for i, a in enumerate(u.args):
            if a is node:
                if op in _TRANSPOSES and any(use in _MATMUL_RHS for use in _uses(u)):
                    op, i = "aten.linear.default", 1
                uses.append((op, i))
    return uses


def _constants(ep: ExportedProgram, param_names: Mapping[str, Names]) -> tuple[dict[str, NamedTensor],
                                                                               dict[str, tuple[str, ...]]]:
    """Placeholder name -> named eager tensor, for every parameter, buffer and constant tensor."""
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    kinds = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)
    specs = [s for s in ep.graph_signature.input_specs if s.kind in kinds]
    known = {s.target for s in specs}
    unknown = sorted(set(param_names) - known)
    if unknown:
        raise KeyError(f"param_names: {unknown} are not parameters or buffers of the model; they are: "
                       f"{', '.join(sorted(known))}")
    out: dict[str, NamedTensor] = {}
    chosen: dict[str, tuple[str, ...]] = {}
    for s in specs:
        value = ep.state_dict[s.target] if s.target in ep.state_dict else ep.constants[s.target]
        # a copy: the program holds the weights as they are now, whatever later training does to the model
        data = (value.detach().float() if value.dtype == torch.bfloat16 else value.detach()).cpu().numpy().copy()
        names = param_names.get(s.target)
        if names is None:
            names = default_param_names(s.target, data.shape, _uses(nodes[s.arg.name]))
        elif len(names) != data.ndim:
            raise NamedShapeError(f"param_names[{s.target!r}] gives {len(names)} names {tuple(names)} for a tensor "
                                  f"of shape {tuple(data.shape)}; give one name (or None) per dim")
        t = from_array(data, names=names)
        out[s.arg.name] = nf.cast(t, value.dtype) if value.dtype == torch.bfloat16 else t
        chosen[s.target] = tuple(names)
    return out, chosen




# ------------------------------------------------------------------------------------------------
# attention heads: names for the dims a model reshapes into heads
# ------------------------------------------------------------------------------------------------

_ATTENTION_ROLES = {-3: "heads", -1: "head_dim"}  # the dims of scaled_dot_product_attention's q, k, v
_SAME_PLACE = {  # ops whose result dims sit where their inputs' dims sit (counted from the right)
    "aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor", "aten.mul.Scalar",
    "aten.div.Scalar", "aten.neg.default", "aten.contiguous.default", "aten.clone.default", "aten.alias.default",
    "aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten.dropout.default", "aten.expand.default",
    "aten.slice.Tensor", "aten.cat.default",
}
_RESHAPES = {"aten.view.default", "aten.reshape.default", "aten._unsafe_view.default", "aten.unflatten.int",
             "aten.flatten.using_ints"}


def _rank(node: Any) -> int | None:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return val.dim() if isinstance(val, torch.Tensor) else None


def _shape(node: Node) -> list[int]:
    return [int(s) for s in node.meta["val"].shape]


def _source(node: Node, pos: int) -> list[tuple[Node, int]]:
    """Where the dim at (absolute) ``pos`` of ``node``'s result comes from: (input node, position) pairs,
    through the ops that move dims without changing what they mean; [] where the trail ends."""
    op = op_key(node.target)
    rank = _rank(node)
    if rank is None:
        return []
    if op in _SAME_PLACE:
        if op in ("aten.slice.Tensor", "aten.cat.default"):
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if int(dim) % rank == pos:  # a part of the dim, not the dim
                return []
        args = node.args[0] if op == "aten.cat.default" else node.args
        ins = [a for a in args if _rank(a) is not None]
        return [(a, pos - rank + _rank(a)) for a in ins if pos - rank + _rank(a) >= 0]
    src = node.args[0]
    if _rank(src) is None:
        return []
    if op == "aten.transpose.int":
        a, b = int(node.args[1]) % rank, int(node.args[2]) % rank
        return [(src, b if pos == a else a if pos == b else pos)]
    if op == "aten.permute.default":
        return [(src, int(node.args[1][pos]) % rank)]
    if op == "aten.unsqueeze.default":
        d = int(node.args[1]) % rank
        return [] if pos == d else [(src, pos - (pos > d))]
    return []


def _split_by(node: Node, pos: int) -> tuple[bool, list[tuple[Node, int]]]:
    """For a reshape: (whether the dim at ``pos`` is made by it, merged or split; else its source)."""
    src, dst = _shape(node.args[0]), _shape(node)
    for _, gi, gj in _reshape_groups(src, dst):
        if pos in gj:
            big_in, big_out = [i for i in gi if src[i] != 1], [j for j in gj if dst[j] != 1]
            if len(big_in) == 1 and big_out == [pos]:
                return False, [(node.args[0], big_in[0])]
            return bool(big_out), []
    return False, []


def head_dims(ep: ExportedProgram) -> dict[Node, dict[int, str]]:
    """Reshapes that make the dims attention treats as heads and head size: node -> {position: name}.

    From each ``scaled_dot_product_attention``, the trail of q, k and v's dims -3 and -1 is followed back
    through transposes, elementwise ops (RoPE) and pass-through reshapes to the reshape that split (or
    merged) them out of the hidden dim; that reshape's result names them ``heads`` and ``head_dim``."""
    marks: dict[Node, dict[int, str]] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function" or op_key(node.target) != "aten.scaled_dot_product_attention.default":
            continue
        for arg in node.args[:3]:
            rank = _rank(arg)
            if rank is None or rank < 3:
                continue
            for offset, role in _ATTENTION_ROLES.items():
                todo, seen = [(arg, rank + offset)], set()
                while todo:
                    n, pos = todo.pop()
                    if (n, pos) in seen or not isinstance(n, Node) or n.op != "call_function":
                        continue
                    seen.add((n, pos))
                    if op_key(n.target) in _RESHAPES:
                        made, todo_more = _split_by(n, pos)
                        if made:
                            marks.setdefault(n, {}).setdefault(pos, role)
                        todo += todo_more
                    else:
                        todo += _source(n, pos)
    return marks
