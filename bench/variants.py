"""The ways to run a workload: peers (numpy, torch eager, torch.compile, jax.jit) and nir backends.

`build(variant, workload, inputs)` prepares one variant and returns a `Built`: a zero-argument ``call``
that runs the workload once, synchronously (jax results are waited for), and the time the preparation
took. Frameworks are imported only here, and only when a variant that needs them is built.

Threads: `set_threads(n)` gives every library the same thread count. It must run before torch, jax or
TVM start their thread pools: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` (read at
import), ``TVM_NUM_THREADS`` (read when TVM's pool starts), ``torch.set_num_threads`` (at each torch
build). XLA:CPU has no thread-count flag (``--xla_cpu_multi_thread_eigen=false`` does not limit it); it
sizes its pool from the CPUs the process may run on, which JAX's maintainers name as the way to limit
it (jax-ml/jax#1539). So for fewer threads than CPUs the process is pinned to the first ``n`` CPUs
(`os.sched_setaffinity`), which binds every library alike. numpy's OpenBLAS reads its thread count
when numpy is imported, which `nir` does before `nir bench` starts: for an exact count below the number
of CPUs, also set ``OPENBLAS_NUM_THREADS`` in the environment.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

import nir
from nir import NamedTensor

from .workloads import Workload

__all__ = ["Variant", "Built", "PEERS", "build", "peer_variants", "nir_variants", "set_threads", "default_threads",
           "to_numpy", "program_bytes", "TuningUnsupported"]

# peer name -> (framework whose program it runs, packages it needs)
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "numpy": ("numpy", ("numpy",)),
    "torch": ("torch", ("torch",)),
    "torch.compile": ("torch", ("torch",)),
    "jax": ("jax", ("jax", "jaxlib")),
}
# packages each nir backend imports when it builds (imported before a memory baseline is taken)
BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {"tvm": ("tvm",), "xla": ("jax",)}


class TuningUnsupported(RuntimeError):
    """nir.compile does not accept ``tuning=`` yet (the tuning issue has not landed)."""


@dataclass(frozen=True)
class Variant:
    """A peer (``kind="peer"``, ``name`` in PEERS) or a nir backend (``kind="nir"``, ``backend`` set,
    ``tuning`` the tuning database directory of a tuned variant)."""

    name: str
    kind: str
    backend: str | None = None
    tuning: str | None = None

    @property
    def packages(self) -> tuple[str, ...]:
        """Top-level packages this variant imports to run."""
        if self.kind == "peer":
            return PEERS[self.name][1]
        return BACKEND_PACKAGES.get(self.backend or "", ())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "backend": self.backend, "tuning": self.tuning}


@dataclass
class Built:
    """A prepared variant: ``call()`` runs it once and returns its raw outputs."""

    call: Callable[[], Any]
    build_s: float
    intermediate_bytes: int | None = None  # bytes of values between inputs and outputs, where knowable
    intermediates_from: str = ""           # what ``intermediate_bytes`` counts
    note: str = ""                         # e.g. that a tuned variant found no tuning record


def default_threads() -> int:
    """The number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def set_threads(n: int) -> list[str]:
    """Give torch, TVM, XLA and BLAS ``n`` threads (see the module docstring); returns notes on what
    could not be honoured (a library already started)."""
    notes = []
    blas_preset = os.environ.get("OPENBLAS_NUM_THREADS") == str(n)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ[var] = str(n)
    cpus = sorted(os.sched_getaffinity(0))
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])
        if "numpy" in _imported() and not blas_preset:
            notes.append(f"numpy's BLAS started before --threads {n}: it keeps its own thread count but runs on "
                         f"{n} CPU(s); set OPENBLAS_NUM_THREADS={n} in the environment for an exact count")
    elif n > len(cpus):
        notes.append(f"--threads {n} is more than the {len(cpus)} CPUs this process may use")
    return notes


def _imported() -> set[str]:
    import sys
    return {m.split(".")[0] for m in sys.modules}


def peer_variants(names: Sequence[str]) -> tuple[list[Variant], list[str]]:
    """The peers in ``names`` whose packages are installed, and a note for each one skipped."""
    out, notes = [], []
    for name in names:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}")
        missing = [p for p in PEERS[name][1] if importlib.util.find_spec(p) is None]
        if missing:
            notes.append(f"peer {name} skipped: {', '.join(missing)} not installed")
        else:
            out.append(Variant(name, "peer"))
    return out, notes


def nir_variants(backends: Sequence[str], tuning: str | None = None) -> tuple[list[Variant], list[str]]:
    """A nir variant per installed backend in ``backends`` (and, when ``tuning`` is a database
    directory, a tuned one each plus ``nir-auto-tuned``, which lets the records choose the backend), and a
    note for each backend skipped."""
    out, notes = [], []
    for b in backends:
        if b not in nir.backends.REGISTRY:
            raise ValueError(f"unknown backend {b!r}; backends: {', '.join(nir.backends.REGISTRY)}")
        if not nir.backends.installed(b):
            notes.append(f"backend {b} skipped: not installed ({nir.backends.INSTALL_HINT.get(b, '')})")
            continue
        out.append(Variant(f"nir-{b}", "nir", b))
        if tuning is not None and b != "reference":
            out.append(Variant(f"nir-{b}-tuned", "nir", b, tuning))
    if tuning is not None and any(v.tuning for v in out):  # backend="auto": the backend the tuner measured fastest
        out.append(Variant("nir-auto-tuned", "nir", "auto", tuning))
    return out, notes


def build(variant: Variant, workload: Workload, inputs: Sequence[NamedTensor], threads: int,
          intermediates: bool = True) -> Built:
    """Prepare ``variant`` to run ``workload`` on ``inputs`` (compiling ahead where the variant can; a
    jit peer compiles on its first call, which the caller times). ``intermediates=False`` skips the
    extra XLA compile that sizes a jax peer's scratch memory. Raises TuningUnsupported when a tuned
    variant cannot be compiled because nir.compile has no tuning support."""
    if variant.kind == "nir":
        return _build_nir(variant, workload, inputs)
    framework = PEERS[variant.name][0]
    arrays = [np.array(x.numpy()) for x in inputs]  # owned, writable copies in logical order
    t0 = time.perf_counter()
    fn = workload.peers[framework]()
    if framework == "numpy":
        return Built(lambda: fn(*arrays), time.perf_counter() - t0)
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        if variant.name == "torch.compile":
            fn = torch.compile(fn)
        args = [torch.from_numpy(a) for a in arrays]
        return Built(lambda: fn(*args), time.perf_counter() - t0)
    import jax
    jitted = jax.jit(fn)
    args = [jax.device_put(a) for a in arrays]
    jax.block_until_ready(args)
    built = Built(lambda: jax.block_until_ready(jitted(*args)), time.perf_counter() - t0)
    if not intermediates:
        return built
    try:  # XLA can say how much scratch memory the compiled program needs
        built.intermediate_bytes = int(jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes)
        built.intermediates_from = "XLA temp buffers"
    except Exception:  # noqa: BLE001 - an optional figure; older or other jaxlibs may not report it
        pass
    return built


def _build_nir(variant: Variant, workload: Workload, inputs: Sequence[NamedTensor]) -> Built:
    options = {} if variant.tuning is None else {"tuning": variant.tuning}
    t0 = time.perf_counter()
    try:
        compiled = nir.compile(workload.fn, backend=variant.backend, **options)
        compiled.lower(*inputs)
    except TypeError as e:
        if variant.tuning is not None and "tuning" in str(e):
            raise TuningUnsupported(f"tuning support not installed (nir.compile rejected tuning=: {e})") from e
        raise
    build_s = time.perf_counter() - t0
    _, intermediates = program_bytes(compiled.program)
    note = ""
    if variant.tuning is not None and not getattr(compiled, "tuned", True):
        note = f"no tuning record for this program in {variant.tuning}: compiled untuned"
    elif variant.backend == "auto":
        note = f"backend chosen: {compiled.backend}"
    return Built(lambda: compiled(*inputs), build_s, intermediates, "nir IR values", note)


def program_bytes(program: nir.Program) -> tuple[int, int]:
    """(bytes of the outputs, bytes of every other value the program's equations define, those of the
    sub-programs of scans and conds included once: one step's worth)."""
    from nir.types import numpy_dtype

    def size(v: Any) -> int:
        return v.type.numel * numpy_dtype(v.type.dtype).itemsize
    outs = {v.id for v in program.outputs}
    defined = [v for e in program.eqns for v in e.outputs if v.id not in outs]
    inner = [v for sub in list(program.walk())[1:] for e in sub.eqns for v in e.outputs]
    return sum(size(v) for v in program.outputs), sum(size(v) for v in defined + inner)


def to_numpy(out: Any) -> list[np.ndarray]:
    """Raw outputs (a NamedTensor, torch tensor or jax/numpy array, or a tuple of them) as numpy arrays,
    copied: a training step's torch outputs are its parameters, which later calls update in place."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in to_numpy(o)]
    if hasattr(out, "detach"):  # torch
        out = out.detach()
    return [np.asarray(out).copy()]
