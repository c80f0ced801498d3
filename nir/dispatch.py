"""Calling compiled programs: the signature table shared by `nir.compile` and `nir.load`.

A call is dispatched by its *signature*, one ``(names, shape, dtype)`` per input (names as a user sees
them, None for an unnamed dim). The fast path reads each NamedTensor's cached signature, finds the entry
in one dict lookup and runs it; everything else (plain arrays, new signatures, dynamic sizes, errors)
goes through the slow path, which ends by adding the signature to the fast table.

Thread safety: the fast path only reads (a dict get is atomic in CPython); every change to the tables is
made under one lock, and a signature is built once however many threads ask for it at once (the others
wait for the same future). Backends make their executables safe to call from several threads.

Plain arrays (numpy, torch, jax) carry no names: they are accepted where the names are *declared* — a
signature given with ``inputs=``, a traced Program, or an exported artifact — and take the names of the
declared signature whose shape (dynamic dims aside) and dtype they match.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import numpy as np

from .frontends.python import Spec, _rebuild
from .tensor import NamedTensor, _to_numpy
from .types import NamedShapeError, TensorType, canonical_dtype

__all__ = ["SignatureError", "Entry", "Dispatch", "Key", "describe", "check_signature", "key_of"]

Key = tuple  # one (user_names, shape, dtype) tuple per input; hashes like the Specs it stands for


class SignatureError(NamedShapeError):
    """A call's inputs do not match the signature a program was compiled (or exported) for."""


def key_of(specs: Sequence[Spec]) -> Key:
    """The dispatch key of a signature."""
    return tuple((tuple(s.names), tuple(s.shape), s.dtype) for s in specs)


def specs_of(key: Key) -> tuple[Spec, ...]:
    """The Specs a dispatch key stands for."""
    return tuple(Spec(*k) for k in key)


def describe(sig: Sequence[Spec]) -> str:
    """``float32{N: 2, C: 3}, int32{N: 2}``."""
    return ", ".join(str(s) for s in sig)


def check_signature(sig: Sequence[Spec], want: Sequence[Spec], dynamic: Sequence[str] = ()) -> None:
    """SignatureError saying what differs between a call's signature and the one a program takes
    (the sizes of ``dynamic`` dims may differ)."""
    if len(sig) != len(want):
        raise SignatureError(f"the program takes {len(want)} inputs ({describe(want)}), got {len(sig)}")
    for i, (g, w) in enumerate(zip(sig, want)):
        shape_ok = len(g.shape) == len(w.shape) and all(
            a == b or n in dynamic for n, a, b in zip(w.names, g.shape, w.shape))
        if g.names != w.names or not shape_ok or g.dtype != w.dtype:
            what = []
            if g.names != w.names:
                what.append(f"names {g.names} instead of {w.names} (use rename/refine_names/align_to)")
            if not shape_ok:
                what.append(f"shape {g.shape} instead of {w.shape}")
            if g.dtype != w.dtype:
                what.append(f"dtype {g.dtype} instead of {w.dtype} (use .to('{w.dtype}'))")
            raise SignatureError(f"input {i} is {g} but the program was compiled for {w}: " + "; ".join(what))


class Entry:
    """One compiled signature: its program, the backend executable, and how to hand results back."""

    __slots__ = ("specs", "program", "structure", "executable", "backend", "tuned", "out_types", "tick",
                 "padding", "entry", "run1")

    def __init__(self, specs: tuple[Spec, ...], program: Any, structure: Any, executable: Any, backend: str,
                 tuned: bool = False, padding: Any = None) -> None:
        self.specs, self.program, self.structure = specs, program, structure
        self.executable, self.backend, self.tuned = executable, backend, tuned
        # an executable may return other types than the program's (a process's parts of sharded outputs)
        self.out_types: list[TensorType] = getattr(executable, "out_types", None) or [v.type for v in program.outputs]
        self.padding = padding  # a nir.dynamic.Padding when this entry serves a dynamic dim by padding
        self.tick = 0  # last use, for the least-recently-used bound
        self.entry = self  # a runner's entry (an Entry runs itself)
        #: the one-input call (`Dispatch.__call__`'s fast path): the array in, the result out
        self.run1: Callable[[Any], Any] = self._one_call()

    def _one_call(self) -> Callable[[Any], Any]:
        """``run([x])`` with the per-call work done here, once: a single output is wrapped straight from
        the executable's first result (a bare array where the executable offers one, `single`)."""
        ex, structure, types = self.executable, self.structure, self.out_types  # (no reference to self)
        if not _one_bare_output(structure, types):
            return lambda x: _wrap(structure, types, ex(x))
        t, eager, asarray = types[0], NamedTensor._eager, np.asarray
        single = getattr(ex, "single", None)  # the one output itself, not a list of one
        if single is not None:
            return lambda x: eager(asarray(single(x)), t)
        return lambda x: eager(asarray(ex(x)[0]), t)

    def run(self, data: Sequence[Any]) -> Any:
        """Run on arrays in the signature's logical order; results as NamedTensors in the function's
        output structure. Outputs are not copied (``np.asarray`` of a CPU jax array or a TVM tensor shares
        its memory)."""
        return _wrap(self.structure, self.out_types, self.executable(*data))


def _one_bare_output(structure: Any, types: Sequence[TensorType]) -> bool:
    """Whether the function returns one tensor, not a tree of them."""
    return structure == 0 and len(types) == 1


def _wrap(structure: Any, types: Sequence[TensorType], outs: Sequence[Any]) -> Any:
    """An executable's outputs as NamedTensors in the function's output structure (numpy views, no copy)."""
    if _one_bare_output(structure, types):
        return NamedTensor._eager(np.asarray(outs[0]), types[0])
    return _rebuild(structure, [NamedTensor._eager(np.asarray(o), t) for o, t in zip(outs, types)])


class Dispatch:
    """The signature table behind a compiled function or a loaded artifact (see the module docstring).
    Subclasses say how a signature missing from the table is served (`_resolve`)."""

    #: names of the dims whose size may vary from call to call (see nir.dynamic)
    dynamic: Any = None

    def __init__(self) -> None:
        self._fast: dict[Key, Any] = {}  # call signature -> runner (an Entry, or a padded view of one)
        self._lock = threading.RLock()
        self._clock = itertools.count(1)
        self._last: Entry | None = None

    def __call__(self, *args: Any) -> Any:
        if len(args) == 1:  # the common case, with nothing built per call: one tuple for the key
            a = args[0]
            if type(a) is NamedTensor and a._data is not None:
                run = self._fast.get((a._type.signature,))
                if run is not None:
                    entry = self._last = run.entry
                    entry.tick = next(self._clock)
                    return run.run1(a._data)
            return self._call_slow(args)
        key, data = [], []
        for a in args:
            if type(a) is not NamedTensor or a._data is None:  # plain arrays, traced values, trees: slow path
                return self._call_slow(args)
            key.append(a._type.signature)
            data.append(a._data)
        run = self._fast.get(tuple(key))
        if run is None:
            return self._call_slow(args)
        entry = self._last = run.entry
        entry.tick = next(self._clock)
        return run.run(data)

    # -- the slow path ---------------------------------------------------------------------------

    def _declared(self) -> Sequence[tuple[Spec, ...]]:
        """Signatures whose names plain arrays may take."""
        return ()

    def _call_slow(self, args: Sequence[Any]) -> Any:
        key, data = self._bind(args)
        run = self._fast.get(key) or self._resolve(key)
        entry = self._last = run.entry
        entry.tick = next(self._clock)
        return run.run(data)

    def _resolve(self, key: Key) -> Any:
        raise NotImplementedError

    def _bind(self, args: Sequence[Any]) -> tuple[Key, list[Any]]:
        """The call's signature and data; plain arrays take names from a declared signature."""
        key: list[Any] = []
        data: list[Any] = []
        plain: list[int] = []
        for i, a in enumerate(args):
            if isinstance(a, NamedTensor):
                if a.is_traced:
                    raise TypeError(f"argument {i} is a traced value: call compiled functions on concrete tensors "
                                    "(calling one compiled function inside another's trace is not supported)")
                key.append(a._type.signature)
                data.append(a._data)
            else:
                arr = _to_numpy(a)
                key.append((None, tuple(arr.shape), canonical_dtype(arr.dtype)))
                data.append(arr)
                plain.append(i)
        if plain:
            self._name_plain(args, key, plain)
        return tuple(key), data

    def _name_plain(self, args: Sequence[Any], key: list[Any], plain: list[int]) -> None:
        declared = self._declared()
        if not declared:
            i = plain[0]
            raise TypeError(f"argument {i} is a {type(args[i]).__name__}, not a NamedTensor; wrap it with "
                            "nir.tensor(data, names=...) so its dims have names (plain arrays are accepted where "
                            "the signature is declared: nir.compile(..., inputs=[nir.spec(...)]) or nir.load)")
        dyn = tuple(self.dynamic or ())
        if len(declared) == 1:  # one declared signature: plain arrays take its names, then the usual check
            want = declared[0]
            for i in plain:
                names = want[i].names if i < len(want) else (None,) * len(key[i][1])
                if len(names) != len(key[i][1]):
                    names = (None,) * len(key[i][1])
                key[i] = (tuple(names), key[i][1], key[i][2])
            return
        fits = [sig for sig in declared if len(sig) == len(key) and all(
            len(sig[i].shape) == len(key[i][1]) and sig[i].dtype == key[i][2]
            and all(a == b or n in dyn for n, a, b in zip(sig[i].names, key[i][1], sig[i].shape)) for i in plain)]
        choices = {tuple(sig[i].names for i in plain) for sig in fits}
        if len(choices) != 1:
            shown = "; ".join(f"dtype {key[i][2]} shape {key[i][1]} (argument {i})" for i in plain)
            why = "matches none" if not choices else "matches several, with different names,"
            raise SignatureError(f"plain arrays carry no names, and {shown} {why} of the signatures this function "
                                 f"takes: {' or '.join('(' + describe(s) + ')' for s in declared)}. Pass NamedTensors "
                                 "(nir.tensor(data, names=...)) to say which")
        names = choices.pop()
        for j, i in enumerate(plain):
            key[i] = (tuple(names[j]), key[i][1], key[i][2])

    def _remember(self, key: Key, run: Any, limit: int) -> None:
        """Put ``run`` in the fast table (under the lock); a table grown past ``limit`` starts afresh
        (each call signature then takes the slow path once more)."""
        with self._lock:
            if len(self._fast) >= limit:
                self._fast = {}
            self._fast[key] = run


def once(lock: threading.RLock, building: dict[Key, Future], done: Callable[[Key], Any], key: Key,
         build: Callable[[], Any], add: Callable[[Any], None]) -> Any:
    """``build()`` the value for ``key`` exactly once however many threads ask at the same time: the first
    builds it and ``add``s it (under ``lock``); the others wait for its result (or its exception).
    ``done(key)`` looks up a finished value (None when there is none)."""
    with lock:
        found = done(key)
        if found is not None:
            return found
        fut = building.get(key)
        mine = fut is None
        if mine:
            fut = building[key] = Future()
    if not mine:
        return fut.result()
    try:
        value = build()
    except BaseException as e:
        with lock:
            del building[key]
        fut.set_exception(e)
        raise
    with lock:
        add(value)
        del building[key]
    fut.set_result(value)
    return value
