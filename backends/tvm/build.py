"""Build nir programs with TVM (llvm and cuda), run them, export and load them.

    exe = build(program, parse_target("llvm"))       # -> TVMExecutable
    outs = exe(x, w)                                 # numpy / torch / jax arrays in, numpy arrays out
    exe.export("artifact/")                          # model.so (+ .cu/.ptx for cuda) + manifest.json
    nir.load("artifact/")(x, w)                      # TVM runtime only, no lowering

Threads: a Relax VM keeps per-call state (its register file), so one VM must never run two calls at
once. Each executable keeps a pool of VMs: a call takes one (or makes one) and puts it back, so N
threads calling at once use N VMs, a thread pool that comes and goes reuses them, and after a burst
at most `_IDLE_VMS` stay. Building takes a process-wide lock, because TVM's BlockBuilder keeps a
global stack.

CPU: the Relax module is legalized and fused (`relax.get_pipeline("zero")`), then every PrimFunc gets a
default schedule (`schedule.py`) unless a MetaSchedule database (``tuning_db=``) already scheduled it.
CUDA: TVM's default GPU pipeline, which schedules with dlight.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pathlib
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from nir.backends import BackendChoiceError, BackendError, FallbackWarning
from nir.fold import fold_constants
from nir.ir import Program, verify
from nir.target import Target, parse_target
from nir.types import TensorType, canonical_dtype, numpy_dtype

from .control import check_depth
from .lower import LOWERINGS, lower_program
from .conv_width import PadConvWidth
from .scalars import ScalarWhere
from .sink_reshape import SinkReshape
from .schedule import lanes, schedule_module
from .vmath import VectorMath

__all__ = ["TVMExecutable", "build", "relax_module", "load", "tvm_target", "to_tvm", "unsupported", "cuda_device",
           "Signature",
           "DEFAULT_CUDA_ARCH", "ptx"]

NAME = "tvm"
LIBRARY = "model.so"
CUDA_SOURCE = "model.cu"
PTX = "model.ptx"
ALIGNMENT = 64  # bytes; TVM's kernels may assume it (vectorized loads)
DEFAULT_CUDA_ARCH = "sm_80"  # when no -arch= is given and no GPU is present to ask
# A Relax VM keeps the value it last returned until it returns another, so the memory of a call's outputs
# stays taken until the next call has allocated its own: two buffers per output take turns, twice the
# cache footprint (layer_norm over 8 MiB rows: +25%). A call whose outputs are at least this big is
# followed by one of this empty function, which returns nothing in their place (about a microsecond).
RELEASE = "nir_release"
RELEASE_BYTES = 256 * 1024


def _cores() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# TVM reads TVM_NUM_THREADS when its thread pool starts (on the first parallel kernel, after this import)
# and otherwise may use fewer threads than there are cores
_USER_THREADS = "TVM_NUM_THREADS" in os.environ
os.environ.setdefault("TVM_NUM_THREADS", str(_cores()))

_BUILD_LOCK = threading.RLock()  # lowering and compiling touch TVM's global state
_VM_LOCK = threading.Lock()  # creating a VM and configuring the thread pool
_IDLE_VMS = max(4, 2 * _cores())  # VMs kept per executable between calls


def cuda_device() -> str | None:
    """The name of the CUDA device TVM can run on here, or None when there is none."""
    dev = tvm.cuda()
    return str(dev.device_name) if dev.exist else None


def unsupported() -> dict[str, str]:
    """``{primitive: reason}`` from the checked-in ``unsupported.txt`` (lines ``prim: reason``)."""
    text = (pathlib.Path(__file__).with_name("unsupported.txt")).read_text()
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            prim, _, reason = line.partition(":")
            out[prim.strip()] = reason.strip()
    return out


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------

def _host() -> dict[str, Any]:
    """The host CPU as TVM sees it (LLVM's name for this CPU; "-mcpu=native" would fall back to generic)."""
    host = dict(tvm.target.Target.from_device(tvm.cpu()).export())
    return {k: host[k] for k in ("kind", "mtriple", "mcpu") if k in host}


def tvm_target(target: Target) -> tvm.target.Target:
    """The TVM target for a nir target (TVM 0.27 takes dicts, not flag strings).

    llvm: the host CPU unless ``-mcpu=`` names another, ``-num-cores=`` (default: the cores this
    process may use), other ``-key=value`` options passed through. cuda: ``-arch=`` (default: the
    GPU's own, else sm_80) with a generic CPU of the host's architecture as host.
    """
    opts = dict(target.options)
    try:
        if target.kind == "llvm":
            spec: dict[str, Any] = _host()
            mcpu = opts.pop("mcpu", None)
            if mcpu and mcpu != "native":
                spec["mcpu"] = mcpu
            spec["num-cores"] = int(opts.pop("num-cores", _cores()))
            spec.update(opts)
            return tvm.target.Target(spec)
        if target.kind == "cuda":
            arch = opts.pop("arch", None)
            if arch is None:
                dev = tvm.cuda()
                arch = "sm_" + dev.compute_version.replace(".", "") if dev.exist else DEFAULT_CUDA_ARCH
            # the host side only launches kernels: keep it generic so the library loads on any x86-64 host
            host = {k: v for k, v in _host().items() if k != "mcpu"}
            return tvm.target.Target({"kind": "cuda", "arch": arch, **opts}, host=host)
    except (ValueError, TypeError, RuntimeError) as e:
        raise BackendChoiceError(f"the tvm backend cannot use target {str(target)!r}: {e}. "
                           "Known options: llvm -mcpu=<cpu> -num-cores=<n>; cuda -arch=sm_XX") from None
    raise BackendChoiceError(f"the tvm backend serves llvm and cuda targets, not {target.kind!r}")


# ---------------------------------------------------------------------------------------------
# calling convention
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    """Names, shape and dtype of one input or output, in logical order."""

    names: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str

    @staticmethod
    def of(t: TensorType) -> "Signature":
        """The signature of a value of type ``t``."""
        return Signature(t.names, t.shape, t.dtype)

    @staticmethod
    def from_manifest(d: dict[str, Any]) -> "Signature":
        """The signature from a manifest's ``inputs``/``outputs`` entry."""
        return Signature(tuple(d["names"]), tuple(d["shape"]), d["dtype"])

    def pretty(self) -> str:
        """As errors show it: ``float32{N: 2, C: 3}``."""
        return self.dtype + TensorType(tuple(zip(self.names, self.shape)), self.dtype).pretty()


def _zero_copy_ok(a: np.ndarray) -> bool:
    """Whether TVM can use ``a``'s memory as it is (DLPack refuses read-only arrays)."""
    # an empty array's strides are arbitrary and TVM checks them: copy (nothing) instead
    return a.size > 0 and a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % ALIGNMENT == 0


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array (np.ascontiguousarray would turn a 0-d array into 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def to_tvm(x: Any, sig: Signature, index: int, device: tvm.runtime.Device) -> tvm.runtime.Tensor:
    """One input as a TVM tensor on ``device``: zero-copy through DLPack where the data is C-contiguous
    and 64-byte aligned, otherwise an aligned contiguous copy. Shapes and dtypes must match exactly."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=numpy_dtype(sig.dtype))  # python scalars and lists take the program's dtype
    shape = tuple(int(s) for s in x.shape)
    try:
        dtype = canonical_dtype(x.dtype)
    except TypeError:
        dtype = str(x.dtype)
    if shape != sig.shape or dtype != sig.dtype:
        raise BackendError(
            f"input {index} should be {sig.pretty()} (shape {sig.shape}, dims in logical order "
            f"{', '.join(sig.names) or '()'}), got shape {shape} {dtype}. Pass arrays in each input's logical order"
            + (f" and cast with .astype('{sig.dtype}')" if dtype != sig.dtype else ""))
    if isinstance(x, tvm.runtime.Tensor):
        return x if x.device == device else x.copyto(device)
    if isinstance(x, np.ndarray):
        if _zero_copy_ok(x) and device.dlpack_device_type() == 1 and sig.dtype != "bfloat16":
            return tvm.runtime.from_dlpack(x)
        return tvm.runtime.tensor(_c_order(x), device)  # TVM allocates aligned memory
    try:
        t = tvm.runtime.from_dlpack(x)  # checks 64-byte alignment and contiguity
    except Exception:  # noqa: BLE001 - misaligned or strided: copy below
        t = None
    if t is None:
        if hasattr(x, "contiguous") and hasattr(x, "clone"):  # torch: a fresh tensor is aligned
            t = tvm.runtime.from_dlpack(x.detach().contiguous().clone())
        else:  # jax and others convert to numpy (jax bfloat16 comes back as ml_dtypes.bfloat16)
            return tvm.runtime.tensor(_c_order(np.asarray(x)), device)
    return t if t.device == device else t.copyto(device)


_Tensor = tvm_ffi.core.Tensor  # what the VM returns for a tensor (tvm.runtime.Tensor derives from it)
_share = tvm_ffi.from_dlpack  # no alignment/contiguity checks: `TVMExecutable._input` makes them, cheaper


def _aligned_copy(x: np.ndarray) -> np.ndarray:
    """A C-contiguous, 64-byte aligned, writeable copy of ``x`` (numpy's own copy is cheaper than TVM's
    allocate-and-copy for small arrays)."""
    buf = np.empty(x.nbytes + ALIGNMENT, np.uint8)
    off = (-buf.ctypes.data) % ALIGNMENT
    out = buf[off:off + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def _set_threads(target: Target) -> None:
    """Honour ``-num-cores=N`` of an llvm target by running TVM's thread pool with N threads, unless the
    user chose a count with TVM_NUM_THREADS (the package sets it to all cores on import otherwise)."""
    cores = target.get("num-cores")
    if target.kind != "llvm" or cores is None or _USER_THREADS:
        return
    if tvm.runtime.num_threads() != int(cores):
        tvm.get_global_func("runtime.config_threadpool")(1, int(cores))  # 1: use all (big) cores


def _to_numpy(t: tvm.runtime.Tensor) -> np.ndarray:
    """A TVM output as a numpy array: zero-copy on the CPU where numpy understands the dtype."""
    if t.device.dlpack_device_type() == 1 and t.dtype != "bfloat16":
        return np.from_dlpack(t)
    return t.numpy()


# ---------------------------------------------------------------------------------------------
# the executable
# ---------------------------------------------------------------------------------------------

class TVMExecutable:
    """A program compiled by TVM. Call it with arrays in each input's logical order; it returns a
    list of numpy arrays, one per output, in each output's logical order."""

    def __init__(self, library: tvm.runtime.Module, target: Target, inputs: Sequence[Signature],
                 outputs: Sequence[Signature], *, program: Program | None = None,
                 relax_text: str = "", tir_text: str = "", schedules: dict[str, str | None] | None = None,
                 tvm_target_json: str = "") -> None:
        self.library, self.target = library, target
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self.program = program
        self.schedules = dict(schedules or {})
        self._relax_text, self._tir_text = relax_text, tir_text
        self._tvm_target_json = tvm_target_json
        self._vm: Any = None
        self._main: Any = None
        self._idle: list[Any] = []  # VM entry functions not running a call (list.pop/append are atomic)
        # the per-call fast path: numpy arrays of exactly the input's shape and dtype go straight through
        # DLPack, and CPU outputs come back the same way (bfloat16, which numpy's DLPack lacks, does not)
        self._cpu = target.kind == "llvm"
        self._exact = [(s.shape, np.dtype(numpy_dtype(s.dtype))) if self._cpu and s.dtype != "bfloat16" else None
                       for s in self.inputs]
        self._numpy_out = self._cpu and all(s.dtype != "bfloat16" for s in self.outputs)
        self._release = sum(math.prod(s.shape) * tvm.DataType(s.dtype).bits // 8 for s in self.outputs) >= RELEASE_BYTES

    @functools.cached_property
    def device(self) -> tvm.runtime.Device:
        """The device the program runs on."""
        return tvm.cuda() if self.target.kind == "cuda" else tvm.cpu()

    def vm_function(self) -> Any:
        """The compiled entry function of a VM of its own (not one of the pool that calls use): TVM tensors
        on `device` in; out, the output tensor of a one-output program, else a tuple of them (also from an
        artifact exported before one output came back bare). No checks and no conversions (for timing
        kernels)."""
        if self._main is None:
            self._vm = self._new_vm()
            self._main = self._vm["main"]
        return self._main

    def _new_vm(self) -> Any:
        """A fresh VM (the library is shared; registers and workspace are its own)."""
        if self.target.kind == "cuda" and not tvm.cuda().exist:
            raise BackendError(
                f"this program was built by the tvm backend for {str(self.target)!r}, but this machine has no "
                "CUDA device (tvm.cuda().exist is False). Run it on a machine with an NVIDIA GPU and a "
                "CUDA-enabled TVM, or build it for 'llvm' to run it here")
        with _VM_LOCK:
            _set_threads(self.target)
            return relax.VirtualMachine(self.library, self.device)

    def time_ms(self, *arrays: Any, number: int = 10, repeat: int = 5) -> float:
        """Median milliseconds per call of the compiled function alone, timed by TVM (``number`` calls
        per measurement, ``repeat`` measurements, the device synchronized): inputs are converted and
        moved to the device once, outputs stay there."""
        fn = self.vm_function()
        args = [to_tvm(a, s, i, self.device) for i, (a, s) in enumerate(zip(arrays, self.inputs))]
        fn(*args)  # warm-up
        timer = self._vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        return float(timer(*args).median) * 1e3

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """Run the program; inputs may be numpy arrays, torch tensors, jax arrays or TVM tensors. Inputs
        and outputs are shared with TVM through DLPack where their memory allows (no copy; see `_input`
        for when an input is copied). Safe to call from several threads at once."""
        if len(arrays) != len(self.inputs):
            want = ", ".join(s.pretty() for s in self.inputs)
            raise BackendError(f"the program takes {len(self.inputs)} inputs ({want}), got {len(arrays)}")
        vm = self._take_vm()
        try:
            out = vm[0](*[self._input(a, i) for i, a in enumerate(arrays)])
            if vm[1] is not None:
                vm[1]()
        finally:
            self._give_vm(vm)
        outs = (out,) if isinstance(out, _Tensor) else out  # main returns a one-output program's tensor bare
        return [self._output(t) for t in outs]

    def single(self, x: Any) -> np.ndarray:
        """`__call__` of a one-input, one-output program, for `nir.compile`'s per-call fast path: the
        output itself (a numpy array sharing TVM's memory where the dtype allows), not a list of one."""
        vm = self._take_vm()
        try:
            out = vm[0](self._input(x, 0))
            if vm[1] is not None:
                vm[1]()
        finally:
            self._give_vm(vm)
        if not isinstance(out, _Tensor):  # a tuple: an artifact exported before main returned one output bare
            out = out[0]
        return self._output(out)

    def _output(self, t: _Tensor) -> np.ndarray:
        """An output as numpy, sharing TVM's memory where the dtype allows."""
        return np.from_dlpack(t) if self._numpy_out else _to_numpy(t)

    def _take_vm(self) -> tuple[Any, Any]:
        """An idle VM of the pool, or a new one (see the module docstring): its main function, and its
        `RELEASE` function where this program's outputs are big enough to want it (else None)."""
        try:
            return self._idle.pop()
        except IndexError:
            vm = self._new_vm()
            release = None
            if self._release:
                try:
                    release = vm[RELEASE]
                except (AttributeError, RuntimeError):  # an artifact exported before it existed
                    self._release = False
            return vm["main"], release

    def _give_vm(self, vm: tuple[Any, Any]) -> None:
        """Put a VM back in the pool, unless the pool is full."""
        if len(self._idle) < _IDLE_VMS:  # after a burst of threads, extra VMs (and their memory) go
            self._idle.append(vm)

    def _input(self, x: Any, i: int) -> Any:
        """Input ``i`` as a TVM tensor. A numpy array of exactly the input's shape and dtype is shared
        (no copy) when it is C-contiguous, writeable and 64-byte aligned (as `nir.tensor` and every
        backend's outputs but XLA's make them); otherwise it is copied, because TVM's kernels may use
        aligned vector loads on compact memory, and DLPack cannot carry a read-only array (XLA's
        outputs, which jax owns, are read-only)."""
        exact = self._exact[i]
        if exact is not None and type(x) is np.ndarray and x.shape == exact[0] and x.dtype == exact[1] and x.size:
            # checked here, not by letting from_dlpack fail (a failed check raises, ~20 us); the pointer is
            # read from the TVM tensor, as x.ctypes.data alone costs ~1 us
            flags = x.flags
            if flags.c_contiguous and flags.writeable:
                t = _share(x)
                if t.data_ptr() % ALIGNMENT == 0:
                    return t
            return _share(_aligned_copy(x))
        return to_tvm(x, self.inputs[i], i, self.device)

    def backend_ir(self, kind: str | None = None) -> str:
        """The Relax module (``kind="relax"``, the default) or the scheduled TIR module (``"tir"``)."""
        kind = kind or "relax"
        if kind not in ("relax", "tir"):
            raise ValueError(f"backend_ir kind must be 'relax' or 'tir', got {kind!r}")
        text = self._relax_text if kind == "relax" else self._tir_text
        if not text:
            raise BackendError(f"the {kind} text is not kept in a loaded artifact; build the program to see it")
        return text

    def cuda_source(self) -> str:
        """The CUDA C source of a program built for cuda (BackendError for other targets)."""
        return _cuda_source(self.library)

    def save(self, path: pathlib.Path) -> dict[str, Any]:
        """Write ``model.so`` (plus the CUDA source and PTX for cuda) into directory ``path``; return the
        files and what the manifest records about them."""
        if self.program is None:
            raise BackendError("a loaded artifact cannot be exported again; copy its directory instead")
        path = pathlib.Path(path)
        self.library.export_library(str(path / LIBRARY))
        files = {"library": LIBRARY}
        extra: dict[str, Any] = {"tvm_version": tvm.__version__, "tvm_target": self._tvm_target_json,
                                 "schedules": self.schedules}
        if self.target.kind == "cuda":
            src = self.cuda_source()
            (path / CUDA_SOURCE).write_text(src)
            files["cuda_source"] = CUDA_SOURCE
            try:
                (path / PTX).write_bytes(ptx(src, tvm.target.Target(self._tvm_target_json)))
                files["ptx"] = PTX
            except Exception as e:  # noqa: BLE001 - nvcc missing or failing: the .cu is still useful
                extra["ptx_note"] = f"PTX not written: nvcc failed ({str(e).strip().splitlines()[-1][:300]})"
        return {"files": files, **extra}

    def export(self, path: str | os.PathLike) -> pathlib.Path:
        """Write a one-signature artifact (``model.so``, ..., ``manifest.json``) at ``path``."""
        from nir.artifact import ArtifactEntry, export_artifact
        if self.program is None:
            raise BackendError("a loaded artifact cannot be exported again; copy its directory instead")
        structure = 0 if len(self.program.outputs) == 1 else tuple(range(len(self.program.outputs)))
        return export_artifact(path, self.target, [ArtifactEntry(self, NAME, structure)])


def _modules(m: tvm.runtime.Module):
    yield m
    for sub in m.imports:
        yield from _modules(sub)


def _cuda_source(library: Any) -> str:
    """The CUDA C source inside a cuda-built library."""
    for m in _modules(library.mod if hasattr(library, "mod") else library):
        if m.kind == "cuda":
            return m.inspect_source("cuda")
    raise BackendError("the library holds no CUDA module (was it built for cuda?)")


def ptx(source: str, target: tvm.target.Target) -> bytes:
    """PTX for ``source`` via nvcc, for the target's ``arch``."""
    from tvm.support import nvcc
    arch = str(target.attrs["arch"])
    with target:
        out = nvcc.compile_cuda(source, target_format="ptx", arch=arch, compiler="nvcc")
    return bytes(out) if isinstance(out, (bytes, bytearray)) else str(out).encode()


# ---------------------------------------------------------------------------------------------
# build and load
# ---------------------------------------------------------------------------------------------

def _open_database(tuning_db: Any) -> Any:
    """A MetaSchedule database from a Database or the work_dir of a JSON one."""
    from tvm.s_tir import meta_schedule as ms
    if isinstance(tuning_db, (str, os.PathLike)):
        if not pathlib.Path(tuning_db).is_dir():
            raise BackendError(f"tuning_db {str(tuning_db)!r} is not a directory; pass a MetaSchedule work_dir "
                               "(tuning writes one) or a tvm.s_tir.meta_schedule.Database")
        return ms.database.JSONDatabase(work_dir=str(tuning_db))
    return tuning_db


def _compile(mod: tvm.IRModule, target: Target, ttarget: tvm.target.Target, tuning_db: Any,
             schedule: bool) -> tuple[Any, str, dict[str, str | None]]:
    """Legalize, schedule and compile; returns the library, the scheduled TIR text and which rule
    scheduled each PrimFunc (for cuda: "dlight", TVM's GPU rules)."""
    db = _open_database(tuning_db) if tuning_db is not None else contextlib.nullcontext()
    with ttarget, db:
        legal = relax.get_pipeline("zero")(mod)  # legalize + fuse (+ the database's schedules)
    if target.kind == "cuda":
        with ttarget:
            scheduled = tvm.transform.Sequential(relax.pipeline.legalize_passes(ttarget))(legal)  # dlight
        report = {gv.name_hint: "dlight" if "tirx.is_scheduled" in (f.attrs or {}) else None
                  for gv, f in scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
        return tvm.compile(scheduled, target=ttarget), scheduled.script(), report
    report: dict[str, str | None] = {}
    scheduled = legal
    if schedule:
        scheduled, report = schedule_module(legal, ttarget)
    try:
        lib = tvm.compile(scheduled, target=ttarget)
    except Exception as e:  # noqa: BLE001 - a schedule TVM cannot lower: fall back to plain loops
        if scheduled is legal:
            raise
        warnings.warn(f"nir tvm backend: a default schedule failed to compile ({str(e).splitlines()[0][:200]}); "
                      "using unscheduled loops (correct but slow)", FallbackWarning, stacklevel=3)
        scheduled, report = legal, {name: None for name in report}
        lib = tvm.compile(legal, target=ttarget)
    return lib, scheduled.script(), report


def relax_module(program: Program, target: Target, fast_math: bool = False) -> tvm.IRModule:
    """The Relax module that `build` compiles for ``program`` (tuning must extract its tasks from the
    same one, or the tuned records would not match the built PrimFuncs): the lowered program, with
    TVM's approximations (``fast_math``) or, on CPUs, nir's vectorizable float32 exp, tanh, sigmoid,
    erf and softmax (`vmath`; as accurate as libm, which LLVM cannot vectorize), and NCHW convolutions
    widened to whole vectors (`conv_width`); ``where`` with a scalar constant branch keeps it a literal
    (`scalars`). int8 contractions use the CPU's dot-product instructions where it
    has them (`int8`)."""
    with tvm_target(target):  # lowerings may pick kernels for the CPU (int8.py: VNNI)
        mod = lower_program(fold_constants(program))  # numpy folds in ms what TVM's FoldConstant compiles
    if fast_math:
        mod = relax.transform.FastMathTransform()(mod)
    if target.kind == "llvm":
        mod = SinkReshape()(mod)
        mod = VectorMath()(mod)
        mod = PadConvWidth(lanes(tvm_target(target), "float32"))(mod)
    return ScalarWhere()(mod)


def _with_release(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the `RELEASE` function: no arguments, an empty tuple back."""
    bb = relax.BlockBuilder(mod)
    with bb.function(RELEASE, []):
        bb.emit_func_output(relax.Tuple([]))
    return bb.get()


def build(program: Program, target: Target | str, *, tuning_db: Any = None, schedule: bool = True,
          fast_math: bool = False) -> TVMExecutable:
    """Compile ``program`` for ``target`` (llvm or cuda).

    ``tuning_db``: a MetaSchedule database (or its work_dir) whose records schedule the PrimFuncs they
    match; the default schedules take the rest. ``schedule=False`` keeps TVM's plain loops on the CPU
    (slow; for debugging a schedule). On CPUs, float32 exp, tanh, sigmoid, erf (so gelu) and softmax
    are computed by vectorizable forms as accurate as libm (`vmath`); ``fast_math=True`` uses TVM's
    approximations instead (relative error below 1e-6 for finite results, but no inf on overflow and
    no NaN propagation). Raises BackendError for a primitive this
    backend cannot lower.
    """
    target = parse_target(target)
    if target.kind not in ("llvm", "cuda"):
        raise BackendChoiceError(f"the tvm backend serves llvm and cuda targets, not {str(target)!r}")
    verify(program)
    missing = sorted(program.prims() - set(LOWERINGS))
    if missing:
        reasons = unsupported()
        detail = "; ".join(f"{p}: {reasons.get(p, 'no lowering')}" for p in missing)
        raise BackendError(f"the tvm backend cannot compile primitive(s) {', '.join(missing)} ({detail}). "
                           "Use another backend for this program (e.g. backend='xla' or 'reference')")
    check_depth(program)
    with _BUILD_LOCK:  # TVM's BlockBuilder keeps a process-global stack: one build at a time
        ttarget = tvm_target(target)
        mod = _with_release(relax_module(program, target, fast_math))
        lib, tir_text, report = _compile(mod, target, ttarget, tuning_db, schedule)
    return TVMExecutable(lib, target, [Signature.of(v.type) for v in program.inputs],
                         [Signature.of(v.type) for v in program.outputs], program=program,
                         relax_text=mod.script(), tir_text=tir_text, schedules=report,
                         tvm_target_json=str(ttarget))


def load(path: pathlib.Path, manifest: dict[str, Any]) -> TVMExecutable:
    """Load one signature of an artifact (``manifest``: its entry in the artifact's manifest, files relative
    to ``path``) with TVM's runtime alone. This maps native code into the process: `nir.load` checks the
    files against the manifest's hashes first, and the artifact must come from a source you trust."""
    path = pathlib.Path(path)
    lib_path = path / manifest["files"]["library"]
    if not lib_path.is_file():
        raise BackendError(f"{lib_path} is missing; export the program again")
    target = parse_target(manifest["target"])
    if target.kind == "cuda" and not tvm.cuda().exist:
        raise BackendError(f"the artifact was built for {manifest['target']!r}, but this machine has no CUDA device "
                           "(tvm.cuda().exist is False); load it on a machine with an NVIDIA GPU")
    built_for = tvm.target.Target(manifest["tvm_target"]) if manifest.get("tvm_target") else None
    if target.kind == "llvm" and built_for is not None and "mcpu" in built_for.attrs:
        here = tvm.target.codegen.llvm_get_system_cpu()
        if str(built_for.attrs["mcpu"]) != here:
            warnings.warn(f"the artifact was compiled for CPU {built_for.attrs['mcpu']}, this one is {here}: it may "
                          "stop on an illegal instruction. Rebuild it here, or build it with -mcpu= naming the "
                          "oldest CPU it must run on", RuntimeWarning, stacklevel=2)
    library = tvm.runtime.load_module(str(lib_path))
    return TVMExecutable(library, target, [Signature.from_manifest(d) for d in manifest["inputs"]],
                         [Signature.from_manifest(d) for d in manifest["outputs"]],
                         schedules=manifest.get("schedules"), tvm_target_json=manifest.get("tvm_target", ""))
