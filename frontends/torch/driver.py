"""The driver: export a torch model, decompose what has no converter, replay the graph with the converters
inside a nir trace, and `from_torch` around it; `supported_ops_markdown` documents the table."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.fx import Node
from torch.fx.node import map_arg

import nir.functions as nf
from nir.functions import _rename_ir
from nir.tensor import _TRACE, NamedTensor, current_trace
from nir.types import NamedShapeError, canonical_dtype, check_user_name

from ..python import Spec, Traced, trace
from ._common import (_SECTIONS, _STATE, CONVERTERS, Names, TorchNameError, UnsupportedOpError, _State,
                      _Unsupported, op_key)
from .naming import _constants, head_dims

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # the converters' own frames
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)')


def _origin(node: Node) -> str:
    """Where ``node`` came from in the user's model: ``in fc2 (Linear), model.py:12 `return self.fc2(h)```."""
    stack = [v for k, v in (node.meta.get("nn_module_stack") or {}).items() if not str(k).startswith("_empty")]
    if stack:
        path, cls = stack[-1]
        cls = (cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))).rsplit(".", 1)[-1]
        where = f"in {path} ({cls})" if path else f"in the top-level module ({cls})"
    if not stack or (len(stack) == 1 and where.endswith(f"({_Function.__name__})")):
        where = "in the top-level function"
    frames = [f for f in _FRAME.findall(node.meta.get("stack_trace") or "")
              if not f[0].startswith(_TORCH_DIR) and not os.path.abspath(f[0]).startswith(_THIS_DIR)]
    if frames:
        file, line, code = frames[-1]
        where += f", {os.path.basename(file)}:{line} `{code.strip()}`"
    return where


def _check_like_torch(op: str, out: Any, val: Any) -> Any:
    """Compare a converted value with torch's own result type (``meta['val']``): a shape that disagrees is a
    converter bug; a dtype that disagrees is cast to torch's (torch's promotion of 0-d tensors differs)."""
    if isinstance(out, NamedTensor) and isinstance(val, torch.Tensor):
        want = tuple(val.shape)
        if len(want) != out.ndim or any(isinstance(w, int) and w != s for w, s in zip(want, out.shape)):
            raise AssertionError(f"nir's converter for {op} gave shape {out.shape} {out.type.pretty()}, but torch's "
                                 f"result has shape {want}; please report this as a bug in nir.frontends.torch")
        dtype = canonical_dtype(val.dtype)
        return out if out.dtype == dtype else nf.cast(out, dtype)
    if isinstance(out, tuple) and isinstance(val, (list, tuple)) and len(out) == len(val):
        return tuple(_check_like_torch(op, o, v) for o, v in zip(out, val))
    return out


def _name_marked(out: Any, marks: Mapping[int, str]) -> Any:
    """``out`` with its unnamed dims at the marked positions named (``heads``), unless the name is taken."""
    if not isinstance(out, NamedTensor) or not marks:
        return out
    asserted = _STATE.get().asserted
    mapping = {out.type.names[pos]: name for pos, name in marks.items()
               if out.names[pos] is None and name not in out.names and name not in asserted}
    return _rename_ir(out, mapping)


def _convert_node(node: Node, env: Mapping[Node, Any]) -> Any:
    op = op_key(node.target)
    args = map_arg(node.args, lambda n: env[n])
    kwargs = map_arg(node.kwargs, lambda n: env[n])
    try:
        out = CONVERTERS[op](*args, **kwargs)
    except _Unsupported as e:
        raise UnsupportedOpError(f"{op} {_origin(node)}: {e}. Rewrite that part of the model, or add to the "
                                 "converter in nir.frontends.torch.CONVERTERS") from None
    except NamedShapeError as e:
        raise TorchNameError(f"{_origin(node)}, converting {op}: {e}. (The names come from from_torch's names= "
                             "and param_names=, and from the layers, e.g. fc1.out.)") from e
    except (TypeError, ValueError, IndexError) as e:
        e.add_note(f"while converting {op} {_origin(node)}")
        raise
    return _check_like_torch(op, out, node.meta.get("val"))


def _replay(ep: ExportedProgram, constants: Mapping[str, NamedTensor], state: _State,
            name: str, trainable: Mapping[str, str] | None = None) -> Callable[..., Any]:
    """A function over NamedTensors that replays ``ep``'s graph with the converters: traced by `nir.trace`
    it records a nir program; with a dynamic batch it replays for any batch size. With ``trainable``
    (placeholder -> parameter path) it is a function of ``(params, *inputs)`` that takes those
    parameters from the dict ``params`` instead of the constants."""
    graph = ep.graph
    user_inputs = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    output_kinds = [s.kind for s in ep.graph_signature.output_specs]
    out_spec = ep.call_spec.out_spec
    marks = head_dims(ep)

    def run(*inputs: NamedTensor) -> Any:
        params: Mapping[str, NamedTensor] = {}
        if trainable is not None:
            if not inputs or not isinstance(inputs[0], Mapping):
                raise TypeError(f"{name} was converted with params='inputs': call it as f(params, *inputs) with "
                                "params a dict of parameter path -> NamedTensor (start from the result's .params)")
            params, inputs = _checked_params(inputs[0], trainable, constants, name), inputs[1:]
        if len(inputs) != len(user_inputs):
            raise TypeError(f"{name} takes {len(user_inputs)} inputs ({', '.join(user_inputs)}), got {len(inputs)}")
        token = _STATE.set(dataclasses.replace(state, factors={}))
        try:
            env: dict[Node, Any] = {}
            given = dict(zip(user_inputs, inputs))
            tr = current_trace()
            for node in graph.nodes:
                if node.op == "placeholder":
                    if node.name in given:
                        env[node] = given[node.name]
                    elif trainable is not None and node.name in trainable:  # (a tied weight: renamed per use)
                        got = params[trainable[node.name]]
                        env[node] = _rename_ir(got, dict(zip(got.type.names, constants[node.name].type.names)))
                    elif node.users:  # lifted once, here: one named constant per parameter
                        c = constants[node.name]
                        env[node] = tr.lift(c) if tr is not None else c
                elif node.op == "call_function":
                    env[node] = _name_marked(_convert_node(node, env), marks.get(node, {}))
                elif node.op == "output":
                    leaves = [env[a] if isinstance(a, Node) else a
                              for a, kind in zip(node.args[0], output_kinds) if kind == OutputKind.USER_OUTPUT]
                    bad = [type(v).__name__ for v in leaves if not isinstance(v, NamedTensor)]
                    if bad:
                        raise UnsupportedOpError(f"the model returns {', '.join(bad)} values; a nir program returns "
                                                 "tensors only (return sizes and Python values outside the model)")
                    return torch.utils._pytree.tree_unflatten(leaves, out_spec)
                else:
                    raise UnsupportedOpError(f"FX node {node.op} {node.target} ({node.format_node()}) has no nir "
                                             "equivalent (control flow and submodule calls do not convert)")
        finally:
            _STATE.reset(token)
        raise AssertionError("the exported graph has no output node")  # pragma: no cover

    run.__name__ = run.__qualname__ = name
    return run


def _trainable(ep: ExportedProgram) -> dict[str, str]:
    """Parameter placeholder -> parameter path; a weight tied to another (GPT-2's lm_head to its token
    embedding) maps to the first path, as ``named_parameters()`` lists it, so its gradient sums both uses."""
    first: dict[int, str] = {}
    out = {}
    for s in ep.graph_signature.input_specs:
        if s.kind == InputKind.PARAMETER:
            out[s.arg.name] = first.setdefault(id(ep.state_dict[s.target]), s.target)
    return out


def _checked_params(params: Mapping[str, Any], trainable: Mapping[str, str], constants: Mapping[str, NamedTensor],
                    name: str) -> Mapping[str, NamedTensor]:
    """``params`` when it holds every trainable parameter with the names and shape it was converted with."""
    want: dict[str, NamedTensor] = {}
    for node, path in trainable.items():
        want.setdefault(path, constants[node])
    missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
    if missing or extra:
        raise KeyError(f"{name}: params must hold exactly the model's parameters; missing {missing}, unexpected "
                       f"{extra} (start from the converted model's .params)")
    for path, t in want.items():
        got = params[path]
        if not isinstance(got, NamedTensor) or got.names != t.names or got.shape != t.shape or got.dtype != t.dtype:
            shown = got.type.pretty() if isinstance(got, NamedTensor) else type(got).__name__
            raise NamedShapeError(f"{name}: parameter {path!r} is {shown}, but the model was converted with "
                                  f"{t.type.pretty()} {t.dtype}; pass tensors with the names of .params[{path!r}]")
    return params


# ------------------------------------------------------------------------------------------------
# from_torch
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchTraced(Traced):
    """A torch program converted to nir: a `nir.Traced` (``program``, ``structure``) that `nir.compile`
    takes as it is, plus ``exported`` (the ``torch.export.ExportedProgram``), ``function`` (the converted
    program as a Python function over NamedTensors: with ``dynamic_batch=True``, ``nir.compile(t.function)``
    serves any batch size), ``param_names`` (parameter -> the dim names its constant got) and, converted with
    ``params="inputs"``, ``params`` (parameter path -> its current value, named: what ``function(params,
    *inputs)`` and the program take first)."""

    exported: Any = field(repr=False, compare=False, default=None)
    function: Callable[..., Any] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    param_names: Mapping[str, tuple[str | None, ...]] = field(repr=False, compare=False, default_factory=dict)
    params: Mapping[str, NamedTensor] = field(repr=False, compare=False, default_factory=dict)


class _Function(torch.nn.Module):
    """A plain function as a module, so torch.export can take it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def _arg_names(obj: Any, ep: ExportedProgram, count: int) -> list[str]:
    """The names ``names=`` is keyed by: the forward (or function) parameter names, else the graph's."""
    fn = obj.forward if isinstance(obj, torch.nn.Module) else obj
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]


def _input_names(arg_names: Sequence[str], examples: Sequence[Any],
                 names: Mapping[str | int, Names] | Names | None) -> list[tuple[str | None, ...]]:
    """Per input, its dim names (None for unnamed), from ``names=`` or from NamedTensor examples."""
    if names is None:
        names = {}
    elif not isinstance(names, Mapping):
        if len(examples) != 1:
            raise TypeError(f"names= is a sequence, but the model takes {len(examples)} inputs "
                            f"({', '.join(arg_names)}); give a dict such as {{{arg_names[0]!r}: ('N', 'C')}}")
        names = {0: names}
    unknown = [k for k in names if k not in arg_names and not (isinstance(k, int) and 0 <= k < len(examples))]
    if unknown:
        hint = f" (a model with one input also takes a plain tuple: names={tuple(names[unknown[0]])!r})" \
            if len(examples) == 1 and len(names) == 1 else ""
        raise KeyError(f"names= has keys {unknown} that are not inputs of the model; its inputs are: "
                       f"{', '.join(arg_names)}{hint}")
    out = []
    for i, (arg, x) in enumerate(zip(arg_names, examples)):
        given = names.get(arg, names.get(i))
        if given is None:
            given = x.names if isinstance(x, NamedTensor) else (None,) * x.dim()
        given = tuple(given)
        if len(given) != x.dim():
            raise NamedShapeError(f"names[{arg!r}] gives {len(given)} names {given}, but input {arg!r} has "
                                  f"{x.dim()} dims of sizes {tuple(x.shape)}; give one name (or None) per dim")
        for n in given:
            if n is not None:
                check_user_name(n, f"names[{arg!r}]")
        out.append(given)
    return out


def _to_torch(x: Any) -> Any:
    if isinstance(x, NamedTensor):
        return torch.from_numpy(np.ascontiguousarray(x.numpy()))
    return x


def _name_ages(ep: ExportedProgram, constants: Mapping[str, NamedTensor]) -> dict[str, int]:
    """Each parameter dim name -> the position in the graph of the parameter's first use."""
    ages: dict[str, int] = {}
    for k, node in enumerate(ep.graph.nodes):
        for a in node.all_input_nodes:
            if a.name in constants:
                for n in constants[a.name].names:
                    if n is not None:
                        ages.setdefault(n, k)
    return ages


def _quiet_run_decompositions(ep: ExportedProgram, table: Mapping[Any, Any]) -> ExportedProgram:
    with warnings.catch_warnings():  # torch's own pytree deprecation noise, nothing a user can act on
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        return ep.run_decompositions(dict(table))


def _mutable(op: Any) -> bool:
    schema = getattr(op, "_schema", None)
    return schema is not None and schema.is_mutable


def _functional(op: Any) -> Any:
    """The functional twin of an in-place op (``aten.relu_.default`` -> ``aten.relu.default``), which is what
    functionalization turns it into; other ops (and ``out=`` variants, whose twin has another overload) as
    they are."""
    if not _mutable(op) or not op._schema.name.endswith("_"):
        return op
    schema = op._schema
    packet = getattr(torch.ops.aten, schema.name.split("::")[-1][:-1], None)
    return getattr(packet, op._overloadname, op) if packet is not None else op


def _functional_and_convertible(ep: ExportedProgram) -> ExportedProgram:
    """``ep`` functionalized, with the ops that have no converter decomposed by torch's own decompositions.

    Functionalization is torch.export's own: `run_decompositions` rewrites every in-place and ``out=`` op
    (``relu_``, ``add_``, ``index_put_``) into its functional op, whatever decomposition table it is given;
    a model's writes into its buffers (batch norm's running statistics in training mode) become extra
    outputs that the converted program does not return. Only ops without a converter are decomposed:
    decomposing everything would turn Linear into reshapes that merge the batch dims and lose their names.
    Each pass re-traces the model, so the first pass does both at once; another pass is needed only when
    a decomposition produces ops that have no converter either."""
    table, functional = None, False
    for _ in range(4):
        targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
        missing = {op for op in map(_functional, targets) if op_key(op) not in CONVERTERS}
        if missing:
            table = table or torch.export.default_decompositions()
        chosen = {op: table[op] for op in missing if isinstance(op, torch._ops.OpOverload) and op in table}
        if not chosen and (functional or not any(map(_mutable, targets))):
            break
        ep, functional = _quiet_run_decompositions(ep, chosen), True
    return ep


def _check_supported(ep: ExportedProgram) -> None:
    missing: dict[str, list[Node]] = {}
    for n in ep.graph.nodes:
        if n.op == "call_function" and op_key(n.target) not in CONVERTERS:
            missing.setdefault(op_key(n.target), []).append(n)
    if missing:
        op, nodes = next(iter(missing.items()))
        others = [o for o in missing if o != op]
        raise UnsupportedOpError(
            f"{op} has no nir converter (used {_origin(nodes[0])}). nir converts the ATen ops listed in "
            "docs/torch_ops.md (nir.frontends.torch.supported_ops_markdown()); rewrite that part of the model with "
            "supported ops, or add a converter to nir.frontends.torch.CONVERTERS"
            + (f". Other ops without a converter in this model: {', '.join(others)}" if others else ""))


def from_torch(module_or_fn: Any, example_inputs: Any = None, names: Mapping[str | int, Names] | Names | None = None,
               *, param_names: Mapping[str, Names] | None = None, dynamic_batch: bool = False,
               params: str = "constants") -> TorchTraced:
    """Convert a ``torch.nn.Module`` (or a function of tensors, or a ``torch.export.ExportedProgram``) into a
    named nir program, ready for ``nir.compile(result, target=..., backend=...)``.

    ``example_inputs``: a tensor or a tuple of them (torch tensors, or NamedTensors whose names are used).
    ``names``: the dim names of each input, keyed by the forward's parameter name (or position), e.g.
    ``{"x": ("N", "C", "H", "W")}``; None leaves a dim unnamed. Names propagate through nir's rules and
    conflicts among them raise `TorchNameError` naming the module. ``param_names``: dim names for
    parameters and buffers by path, e.g. ``{"fc1.weight": ("hidden", "features")}``; the defaults name dims
    after layer and role (`default_param_names`). ``dynamic_batch``: export with a symbolic batch (dim 0 of
    every input), so that ``result.function`` converts again for any batch size. ``params``: ``"constants"``
    (the weights are baked into the program) or ``"inputs"``: the program and ``result.function`` take
    ``(params, *inputs)``, with ``params`` a dict of parameter path -> NamedTensor (``result.params`` holds
    the model's current values with their dim names), so the model can be trained with `nir.grad` and
    `nir.optim` (buffers, such as batch-norm statistics, stay constants).

    The model is exported in eval mode under no_grad (its training flag is restored afterwards). An op
    without a converter raises `UnsupportedOpError` naming the op and where the model uses it.

    >>> t = nir.from_torch(mlp, (torch.randn(4, 16),), names={"x": ("N", "C")})
    >>> nir.compile(t, backend="reference")(nir.randn(4, 16, names=("N", "C"))).names
    ('N', 'fc2.out')
    """
    if params not in ("constants", "inputs"):
        raise ValueError(f"from_torch: params={params!r}; choose 'constants' (weights baked in) or 'inputs' "
                         "(a function of (params, *inputs))")
    token = _TRACE.set(None)  # called while tracing (a workload that converts on first use): convert on its own
    try:
        return _from_torch(module_or_fn, example_inputs, names, param_names, dynamic_batch, params == "inputs")
    finally:
        _TRACE.reset(token)


def _from_torch(module_or_fn: Any, example_inputs: Any, names: Mapping[str | int, Names] | Names | None,
                param_names: Mapping[str, Names] | None, dynamic_batch: bool, as_inputs: bool = False) -> TorchTraced:
    if example_inputs is not None and not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    if isinstance(module_or_fn, ExportedProgram):
        ep = module_or_fn
        if example_inputs is None:
            example_inputs = tuple(n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder" and n.name in
                                   {s.arg.name for s in ep.graph_signature.input_specs
                                    if s.kind == InputKind.USER_INPUT})
    else:
        if example_inputs is None:
            raise TypeError("from_torch needs example_inputs: a tensor or a tuple of tensors, one per model input")
        module = module_or_fn if isinstance(module_or_fn, torch.nn.Module) else _Function(module_or_fn)
        args = tuple(_to_torch(x) for x in example_inputs)
        dynamic = None
        if dynamic_batch:
            batch = torch.export.Dim("batch")
            dynamic = tuple({0: batch} if isinstance(a, torch.Tensor) and a.dim() else None for a in args)
        training = {m: m.training for m in module.modules()}
        module.eval()
        try:
            with torch.no_grad():
                ep = torch.export.export(module, args, dynamic_shapes=dynamic)
        finally:
            for m, flag in training.items():  # each submodule as it was (a frozen batchnorm stays in eval)
                m.training = flag
    ep = _functional_and_convertible(ep)
    _check_supported(ep)

    arg_names = _arg_names(module_or_fn, ep, len(example_inputs))
    input_names = _input_names(arg_names, example_inputs, names)
    param_names = dict(param_names or {})
    constants, chosen = _constants(ep, param_names)
    asserted = {n for ns in [*input_names, *param_names.values()] for n in ns if n is not None}
    label = getattr(module_or_fn, "__name__", type(module_or_fn).__name__)
    trainable = _trainable(ep) if as_inputs else None
    function = _replay(ep, constants, _State(frozenset(asserted), _name_ages(ep, constants)), label, trainable)
    specs = [Spec(ns, tuple(int(s) for s in x.shape), canonical_dtype(x.dtype))
             for ns, x in zip(input_names, example_inputs)]
    values: dict[str, NamedTensor] = {}
    for node, path in (trainable or {}).items():
        values.setdefault(path, constants[node])
    traced = trace(function, {k: Spec.of(v) for k, v in values.items()}, *specs) if as_inputs else trace(function, *specs)
    return TorchTraced(traced.program, traced.structure, traced.inputs, exported=ep, function=function,
                       param_names=chosen, params=values)




# ------------------------------------------------------------------------------------------------
# documentation
# ------------------------------------------------------------------------------------------------

_SECTION_TITLES = {
    "elementwise": "Elementwise", "reduction": "Reductions and softmax",
    "layer": "Layers: contraction, normalization, convolution, pooling, attention, embedding",
    "layout": "Layout and indexing", "identity": "Copies and dropout (no-ops in eval mode)",
    "dtype": "Dtype conversion", "creation": "Creation", "symbolic": "Sizes, multiple outputs and assertions",
}


def supported_ops_markdown() -> str:
    """The list of ATen ops the torch frontend converts, as Markdown (checked in as ``docs/torch_ops.md``)."""
    lines = [
        "# ATen ops that `nir.from_torch` converts",
        "",
        "Generated from the converter table `nir.frontends.torch.CONVERTERS` by",
        "`nir.frontends.torch.supported_ops_markdown()`; a test checks that this file is current. Regenerate it with",
        "",
        "    python -c \"from nir.frontends.torch import supported_ops_markdown as m; "
        "open('docs/torch_ops.md', 'w').write(m())\"",
        "",
        "An op that is not listed is first decomposed with torch's own decomposition, when torch has one, into",
        "ops that are; an op that still has no converter raises `UnsupportedOpError`, naming the op and the",
        "module and source line of the model that uses it.",
        "",
        "Ops with several operands (elementwise ops, cat) broadcast by position, as in torch. Where two",
        "operands name the dims at one position differently, a name derived from a layer (`fc1.out`) takes the",
        "other one; two names the user gave (`names=`, `param_names=`) that differ are a conflict.",
    ]
    for section, title in _SECTION_TITLES.items():
        lines += ["", f"## {title}", "", "| ATen op | converts to |", "|---|---|"]
        for op in sorted(_SECTIONS.get(section, [])):
            doc = " ".join((CONVERTERS[op].__doc__ or "").split("\n\n")[0].split()).replace("|", "\\|")
            lines.append(f"| `{op}` | {doc} |")
    return "\n".join(lines) + "\n"

