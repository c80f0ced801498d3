"""Build the untuned benchmark's programs for CUDA with the TVM backend; run and time them if a GPU is here.

    python -m nir.bench.gpu_check [--arch sm_90] [--repeat 50] [--out DIR]

On any machine with TVM installed this compiles matmul 512^3, conv2d 1x64x56x56 (3x3x64) and the MLP
for ``cuda -arch=<arch>`` (TVM's default GPU pipeline, dlight schedules), counts the kernels, and with
``--out`` exports each one (model.so, model.cu, model.ptx when nvcc works). When a CUDA device is
present (one TVM can run on) it also checks each result against the reference interpreter and times
it, next to torch on the same GPU when torch has CUDA. It needs TVM (``pip install "named-ir[tvm]"``);
running needs an NVIDIA GPU with its driver and a TVM build with the CUDA runtime.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from typing import Any, Sequence


def _need_tvm() -> bool:
    import nir.backends
    if nir.backends.installed("tvm"):
        return True
    print("gpu_check needs TVM: pip install \"named-ir[tvm]\" (apache-tvm 0.27, apache-tvm-ffi 0.1.14.post1). "
          "Running the kernels also needs an NVIDIA GPU, its driver, and a TVM build with the CUDA runtime; "
          "without a GPU it still builds and exports the CUDA code.")
    return False


def _time_cuda(fn: Any, sync: Any, repeat: int) -> float:
    """Median ms of ``fn()`` with the device synchronised around each call."""
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    """Build (and where possible run) every workload for CUDA; print one line per workload."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default=None, help="CUDA arch, e.g. sm_90 (default: the GPU's, else sm_80)")
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per workload")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="export each program under this directory")
    args = ap.parse_args(argv)
    if not _need_tvm():
        return 1

    import numpy as np

    from nir.backends import tvm as tvm_backend
    from nir.bench.tvm_untuned import WORKLOADS, torch_fns
    from nir.interpret import interpret
    from nir.target import parse_target
    from nir.testing import random_inputs

    target = parse_target("cuda" + (f" -arch={args.arch}" if args.arch else ""))
    gpu = tvm_backend.cuda_device()
    torch = None
    if gpu:
        try:
            import torch as _torch
            torch = _torch if _torch.cuda.is_available() else None
        except ImportError:
            pass
    print(f"target {tvm_backend.tvm_target(target)}")
    print(f"CUDA device: {gpu or 'none (build and export only)'}")
    for name, (make, gflop) in WORKLOADS.items():
        program = make()
        t = time.perf_counter()
        exe = tvm_backend.build(program, target)
        line = f"{name:<26} built in {time.perf_counter() - t:.2f} s"
        kernels = {ln.split("(")[-2].split()[-1] for ln in exe.cuda_source().splitlines() if "__global__" in ln}
        line += f", {len(kernels)} kernels"
        if args.out is not None:
            path = exe.export(args.out / name.split()[0])
            line += f", exported to {path}"
        if gpu:
            inputs = random_inputs(program, seed=1)
            err = float(np.max(np.abs(exe(*inputs)[0] - interpret(program, *inputs)[0])))
            ms = exe.time_ms(*inputs, number=max(1, args.repeat // 5), repeat=5)
            line += f"; max|err| {err:.1e}; tvm {ms:.3f} ms ({gflop / ms * 1e3:.0f} GFLOP/s)"
            if torch is not None:
                fn = torch_fns(name)
                th = [torch.from_numpy(a).cuda() for a in inputs]
                with torch.no_grad():
                    tms = _time_cuda(lambda: fn(*th), torch.cuda.synchronize, args.repeat)
                line += f"; torch {tms:.3f} ms; tvm/torch {ms / tms:.2f}x"
        print(line, flush=True)
    if not gpu:
        print("no CUDA device here: built only. Run this script on a GPU machine to check results and timings.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
