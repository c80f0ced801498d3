"""NamedTensor: eager (numpy) and traced, with the API and name rules of PyTorch's named tensors.

Every operation goes through `bind`, which applies one primitive: eagerly with the reference
implementation, or by recording an equation when any input is being traced. So eager and compiled
code share one definition of every op, and names are checked the same way in both.

Dims a user left unnamed carry generated names (``_7``) internally; `.names` shows them as None.
"""

from __future__ import annotations

import contextvars
import os
import sys
from typing import Any, Iterable, Sequence

import numpy as np

from .interpret import evaluate
from .ir import Builder, Value, infer_all
from .types import (NamedShapeError, TensorType, canonical_dtype, check_user_name, fresh_name, is_generated,
                    numpy_dtype)

__all__ = ["NamedTensor", "TraceError", "bind", "bind_multi", "as_tensor", "Trace", "current_trace"]


class TraceError(TypeError):
    """A traced value was used where a concrete one is needed (Python control flow, ``float(x)``...)."""


class Trace:
    """An active trace: equations recorded into a Builder; eager tensors used inside become constants.

    A trace may have a ``parent``: the trace of the program that encloses a sub-program (a scan's body,
    a cond's branch). A tensor of an enclosing trace used inside it is *captured*: it becomes a new
    input of the sub-program, listed in `captures` with the enclosing tensor it stands for. Eager tensors
    used inside a sub-program are captured too, so their constants live in the outermost program.
    """

    def __init__(self, parent: "Trace | None" = None) -> None:
        self.builder = Builder()
        self.parent = parent
        self.captures: list[tuple["NamedTensor", Value]] = []  # (enclosing tensor, this trace's input)
        self._lifted: dict[int, "NamedTensor"] = {}
        self._captured: dict[tuple[int, int], "NamedTensor"] = {}

    def encloses(self, other: "Trace") -> bool:
        """Whether ``other`` is this trace or one of its (transitive) sub-program traces."""
        t: Trace | None = other
        while t is not None and t is not self:
            t = t.parent
        return t is self

    def lift(self, t: "NamedTensor") -> "NamedTensor":
        """The traced version of ``t`` in this trace: ``t`` itself, a capture of a tensor of an enclosing
        trace, or (eager ``t``) a `constant` equation, made once per tensor."""
        if t._trace is self:
            return t
        if t._trace is not None:
            if not t._trace.encloses(self):
                raise TraceError("a value traced by another (outer or finished) trace was used here; "
                                 "pass it as an input of the function being compiled instead (a value made "
                                 "inside a scan step or a cond branch lives there: return it to use it outside)")
            return self._capture(t)
        if self.parent is not None:
            return self._capture(self.parent.lift(t))
        key = id(t)
        if key not in self._lifted:
            v = self.builder.add("constant", [], where=_user_frame(), data=np.asarray(t._data).tobytes(), dims=t._type.dims,
                                 dtype=t._type.dtype)
            self._lifted[key] = NamedTensor._traced(v, self)
            self._lifted[key]._keepalive = t  # type: ignore[attr-defined]
        return self._lifted[key]

    def _capture(self, t: "NamedTensor") -> "NamedTensor":
        """``t``, of an enclosing trace, as an input of this one (captured in the parent first)."""
        outer = self.parent.lift(t)  # type: ignore[union-attr]
        key = (id(outer._trace), outer._value.id)  # type: ignore[union-attr]
        if key not in self._captured:
            v = self.builder.input(outer._type)
            self.captures.append((outer, v))
            self._captured[key] = NamedTensor._traced(v, self)
        return self._captured[key]


_TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("nir_trace", default=None)


def current_trace() -> Trace | None:
    """The innermost active trace, or None when running eagerly."""
    return _TRACE.get()


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PKG_DIRS = tuple(os.path.join(_ROOT, d) + os.sep for d in ("nir", "frontends", "backends"))


def _user_frame() -> str:
    """``file:line`` of the innermost frame outside nir itself (the user's line)."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIRS):
        f = f.f_back  # type: ignore[assignment]
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}" if f is not None else ""


class NamedTensor:
    """A tensor whose dimensions have names. Eager tensors hold a numpy array (logical order);
    traced tensors hold an IR value. Create them with `nir.tensor`, `nir.zeros`, `nir.randn`...

    >>> x = nir.randn(2, 3, names=("N", "C"))
    >>> x.sum("C").names
    ('N',)
    """

    __slots__ = ("_type", "_data", "_value", "_trace", "_keepalive", "__weakref__")
    __array_priority__ = 100  # numpy defers to our operators: np_array + named_tensor -> NamedTensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("create tensors with nir.tensor(data, names=...), nir.zeros(...), nir.randn(...)")

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def _eager(cls, data: np.ndarray, t: TensorType) -> "NamedTensor":
        self = object.__new__(cls)
        self._type, self._data, self._value, self._trace = t, data, None, None
        return self

    @classmethod
    def _traced(cls, value: Value, trace: Trace) -> "NamedTensor":
        self = object.__new__(cls)
        self._type, self._data, self._value, self._trace = value.type, None, value, trace
        return self

    # -- attributes ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str | None, ...]:
        """Dimension names in order; None for an unnamed dim."""
        return self._type.user_names

    @property
    def shape(self) -> tuple[int, ...]:
        return self._type.shape

    @property
    def ndim(self) -> int:
        return self._type.ndim

    def dim(self) -> int:
        """Number of dims (PyTorch spelling)."""
        return self._type.ndim

    @property
    def dtype(self) -> str:
        """The dtype's canonical name, e.g. ``'float32'``."""
        return self._type.dtype

    @property
    def type(self) -> TensorType:
        """The internal type: ``{name: size}`` (generated names for unnamed dims) plus dtype."""
        return self._type

    @property
    def named_shape(self) -> dict[str | None, int]:
        """``{name: size}``; only meaningful when every dim is named."""
        return dict(zip(self.names, self.shape))

    @property
    def is_traced(self) -> bool:
        return self._trace is not None

    def size(self, dim: int | str | None = None) -> int | tuple[int, ...]:
        """Size of ``dim`` (a name or an index), or the whole shape."""
        if dim is None:
            return self.shape
        return self.shape[self._index(dim, "size")]

    def numel(self) -> int:
        return self._type.numel

    def numpy(self) -> np.ndarray:
        """The data as a numpy array (logical order). Not available on traced values."""
        self._concrete("numpy()")
        return self._data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self._concrete("np.asarray()")
        return self._data if dtype is None else self._data.astype(dtype)

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        self._concrete("__dlpack__")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        self._concrete("__dlpack_device__")
        return self._data.__dlpack_device__()

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        self._concrete("item()")
        return self._data.item()

    def tolist(self) -> Any:
        self._concrete("tolist()")
        return self._data.tolist()

    def _concrete(self, what: str) -> None:
        if self._trace is not None:
            raise TraceError(
                f"{what} needs a concrete value, but this tensor {self._type.pretty()} is being traced. "
                "Compiled functions are traced once and must not depend on tensor values: use "
                "nir.where(cond, a, b) instead of `if` (or nir.cond(pred, true_fn, false_fn, *operands) to run "
                "only one branch), and keep loop trip counts static (nir.scan keeps a loop a loop).")

    def __bool__(self) -> bool:
        self._concrete("Python control flow (if/while/bool())")
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor {self._type.pretty()} with more than one element "
                             "is ambiguous; use .any()-style reductions such as (x > 0).sum() > 0")
        return bool(self._data)

    def __float__(self) -> float:
        self._concrete("float()")
        return float(self._data)

    def __int__(self) -> int:
        self._concrete("int()")
        return int(self._data)

    def __index__(self) -> int:
        self._concrete("using a tensor as an index")
        return int(self._data)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        dims = ", ".join(f"{n}={s}" for n, s in zip(self.names, self.shape))
        if self._trace is not None:
            return f"NamedTensor(traced %{self._value.id}, {dims}, dtype={self.dtype})"  # type: ignore[union-attr]
        body = np.array2string(self._data, threshold=20, edgeitems=2, separator=", ", prefix="NamedTensor(")
        return f"NamedTensor({body}, names={self.names}, dtype={self.dtype})"

    # -- helpers shared by the op implementations -------------------------------------------------
    def _index(self, dim: int | str | None, op: str) -> int:
        """Position of ``dim`` (a name, or an index that may be negative)."""
        if isinstance(dim, str):
            try:
                return self._type.names.index(dim)  # user names, or internal names passed by nir itself
            except ValueError:
                raise NamedShapeError(f"{op}: name {dim!r} not found in {self._type.pretty()} "
                                      f"(names: {list(self.names)}); check the spelling or rename()") from None
        if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
            n = self.ndim
            if not -max(n, 1) <= dim < max(n, 1):
                raise IndexError(f"{op}: dim {dim} is out of range for a tensor {self._type.pretty()} with {n} dims")
            return int(dim) % max(n, 1)
        if dim is None:
            raise implicit_dim(op, self)
        raise TypeError(f"{op}: a dim is a name or an int, got {dim!r}")

    def _ir_name(self, dim: int | str, op: str) -> str:
        """The internal name of ``dim`` (a name or an index)."""
        return self._type.names[self._index(dim, op)]


def implicit_dim(op: str, t: NamedTensor, every: bool = False) -> NamedShapeError:
    """The error for ``dim=None`` where a dim must be given: PyTorch refuses implicit dims on named
    tensors ("look up dimensions by name"); a softmax over a dim picked by default is a classic bug.
    ``every``: the op reduces every dim when called with no dim argument at all."""
    example = next((n for n in t.names if n is not None), None)
    shown = f"dim={example!r}" if example is not None else "dim=-1"
    return NamedShapeError(
        f"{op}: dim=None names no dim of {t.type.pretty()}; implicit dims are refused: look up dimensions by "
        f"name ({shown})" + (f", or call {op}() with no dim argument to reduce every dim" if every else ""))


def as_tensor(x: Any, like: NamedTensor | None = None, op: str = "") -> NamedTensor:
    """``x`` as a NamedTensor: tensors pass through; Python numbers become 0-d tensors whose dtype
    follows ``like`` (PyTorch's rule: a Python float with an integer tensor gives float32)."""
    if isinstance(x, NamedTensor):
        return x
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        if isinstance(x, (bool, np.bool_)):
            dtype = "bool"
        elif like is not None and (isinstance(x, (int, np.integer)) or like.dtype.startswith("float")
                                   or like.dtype == "bfloat16"):
            dtype = like.dtype if like.dtype != "bool" else ("int64" if isinstance(x, (int, np.integer)) else "float32")
        else:
            dtype = "int64" if isinstance(x, (int, np.integer)) else "float32"
        return bind("full", [], value=x if dtype != "bool" else bool(x), dims=(), dtype=dtype)
    raise TypeError(f"{op}: expected a NamedTensor or a Python number, got {type(x).__name__}. "
                    "Wrap arrays with nir.tensor(data, names=...)")


def bind(prim: str, inputs: Sequence[NamedTensor], **params: Any) -> NamedTensor:
    """Apply primitive ``prim`` to ``inputs``: record it when tracing, else evaluate it now."""
    (out,) = bind_multi(prim, inputs, **params)
    return out


def bind_multi(prim: str, inputs: Sequence[NamedTensor], **params: Any) -> list[NamedTensor]:
    """`bind` for any primitive, several outputs included (scan, cond): one tensor per output.

    Evaluated now when no input is traced (outside a trace, or on eager tensors inside one); else
    recorded into the innermost active trace (a scan body's, inside one), which captures inputs of
    enclosing traces."""
    traced = next((t._trace for t in inputs if t._trace is not None), None)
    trace = (_TRACE.get() or traced) if traced is not None or not inputs else None
    if trace is None:
        types = [t._type for t in inputs]
        outs = infer_all(prim, types, params)
        ys = evaluate(prim, [t._data for t in inputs], types, outs, params)
        return [NamedTensor._eager(y, t) for y, t in zip(ys, outs)]
    ins = [trace.lift(t) for t in inputs]
    vs = trace.builder.add_multi(prim, [t._value for t in ins], where=_user_frame(), **params)
    return [NamedTensor._traced(v, trace) for v in vs]


def from_array(data: Any, names: Sequence[str | None] | None = None, dtype: Any = None) -> NamedTensor:
    """Wrap ``data`` (numpy array, nested list, scalar, or any DLPack-capable array such as a torch or
    jax array) as a NamedTensor. ``names`` has one entry per dim: a name or None."""
    arr = _to_numpy(data)
    if dtype is not None:
        arr = arr.astype(numpy_dtype(canonical_dtype(dtype)), copy=False)
    arr = aligned(arr)
    dt = canonical_dtype(arr.dtype)
    if names is None:
        names = (None,) * arr.ndim
    names = tuple(names)
    if len(names) != arr.ndim:
        raise NamedShapeError(f"tensor: {len(names)} names {names} given for data with {arr.ndim} dims {arr.shape}; "
                              "give one name (or None) per dim")
    ir = _user_names(names, "tensor")
    t = TensorType(tuple(zip(ir, arr.shape)), dt)
    if _TRACE.get() is not None:
        return _TRACE.get().lift(NamedTensor._eager(arr, t))  # type: ignore[union-attr]
    return NamedTensor._eager(arr, t)


def aligned(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when it is C-contiguous and 64-byte aligned (what compiled kernels can use in place),
    else a copy that is. Small arrays are returned as they are: copying them in at call time is cheap."""
    if arr.nbytes < 4096 or (arr.flags.c_contiguous and arr.ctypes.data % 64 == 0):
        return arr
    buf = np.empty(arr.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64
    out = buf[off:off + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    return out


def _user_names(names: Iterable[str | None], op: str) -> tuple[str, ...]:
    """Validate user names (None allowed) and give unnamed dims fresh internal names."""
    out = []
    for n in names:
        out.append(fresh_name() if n is None else check_user_name(n, op))
    named = [n for n in out if not is_generated(n)]
    if len(set(named)) != len(named):
        dup = sorted({n for n in named if named.count(n) > 1})
        raise NamedShapeError(f"{op}: names {tuple(names)} repeat {dup}; every dim name must be unique")
    return tuple(out)


def _to_numpy(data: Any) -> np.ndarray:
    if isinstance(data, NamedTensor):
        return data.numpy()
    if isinstance(data, np.ndarray):
        return data
    if hasattr(data, "__dlpack__") and not isinstance(data, (list, tuple)):
        if type(data).__module__.startswith("torch"):
            data = data.detach()
            if str(getattr(data, "dtype", "")) == "torch.bfloat16":  # numpy's DLPack has no bfloat16
                return data.view(__import__("torch").int16).cpu().numpy().view(numpy_dtype("bfloat16"))
        try:
            return np.from_dlpack(data)
        except (TypeError, BufferError, RuntimeError):
            pass
    arr = np.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, np.ndarray) and not hasattr(data, "dtype"):
        arr = arr.astype(np.float32)  # Python lists of floats default to float32, as in PyTorch
    if arr.dtype == object:
        raise TypeError(f"cannot make a tensor from {type(data).__name__}")
    return arr
