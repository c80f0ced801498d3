"""`nir.compile`: trace on the first call per input signature, build with a backend, cache, run.

    @nir.compile(target="llvm", backend="xla")
    def normalize(x):
        return (x - x.mean(("H", "W"), keepdim=True)) / x.std(("H", "W"), keepdim=True)

    y = normalize(images)          # traces, compiles, runs; later calls with the same signature just run
    print(normalize.ir)            # the nir program
    normalize.export("out/")       # every compiled signature + manifest.json; nir.load("out/") runs it again

Serving: a compiled function may be called from many threads at once; each new signature is traced and
built once (other threads asking for it wait), at most ``max_signatures`` stay compiled (least recently
used first out), and ``dynamic=("N",)`` serves every size of ``N`` from one program per bucket
(see `nir.dynamic`).

Arguments may be trees — dicts, lists and tuples of NamedTensors (parameters, optimizer states): each
argument structure gets its own compiled function of the leaves (dict keys in sorted order), so a whole
train step ``step(params, opt_state, x, y)`` compiles as one program.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from concurrent.futures import Future
from typing import Any, Callable, Mapping, Sequence

from . import backends as _backends
from .artifact import ArtifactEntry, Loaded, export_artifact, load
from .dispatch import Dispatch, Entry, Key, SignatureError, check_signature, key_of, once, specs_of
from .dynamic import DynamicError, PaddedRun, analyze, bucket_key, parse_dynamic, probe_sizes
from .frontends.python import Spec, Traced, flatten_args, trace
from .ir import Program, verify
from .quant.precision import PRECISIONS, apply_precision
from .target import KINDS, Target, parse_target
from .tensor import NamedTensor
from .tree import Tree, unflatten
from .types import NamedShapeError

__all__ = ["compile", "Compiled", "load", "Loaded", "SignatureError", "resolve_backend", "MAX_SIGNATURES"]

MAX_SIGNATURES = 64  # compiled signatures kept per function by default


def resolve_backend(backend: str, target: Target) -> str:
    """The backend that will serve ``target``: ``backend`` itself, checked, or for ``"auto"`` the first
    installed backend that serves the target."""
    if backend == "auto":
        names = _backends.for_target(target)
        if not names:
            need = " or ".join(_backends.INSTALL_HINT[n] for n in KINDS[target.kind] if n in _backends.INSTALL_HINT)
            raise _backends.BackendError(f"no installed backend serves target {str(target)!r}; install one: {need}")
        return names[0]
    mod = _backends.get(backend)
    if not mod.serves(target):
        serving = [n for n in _backends.for_target(target)]
        raise _backends.BackendChoiceError(f"backend {backend!r} cannot serve target {str(target)!r}; backends that "
                                           f"can: {', '.join(serving) or 'none installed'}")
    return backend


class Compiled(Dispatch):
    """A function compiled with nir: call it with NamedTensors (from any number of threads).

    Attributes: ``target``, ``backend`` (resolved name), ``ir`` (program text of the latest signature),
    ``program``, ``signatures``, ``backend_ir(kind)``, ``export(path)``, ``lower(*specs)`` (compile
    ahead of time), ``max_signatures``, ``dynamic``.
    """

    def __init__(self, fn: Callable[..., Any] | Traced | Program, target: str | Target = "llvm",
                 backend: str = "auto", inputs: Sequence[NamedTensor | Spec] | None = None,
                 tuning: str | pathlib.Path | None = None, max_signatures: int = MAX_SIGNATURES,
                 dynamic: Sequence[str] | Mapping[str, Sequence[int] | None] | None = None,
                 precision: str | None = None, **options: Any) -> None:
        super().__init__()
        self.target = parse_target(target)
        if precision is not None and precision not in PRECISIONS:
            options["precision"] = precision  # not a policy: the backend's own option (XLA's dot precision)
            precision = None
        self.precision = precision
        self._requested = backend
        self._default_backend = resolve_backend(backend, self.target)
        self.tuning = pathlib.Path(tuning) if tuning is not None else None
        self.options = options
        if not isinstance(max_signatures, int) or max_signatures < 1:
            raise ValueError(f"max_signatures={max_signatures!r}; give a positive number of signatures to keep")
        self.max_signatures = max_signatures
        self.dynamic = parse_dynamic(dynamic)
        self._fn = fn
        self._entries: dict[Key, Entry] = {}  # compiled signatures (buckets for dynamic dims), bounded
        self._building: dict[Key, Future] = {}
        self._fixed: tuple[Spec, ...] | None = None
        self._given: Traced | None = None  # a traced Program given instead of a function
        self._trees: dict[Tree, Compiled] = {}  # argument structure -> the compiled function of its leaves
        if isinstance(fn, (Traced, Program)):
            if self.dynamic:
                raise ValueError("dynamic= needs a Python function, which nir traces at several sizes; a traced "
                                 "Program has fixed sizes (convert the model with the sizes it will be called with)")
            traced = fn if isinstance(fn, Traced) else Traced(fn, tuple(range(len(fn.outputs))) if
                                                               len(fn.outputs) != 1 else 0)
            self._given = traced
            self._fixed = tuple(Spec(v.type.user_names, v.type.shape, v.type.dtype) for v in traced.program.inputs)
            self._resolve(key_of(self._fixed))
        else:
            functools.update_wrapper(self, fn)  # type: ignore[arg-type]
            if inputs is not None and _has_tree(inputs):  # compiled now; calls are checked by structure
                self.lower(*inputs)
            elif inputs is not None:
                self._fixed = tuple(Spec.of(x) for x in inputs)
                self.lower(*self._fixed)

    # -- trees of tensors as arguments ------------------------------------------------------------

    def _call_slow(self, args: Sequence[Any]) -> Any:
        # trees never take the fast path (it wants NamedTensors), so they are told apart here, off it
        if not _has_tree(args):
            return super()._call_slow(args)
        leaves, tree = flatten_args(args)
        if self._given is not None and self._given.inputs is not None:  # a traced program of tree arguments
            if tree != self._given.inputs:
                raise SignatureError(f"the arguments have the structure {tree}, but the program takes "
                                     f"{self._given.inputs}")
            return super().__call__(*leaves)
        sub = self._of_tree(tree)
        out = sub(*leaves)
        self._last = sub._last
        return out

    def _of_tree(self, tree: Tree) -> "Compiled":
        """The compiled function of the leaves of arguments with structure ``tree`` (made once)."""
        with self._lock:
            sub = self._trees.get(tree)
            if sub is None:
                if self._given is not None:
                    raise TypeError(f"this compiled program takes {len(self._given.program.inputs)} tensors, not "
                                    f"the structure {tree}")
                fn = self._fn

                def of_leaves(*leaves: Any) -> Any:
                    return fn(*unflatten(tree, leaves))  # type: ignore[operator]
                of_leaves.__name__ = getattr(fn, "__name__", "fn")
                sub = self._trees[tree] = Compiled(of_leaves, self.target, self._requested, None, self.tuning,
                                                   self.max_signatures, self.dynamic, self.precision,
                                                   **self.options)
        return sub

    # -- compiling signatures --------------------------------------------------------------------

    def _declared(self) -> Sequence[tuple[Spec, ...]]:
        return (self._fixed,) if self._fixed is not None else ()

    def _resolve(self, key: Key) -> Any:
        """The runner for call signature ``key``: build its program (or its bucket's) once, remember it."""
        if self._fixed is not None:
            check_signature(specs_of(key), self._fixed, tuple(self.dynamic))
        bkey, sizes = bucket_key(key, self.dynamic) if self.dynamic else (key, {})
        entry = once(self._lock, self._building, self._entries.get, bkey,
                     lambda: self._build(bkey, sizes), self._add)
        run = entry if bkey == key else PaddedRun(entry, sizes)
        self._remember(key, run, limit=8 * self.max_signatures)
        return run

    def _build(self, bkey: Key, sizes: Mapping[str, int]) -> Entry:
        specs = specs_of(bkey)
        padding, traced = None, self._given
        if traced is None:
            traced = trace(self._fn, *self._global_specs(specs))  # type: ignore[arg-type]
            if sizes:
                padding = self._padding(specs, traced, sizes)
        if self.precision is not None:
            traced = dataclasses.replace(traced, program=apply_precision(verify(traced.program), self.precision))
        program = verify(traced.program)
        backend, options, tuned = self._default_backend, dict(self.options), False
        if self.tuning is not None and "mesh" in options and "shard" not in options:  # a measured shard map
            from .tune.shard import tuned_options
            options, tuned = tuned_options(program, self.target, self.tuning, options), True
        elif self.tuning is not None:  # apply the best tuning record, if any (no re-tuning)
            from .tune.search import config_for
            found = config_for(program, self.target, self.tuning,
                               None if self._requested == "auto" else self._requested)
            if found is not None:
                backend, laid_out, tuned_options = found
                program, tuned, options = verify(laid_out), True, {**tuned_options, **options}
        executable = _backends.get(backend).build(program, self.target, **options)
        return Entry(specs, traced.program, traced.structure, executable, backend, tuned, padding)

    def _global_specs(self, specs: tuple[Spec, ...]) -> tuple[Spec, ...]:
        """The signature to trace: the call's, or for a backend that splits inputs across processes (XLA's
        ``local_inputs=True``) the whole values' that the processes' parts make up."""
        hook = getattr(_backends.get(self._default_backend), "global_specs", None)
        return specs if hook is None else hook(specs, self.target, self.options)

    def _padding(self, specs: tuple[Spec, ...], traced: Traced, sizes: Mapping[str, int]) -> Any:
        """Check by a second trace that padding the dynamic dims is sound; the Padding that does it."""
        bucket = {n: next(s.shape[s.names.index(n)] for s in specs if n in s.names) for n in sizes}
        probe = probe_sizes(bucket)
        at_probe = tuple(Spec(s.names, tuple(probe.get(n, d) for n, d in zip(s.names, s.shape)),
                              s.dtype) for s in specs)
        try:
            probed = trace(self._fn, *at_probe)  # type: ignore[arg-type]
        except NamedShapeError as e:
            raise DynamicError(f"dynamic={tuple(self.dynamic)}: the function traces at "
                               f"{dict(bucket)} but not at {dict(probe)} ({e}); padding cannot serve it") from None
        if probed.structure != traced.structure:
            raise DynamicError(f"dynamic={tuple(self.dynamic)}: the function returns a different structure at "
                               f"{dict(probe)} than at {dict(bucket)}")
        return analyze(traced.program, probed.program, bucket, probe)

    def _add(self, entry: Entry) -> None:
        """Keep a new entry (under the lock); past ``max_signatures`` drop the least recently used."""
        entry.tick = next(self._clock)
        self._entries[key_of(entry.specs)] = entry
        self._last = entry
        while len(self._entries) > self.max_signatures:
            key, old = min(self._entries.items(), key=lambda kv: kv[1].tick)
            del self._entries[key]
            self._fast = {k: r for k, r in self._fast.items() if r.entry is not old}
            if self._last is old:
                self._last = entry

    @property
    def backend(self) -> str:
        """The backend of the latest compiled signature (before any call: the default for the target)."""
        return self._last.backend if self._last is not None else self._default_backend

    @property
    def tuned(self) -> bool:
        """Whether the latest compiled signature applied a tuning record."""
        return self._last is not None and self._last.tuned

    def lower(self, *specs: Any) -> "Compiled":
        """Trace and build for ``specs`` (NamedTensors or specs, or trees of them) now, without running."""
        if _has_tree(specs):
            leaves, tree = flatten_args(specs)
            sub = self._of_tree(tree).lower(*leaves)
            self._last = sub._last
            return self
        run = self._resolve(key_of(tuple(Spec.of(s) for s in specs)))
        self._last = run.entry
        return self

    # -- inspecting and exporting ----------------------------------------------------------------

    def _entry(self) -> Entry:
        if self._last is None:
            raise RuntimeError("nothing is compiled yet: call the function once, or .lower(nir.spec(...)) first")
        return self._last

    @property
    def program(self) -> Program:
        """The nir Program of the latest compiled signature."""
        return self._entry().program

    @property
    def ir(self) -> str:
        """The nir program of the latest compiled signature, readable (large constants elided; the
        complete, parseable form is ``.program.text``)."""
        return str(self.program)

    @property
    def signatures(self) -> list[tuple[Spec, ...]]:
        """Every input signature compiled and kept (for dynamic dims: the bucket sizes; for tree arguments:
        the specs of their leaves)."""
        with self._lock:
            return [e.specs for e in self._entries.values()] + [s for t in self._trees.values() for s in t.signatures]

    def backend_ir(self, kind: str | None = None) -> str:
        """The backend's own IR (Relax for TVM; StableHLO/HLO for XLA; the nir text for reference)."""
        return self._entry().executable.backend_ir(kind) if kind else self._entry().executable.backend_ir()

    def export(self, path: str | pathlib.Path, signature: Sequence[NamedTensor | Spec] | None = None) -> pathlib.Path:
        """Write every compiled signature as one artifact directory (`nir.load` dispatches by signature,
        as this function does), or only the one serving ``signature`` (a sequence of specs or tensors).
        The manifest, written last, records each file's SHA-256; see `nir.artifact`."""
        with self._lock:
            entries = list(self._entries.values())
            latest = next((t for t in self._trees.values() if t._last is self._last), None)
        if not entries and latest is not None:  # tree arguments: exported as a function of their leaves
            return latest.export(path, signature)
        if not entries:
            self._entry()  # says what to do
        if signature is not None:
            key = key_of(tuple(Spec.of(s) for s in signature))
            bkey = bucket_key(key, self.dynamic)[0] if self.dynamic else key
            entries = [e for e in entries if key_of(e.specs) == bkey]
            if not entries:
                raise SignatureError(f"signature ({', '.join(str(s) for s in specs_of(key))}) is not compiled; "
                                     f"compiled: {' or '.join('(' + ', '.join(map(str, s)) + ')' for s in self.signatures)}"
                                     ". Call the function with it (or .lower() it) first")
        for e in entries:
            if not hasattr(e.executable, "save"):
                raise _backends.BackendError(f"backend {e.backend!r} cannot export")
        return export_artifact(path, self.target, [ArtifactEntry(e.executable, e.backend, e.structure, e.padding)
                                                   for e in entries], self.dynamic)

    def __repr__(self) -> str:
        name = getattr(self._fn, "__name__", type(self._fn).__name__)
        return f"<nir.Compiled {name} target={str(self.target)!r} backend={self.backend!r}>"


def _has_tree(args: Sequence[Any]) -> bool:
    """Whether call arguments include a dict, or a list/tuple holding tensors or specs (a plain nested list
    of numbers stays array data)."""
    def holds(x: Any) -> bool:
        if isinstance(x, dict):
            return True
        if isinstance(x, (list, tuple)):
            return any(isinstance(v, (NamedTensor, Spec)) or holds(v) for v in x)
        return False
    return any(holds(a) for a in args)


def compile(fn: Callable[..., Any] | Traced | Program | None = None, *, target: str | Target = "llvm",  # noqa: A001
            backend: str = "auto", inputs: Sequence[NamedTensor | Spec] | None = None,
            tuning: str | pathlib.Path | None = None, max_signatures: int = MAX_SIGNATURES,
            dynamic: Sequence[str] | Mapping[str, Sequence[int] | None] | None = None, precision: str | None = None,
            **options: Any) -> Any:
    """Compile ``fn`` (a function over NamedTensors, or a traced Program) for ``target`` with ``backend``
    (``"auto"``: the first installed backend serving the target; ``"reference"``, ``"tvm"``, ``"xla"``).
    ``target`` is ``"llvm"`` (the CPU; alias ``"cpu"``), ``"cuda"`` (aliases ``"gpu"``, ``"nvidia"``) or
    ``"tpu"``, with TVM-style options: ``"llvm -mcpu=znver3 -num-cores=4"``, ``"cuda -arch=sm_90"``. An
    unknown target raises `nir.TargetError` and an unknown backend (or one that cannot serve the target)
    `nir.backends.BackendChoiceError`, both ValueErrors; failures while building or running raise
    `nir.backends.BackendError`, a RuntimeError.
    Usable as ``@nir.compile`` or ``@nir.compile(target=...)``. With ``inputs=[nir.spec(...)]`` it compiles
    now and later calls must match that signature. ``tuning=DIR`` applies the best record of a tuning
    database written by `nir tune` (layouts, options, schedules; with ``backend="auto"`` also the
    measured fastest backend) without re-tuning; a program with no record compiles as usual. With
    ``mesh=`` and no ``shard=``, it applies the shard map `nir tune --mesh` measured for that mesh.

    ``max_signatures`` bounds how many input signatures stay compiled (least recently used dropped
    first; a dropped one compiles again when called). ``dynamic=("N",)`` lets the size of dim ``N`` vary
    from call to call at the cost of one build per power-of-two bucket (``dynamic={"N": (8, 64)}``:
    those buckets): calls are padded to the bucket and the results cut back, which nir checks is exact
    (no op may combine values across ``N``; `nir.dynamic` explains). Extra ``options`` go to the backend
    (e.g. XLA's ``mesh=``/``shard=``). The result may be called from several threads at once.

    ``precision="bf16"`` computes every float32 contraction and convolution with bfloat16 operands and
    float32 accumulation (weights rounded once, at compile time; everything else stays float32); the
    default, ``"fp32"``, changes nothing. Other values (``"highest"``...) go to the backend as its
    ``precision`` option (XLA's dot precision)."""
    if fn is None:
        return lambda f: Compiled(f, target, backend, inputs, tuning, max_signatures, dynamic, precision, **options)
    return Compiled(fn, target, backend, inputs, tuning, max_signatures, dynamic, precision, **options)
