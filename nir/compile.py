"""`nir.compile`: trace on the first call per input signature, build with a backend, cache, run.

    @nir.compile(target="llvm", backend="xla")
    def normalize(x):
        return (x - x.mean(("H", "W"), keepdim=True)) / x.std(("H", "W"), keepdim=True)

    y = normalize(images)          # traces, compiles, runs; later calls with the same signature just run
    print(normalize.ir)            # the nir program
    normalize.export("out/")       # a library + manifest.json; nir.load("out/") runs it again
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from . import backends as _backends
from .artifact import read_manifest
from .frontends.python import Spec, Traced, trace
from .ir import Program, verify
from .target import KINDS, Target, parse_target
from .tensor import NamedTensor, _to_numpy
from .types import NamedShapeError, TensorType, canonical_dtype

__all__ = ["compile", "Compiled", "load", "Loaded", "SignatureError", "resolve_backend"]


class SignatureError(NamedShapeError):
    """A call's inputs do not match the signature a program was compiled (or exported) for."""


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


def _describe(sig: Sequence[Spec]) -> str:
    return ", ".join(str(s) for s in sig)


class _Entry:
    """One compiled signature: the traced program and the backend executable."""

    def __init__(self, traced: Traced, executable: Any, backend: str, tuned: bool) -> None:
        self.traced, self.executable, self.backend, self.tuned = traced, executable, backend, tuned
        self.out_types = [v.type for v in traced.program.outputs]

    def run(self, arrays: Sequence[Any]) -> Any:
        outs = self.executable(*arrays)
        return self.traced.unflatten([NamedTensor._eager(np.asarray(o), t) for o, t in zip(outs, self.out_types)])


def _signature(args: Sequence[Any], fixed: Sequence[Spec] | None) -> tuple[Spec, ...]:
    sig = []
    for i, a in enumerate(args):
        if isinstance(a, NamedTensor):
            if a.is_traced:
                raise TypeError(f"argument {i} is a traced value: call compiled functions on concrete tensors "
                                "(calling one compiled function inside another's trace is not supported)")
            sig.append(Spec.of(a))
        elif fixed is not None and i < len(fixed):  # raw arrays take the fixed signature's names
            arr = _to_numpy(a)
            sig.append(Spec(fixed[i].names, tuple(arr.shape), canonical_dtype(arr.dtype)))
        else:
            raise TypeError(f"argument {i} is a {type(a).__name__}, not a NamedTensor; wrap it with "
                            f"nir.tensor(data, names=...) so its dims have names")
    return tuple(sig)


def _check_signature(sig: Sequence[Spec], want: Sequence[Spec]) -> None:
    if len(sig) != len(want):
        raise SignatureError(f"the program takes {len(want)} inputs ({_describe(want)}), got {len(sig)}")
    for i, (g, w) in enumerate(zip(sig, want)):
        if g != w:
            what = []
            if g.names != w.names:
                what.append(f"names {g.names} instead of {w.names} (use rename/refine_names/align_to)")
            if g.shape != w.shape:
                what.append(f"shape {g.shape} instead of {w.shape}")
            if g.dtype != w.dtype:
                what.append(f"dtype {g.dtype} instead of {w.dtype} (use .to('{w.dtype}'))")
            raise SignatureError(f"input {i} is {g} but the program was compiled for {w}: " + "; ".join(what))


class Compiled:
    """A function compiled with nir: call it with NamedTensors.

    Attributes: ``target``, ``backend`` (resolved name), ``ir`` (program text of the latest signature),
    ``program``, ``backend_ir(kind)``, ``export(path)``, ``lower(*specs)`` (compile ahead of time).
    """

    def __init__(self, fn: Callable[..., Any] | Traced | Program, target: str | Target = "llvm",
                 backend: str = "auto", inputs: Sequence[NamedTensor | Spec] | None = None,
                 tuning: str | pathlib.Path | None = None, **options: Any) -> None:
        self.target = parse_target(target)
        self._requested = backend
        self._default_backend = resolve_backend(backend, self.target)
        self.tuning = pathlib.Path(tuning) if tuning is not None else None
        self.options = options
        self._fn = fn
        self._cache: dict[tuple[Spec, ...], _Entry] = {}
        self._last: _Entry | None = None
        self._fixed: tuple[Spec, ...] | None = None
        if isinstance(fn, (Traced, Program)):
            traced = fn if isinstance(fn, Traced) else Traced(fn, tuple(range(len(fn.outputs))) if
                                                               len(fn.outputs) != 1 else 0)
            self._fixed = tuple(Spec(v.type.user_names, v.type.shape,
                                     v.type.dtype) for v in traced.program.inputs)
            self._add(self._fixed, traced)
        else:
            functools.update_wrapper(self, fn)  # type: ignore[arg-type]
            if inputs is not None:
                self._fixed = tuple(Spec.of(x) for x in inputs)
                self.lower(*self._fixed)

    def _add(self, sig: tuple[Spec, ...], traced: Traced) -> _Entry:
        program = verify(traced.program)
        backend, options, tuned = self._default_backend, dict(self.options), False
        if self.tuning is not None:  # apply the best tuning record, if any (no re-tuning)
            from .tune.search import config_for
            found = config_for(program, self.target, self.tuning,
                               None if self._requested == "auto" else self._requested)
            if found is not None:
                backend, laid_out, tuned_options = found
                program, tuned, options = verify(laid_out), True, {**tuned_options, **options}
        executable = _backends.get(backend).build(program, self.target, **options)
        entry = self._cache[sig] = _Entry(traced, executable, backend, tuned)
        self._last = entry
        return entry

    @property
    def backend(self) -> str:
        """The backend of the latest compiled signature (before any call: the default for the target)."""
        return self._last.backend if self._last is not None else self._default_backend

    @property
    def tuned(self) -> bool:
        """Whether the latest compiled signature applied a tuning record."""
        return self._last is not None and self._last.tuned

    def lower(self, *specs: NamedTensor | Spec) -> "Compiled":
        """Trace and build for ``specs`` now, without running."""
        sig = tuple(Spec.of(s) for s in specs)
        if sig not in self._cache:
            self._add(sig, trace(self._fn, *sig))  # type: ignore[arg-type]
        self._last = self._cache[sig]
        return self

    def __call__(self, *args: Any) -> Any:
        sig = _signature(args, self._fixed)
        entry = self._cache.get(sig)
        if entry is None:
            if self._fixed is not None:
                _check_signature(sig, self._fixed)
            entry = self._add(sig, trace(self._fn, *sig))  # type: ignore[arg-type]
        self._last = entry
        return entry.run([a._data if isinstance(a, NamedTensor) else _to_numpy(a) for a in args])

    def _entry(self) -> _Entry:
        if self._last is None:
            raise RuntimeError("nothing is compiled yet: call the function once, or .lower(nir.spec(...)) first")
        return self._last

    @property
    def program(self) -> Program:
        """The nir Program of the latest compiled signature."""
        return self._entry().traced.program

    @property
    def ir(self) -> str:
        """The nir program of the latest compiled signature, readable (large constants elided; the
        complete, parseable form is ``.program.text``)."""
        return str(self.program)

    @property
    def signatures(self) -> list[tuple[Spec, ...]]:
        """Every input signature compiled so far."""
        return list(self._cache)

    def backend_ir(self, kind: str | None = None) -> str:
        """The backend's own IR (Relax for TVM; StableHLO/HLO for XLA; the nir text for reference)."""
        return self._entry().executable.backend_ir(kind) if kind else self._entry().executable.backend_ir()

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the compiled program (latest signature) as an artifact directory; run it with `nir.load`."""
        exe = self._entry().executable
        if not hasattr(exe, "export"):
            raise _backends.BackendError(f"backend {self.backend!r} cannot export")
        out = exe.export(pathlib.Path(path))
        return pathlib.Path(out) if out is not None else pathlib.Path(path)

    def __repr__(self) -> str:
        name = getattr(self._fn, "__name__", type(self._fn).__name__)
        return f"<nir.Compiled {name} target={str(self.target)!r} backend={self.backend!r}>"


def compile(fn: Callable[..., Any] | Traced | Program | None = None, *, target: str | Target = "llvm",  # noqa: A001
            backend: str = "auto", inputs: Sequence[NamedTensor | Spec] | None = None,
            tuning: str | pathlib.Path | None = None, **options: Any) -> Any:
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
    measured fastest backend) without re-tuning; a program with no record compiles as usual. Extra
    ``options`` go to the backend (e.g. XLA's ``mesh=``/``shard=``)."""
    if fn is None:
        return lambda f: Compiled(f, target, backend, inputs, tuning, **options)
    return Compiled(fn, target, backend, inputs, tuning, **options)


class Loaded:
    """An exported artifact, loaded: call it with NamedTensors (or arrays in the exported order)."""

    def __init__(self, path: pathlib.Path, manifest: dict, executable: Any) -> None:
        self.path, self.manifest, self.executable = path, manifest, executable
        self.backend = manifest["backend"]
        self.target = parse_target(manifest["target"])
        in_types = [TensorType(tuple(zip(s["names"], s["shape"])), s["dtype"]) for s in manifest["inputs"]]
        self.signature = tuple(Spec(t.user_names, t.shape, t.dtype) for t in in_types)
        self._out_types = [TensorType(tuple(zip(s["names"], s["shape"])), s["dtype"]) for s in manifest["outputs"]]

    def __call__(self, *args: Any) -> Any:
        _check_signature(_signature(args, self.signature), self.signature)
        outs = self.executable(*[a._data if isinstance(a, NamedTensor) else _to_numpy(a) for a in args])
        res = [NamedTensor._eager(np.asarray(o), t) for o, t in zip(outs, self._out_types)]
        return res[0] if len(res) == 1 else tuple(res)

    @property
    def ir(self) -> str:
        """The nir program text recorded in the manifest."""
        return self.manifest["program"]

    def __repr__(self) -> str:
        return f"<nir.Loaded {self.path} backend={self.backend!r} inputs=({_describe(self.signature)})>"


def load(path: str | pathlib.Path) -> Loaded:
    """Load an artifact written by `Compiled.export`; it needs the backend's runtime, not the tracer."""
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    mod = _backends.get(manifest["backend"])
    return Loaded(path, manifest, mod.load(path, manifest))
