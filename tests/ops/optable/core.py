"""The op table's vocabulary: tensor arguments (`T`), samples (`S`), error samples (`E`), `OpInfo`, and the
checks that compare nir with the oracle.

The oracle is PyTorch, called positionally on the same data in logical order (the order of ``.names``):
torch 2.13 has no named tensors, so each sample states its expected output names itself, as PyTorch's
named-tensor rules (<= 2.12) give them. Values, dtype and shape come from torch; integer and bool
outputs compare exactly, floating-point ones at `nir.testing`'s tolerance for the output dtype.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

import nir
from nir.testing import tolerance
from nir.types import canonical_dtype, is_float, numpy_dtype

FLOATS = ("float32", "float64", "float16", "bfloat16")
INTS = ("int32", "int64")
ALL = FLOATS + INTS + ("bool",)
BACKENDS = ("reference", "tvm", "xla")

_DIM = re.compile(r"^([A-Za-z][A-Za-z_.]*)?(\d+)$")


@dataclass(frozen=True)
class T:
    """A tensor argument. ``dims`` is ``"N3 C4 5"``: a name and its size, or a bare size for an unnamed dim
    (``""`` is a 0-d tensor). ``kind`` picks the data: ``normal`` (floats N(0, 1); ints in [-4, 6); random
    bools), ``positive`` (floats |x| + 0.5; ints in [1, 6)), ``distinct`` (no two elements equal: for
    arg-reductions and sorting), ``index`` (ints in [-high, high): indices into a dim of size ``high``).
    ``values`` (nested tuples) gives the data outright, for special values such as infinities."""

    dims: str
    dtype: str = "float32"
    kind: str = "normal"
    high: int = 0
    values: Any = None

    @property
    def names(self) -> tuple[str | None, ...]:
        return tuple(m.group(1) for m in map(_DIM.match, self.dims.split()))  # type: ignore[union-attr]

    @property
    def shape(self) -> tuple[int, ...]:
        out = []
        for tok in self.dims.split():
            m = _DIM.match(tok)
            if m is None:
                raise ValueError(f"T: cannot read dim {tok!r} in {self.dims!r}; write 'N3' or '3'")
            out.append(int(m.group(2)))
        return tuple(out)

    @property
    def spec(self) -> nir.Spec:
        return nir.spec(names=self.names, shape=self.shape, dtype=self.dtype)

    def array(self, rng: np.random.Generator) -> np.ndarray:
        """Random data of this argument's shape and dtype, in logical order."""
        shape, dt = self.shape, self.dtype
        n = int(np.prod(shape, dtype=np.int64))
        if self.values is not None:
            a = np.array(self.values).reshape(shape)
        elif self.kind == "distinct":
            a = (rng.permutation(n) - n // 3).reshape(shape) * (0.5 if is_float(dt) else 1)
        elif self.kind == "index":
            a = rng.integers(-self.high, self.high, size=shape)
        elif dt == "bool":
            a = rng.random(shape) < 0.5
        elif is_float(dt):
            a = rng.standard_normal(shape)
            if self.kind == "positive":
                a = np.abs(a) + 0.5
        else:
            a = rng.integers(1 if self.kind == "positive" else -4, 6, size=shape)
        return np.array(a, dtype=numpy_dtype(dt), order="C")


Names = Sequence[str | None]


def _tensor_args(args: Sequence[Any]) -> list[T]:
    return [t for a in args for t in (_tensor_args(a) if isinstance(a, list) else [a] if isinstance(a, T) else [])]


def _replace(args: Sequence[Any], tensors: Any) -> list[Any]:
    return [_replace(a, tensors) if isinstance(a, list) else next(tensors) if isinstance(a, T) else a for a in args]


@dataclass(frozen=True)
class Sample:
    """One call: ``op(*args, **kwargs)`` where `T` args become NamedTensors; ``torch(*tensors)`` is the
    oracle's answer for the `T` args in order (a tensor or a tuple of them); ``names`` the expected output
    names (a tuple for one output, or for each of several; a list of tuples to give each its own).
    ``tol`` scales the output dtype's tolerance; ``skip`` maps a mode ("eager", "method", or a backend) to
    why the sample does not run there; ``xfail`` maps a mode to the known bug (an issue) that makes it
    fail there: the sample still runs, and the test fails when it passes (so the marker goes)."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    names: Any
    torch: Callable[..., Any]
    label: str = ""
    tol: float = 1.0
    skip: Mapping[str, str] = field(default_factory=dict)
    xfail: Mapping[str, str] = field(default_factory=dict)

    @property
    def tensors(self) -> list[T]:
        """The `T` args in order (also those inside a list argument, as `cat` takes)."""
        return _tensor_args(self.args)

    @property
    def id(self) -> str:
        if self.label:
            return self.label
        parts = [f"{a.dtype}[{a.dims}]" if isinstance(a, T) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return ", ".join(parts)

    def inputs(self) -> list[np.ndarray]:
        """The data of the `T` args: random, deterministic per sample."""
        rng = np.random.default_rng(zlib.crc32(self.id.encode()))
        return [t.array(rng) for t in self.tensors]

    def call(self, fn: Callable[..., Any], tensors: Sequence[Any]) -> Any:
        """``fn`` applied to the args with the `T`s replaced by ``tensors`` (in order)."""
        return fn(*_replace(self.args, iter(tensors)), **self.kwargs)


def S(*args: Any, names: Any, torch: Callable[..., Any], label: str = "", tol: float = 1.0,
      skip: Mapping[str, str] | None = None, xfail: Mapping[str, str] | None = None,
      kw: Mapping[str, Any] | None = None, **kwargs: Any) -> Sample:
    """A sample: ``S(T("N3 C4"), "C", names=("N",), torch=lambda x: x.sum(1))``. Keyword arguments of the
    op that clash with S's own (``names=`` of `nir.zeros`) go in ``kw``."""
    return Sample(tuple(args), {**kwargs, **(kw or {})}, names, torch, label, tol, dict(skip or {}), dict(xfail or {}))


@dataclass(frozen=True)
class ErrorSample:
    """A call that must raise ``exc`` with ``match`` (a plain fragment) in its message, eagerly and traced;
    ``xfail`` names the known bug (an issue) that keeps it from raising so, if any."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    exc: type[BaseException]
    match: str
    xfail: str = ""

    @property
    def id(self) -> str:
        return f"{self.exc.__name__}: {self.match}"

    @property
    def tensors(self) -> list[T]:
        return _tensor_args(self.args)

    def call(self, fn: Callable[..., Any], tensors: Sequence[Any]) -> Any:
        return fn(*_replace(self.args, iter(tensors)), **self.kwargs)


def E(*args: Any, exc: type[BaseException], match: str, xfail: str = "", **kwargs: Any) -> ErrorSample:
    """An error sample: ``E(T("N3"), "C", exc=nir.NamedShapeError, match="name 'C' not found")``."""
    return ErrorSample(tuple(args), kwargs, exc, match, xfail)


@dataclass(frozen=True)
class OpInfo:
    """One public function of the named API. ``samples(dtype)`` yields its samples for each of
    ``dtypes``; ``errors()`` its error samples. ``fn`` defaults to ``nir.<name>``; ``method`` is the
    NamedTensor method that must behave the same (default: ``name`` when NamedTensor has it; None for
    none); ``xfail`` maps a mode ("eager", "method", "errors", or a backend) to why it is known to fail."""

    name: str
    samples: Callable[[str], Iterable[Sample]]
    dtypes: tuple[str, ...] = ("float32",)
    errors: Callable[[], Iterable[ErrorSample]] = lambda: ()
    fn: Callable[..., Any] | None = None
    method: str | None = ""
    xfail: Mapping[str, str] = field(default_factory=dict)

    @property
    def function(self) -> Callable[..., Any]:
        return self.fn if self.fn is not None else getattr(nir, self.name)

    @property
    def method_name(self) -> str | None:
        if self.method == "":
            return self.name if hasattr(nir.NamedTensor, self.name) else None
        return self.method

    def compiled_samples(self) -> list[Sample]:
        """What a compiling backend runs (each build costs far more than an eager call): every sample of
        the first dtype, and the first sample of each other dtype."""
        out = []
        for i, d in enumerate(self.dtypes):
            samples = list(self.samples(d))
            out += samples if i == 0 else samples[:1]
        return out

    def all_samples(self) -> list[Sample]:
        out = [s for d in self.dtypes for s in self.samples(d)]
        ids = [s.id for s in out]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"op table: {self.name} has samples with the same id {dup}; give them labels")
        return out


# ------------------------------------------------------------------------------------------------
# the oracle's answer, and the comparison
# ------------------------------------------------------------------------------------------------

def to_torch(a: np.ndarray) -> torch.Tensor:
    """The same data as a torch tensor (bfloat16 through float32, which is exact)."""
    if a.dtype == numpy_dtype("bfloat16"):
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


def from_torch(t: Any) -> np.ndarray:
    """A torch result as numpy, dtype preserved (bfloat16 through float32)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"the oracle returned {type(t).__name__}, not a tensor")
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(numpy_dtype("bfloat16"))
    return t.numpy()


def leaves(out: Any) -> list[Any]:
    """A result (a tensor, or a tuple/namedtuple/list of them) as a flat list."""
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in leaves(o)]
    return [out]


def expected(sample: Sample, inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[tuple]]:
    """The oracle's outputs and the expected names, one per output."""
    want = [from_torch(t) for t in leaves(sample.torch(*[to_torch(a) for a in inputs]))]
    names = sample.names
    if isinstance(names, list):
        per = [tuple(n) for n in names]
    else:
        per = [tuple(names)] * len(want)
    if len(per) != len(want):
        raise ValueError(f"sample {sample.id}: {len(per)} name tuples for {len(want)} oracle outputs")
    return want, per


def compare(got: Sequence[np.ndarray], got_names: Sequence[tuple], want: Sequence[np.ndarray],
            want_names: Sequence[tuple], tol: float = 1.0) -> list[str]:
    """What differs between nir's outputs and the oracle's: count, names, dtype, shape, values."""
    if len(got) != len(want):
        return [f"{len(got)} outputs, the oracle gives {len(want)}"]
    problems = []
    for i, (g, gn, w, wn) in enumerate(zip(got, got_names, want, want_names)):
        g = np.asarray(g)
        where = f"output {i}" if len(got) > 1 else "output"
        if tuple(gn) != tuple(wn):
            problems.append(f"{where}: names {tuple(gn)}, expected {tuple(wn)}")
        if g.dtype != w.dtype:
            problems.append(f"{where}: dtype {g.dtype}, expected {w.dtype}")
            continue
        if g.shape != w.shape:
            problems.append(f"{where}: shape {g.shape}, expected {w.shape}")
            continue
        if not is_float(canonical_dtype(w.dtype)):
            bad = np.argwhere(g != w)
            if bad.size:
                at = tuple(int(i) for i in bad[0])
                problems.append(f"{where}: {len(bad)} of {w.size} values differ, first at {at}: "
                                f"{g[at]!r} vs the oracle's {w[at]!r}")
            continue
        rtol, atol = tolerance(canonical_dtype(w.dtype))
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        ok = np.isclose(g64, w64, rtol=rtol * tol, atol=atol * tol, equal_nan=True)
        if not ok.all():
            at = tuple(int(i) for i in np.argwhere(~ok)[0])
            problems.append(f"{where}: {int((~ok).sum())} of {w.size} values differ beyond rtol=atol="
                            f"{rtol * tol:.2g}, first at {at}: {g64[at]!r} vs the oracle's {w64[at]!r}")
    return problems


def nir_outputs(out: Any) -> tuple[list[np.ndarray], list[tuple]]:
    """An eager result's arrays and names."""
    ts = leaves(out)
    for t in ts:
        if not isinstance(t, nir.NamedTensor):
            raise TypeError(f"nir returned {type(t).__name__}, not a NamedTensor")
    return [t.numpy() for t in ts], [t.names for t in ts]
