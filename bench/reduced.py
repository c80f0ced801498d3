"""Reduced precision, measured: nir int8 (`nir.quantize`) and bf16 (``precision="bf16"``) against nir
float32 on each backend, with torch's own int8 (torch.ao.quantization FX, the x86 engine) and torch bf16
autocast as peers, in one process at one thread count, round-robin.

    nir bench --precision int8,bf16                      # the same as python -m nir.bench.reduced
    python -m nir.bench.reduced --workloads mlp,conv3x3,lenet5,resnet18_b1 --threads 2 --size small

Each workload's weights become constants (the way nir.from_torch gives them), its first input is the
activation; int8 is calibrated on that input and one more random batch. Times are medians of
``--rounds`` samples per variant, interleaved; the table shows them relative to nir's float32 on the
same backend, and the error of each variant relative to the largest float32 output.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

import nir

from .variants import set_threads
from .workloads import WORKLOADS, Workload

__all__ = ["main", "variants"]

DEFAULT_WORKLOADS = "mlp,conv3x3,lenet5,resnet18_b1,mobilenet_v3_small_b1"


def _traced(workload: Workload, inputs: Sequence[nir.NamedTensor]) -> tuple[nir.Traced, Callable[..., Any]]:
    weights = inputs[1:]

    def fn(x: nir.NamedTensor) -> nir.NamedTensor:
        return workload.fn(x, *weights)
    return nir.trace(fn, inputs[0]), fn


def _calibration(x: nir.NamedTensor) -> list[tuple[nir.NamedTensor]]:
    other = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    return [(x,), (nir.tensor(other, names=x.names),)]


def _torch_module(workload: Workload, size: str, inputs: Sequence[nir.NamedTensor]) -> Any:
    """The workload as a torch module of nn.Linear/nn.Conv2d layers holding its weights (what
    torch.ao.quantization quantizes; a zoo workload's own model), or None for a workload without one."""
    import torch
    import torch.nn as nn
    name = workload.name
    if workload.family == "zoo":
        from .workloads.zoo.models import MODELS, model
        base = name.rsplit("_b", 1)[0]
        return model(base, size) if base in MODELS and MODELS[base].vision else None
    arrays = [torch.from_numpy(np.array(t.numpy())) for t in inputs[1:]]

    def linear(w: Any, b: Any) -> nn.Linear:
        layer = nn.Linear(w.shape[0], w.shape[1])
        layer.weight.data, layer.bias.data = w.T.contiguous(), b
        return layer

    def conv(w: Any, b: Any, padding: int) -> nn.Conv2d:
        layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), padding=padding)
        layer.weight.data, layer.bias.data = w, b
        return layer
    if name == "mlp":
        layers: list[Any] = []
        for i in range(0, len(arrays), 2):
            layers += [linear(arrays[i], arrays[i + 1]), nn.ReLU()]
        return nn.Sequential(*layers[:-1]).eval()
    if name == "conv3x3":
        return nn.Sequential(conv(arrays[0], arrays[1], 1), nn.ReLU()).eval()
    if name == "lenet5":
        c1, c2 = conv(arrays[0], arrays[1], 0), conv(arrays[2], arrays[3], 0)
        f1, f2, f3 = (linear(arrays[i], arrays[i + 1]) for i in (4, 6, 8))
        return nn.Sequential(c1, nn.ReLU(), nn.MaxPool2d(2), c2, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             f1, nn.ReLU(), f2, nn.ReLU(), f3).eval()
    return None


def _torch_int8(module: Any, x: Any, calibration: Sequence[Any]) -> Any:
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(copy.deepcopy(module), get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            for c in calibration:
                prepared(c)
        return convert_fx(prepared)


def variants(workload: Workload, size: str, backends: Sequence[str], threads: int
             ) -> tuple[dict[str, Callable[[], Any]], list[str]]:
    """{variant name: a call that runs it once} and notes on what was skipped."""
    inputs = workload.make_inputs(size, 0)
    x = inputs[0]
    traced, fn = _traced(workload, inputs)
    quantized = nir.quantize(traced, _calibration(x))
    calls: dict[str, Callable[[], Any]] = {}
    notes: list[str] = []
    for b in backends:
        for label, compiled in (("fp32", nir.compile(traced, backend=b)), ("int8", nir.compile(quantized, backend=b)),
                                ("bf16", nir.compile(fn, backend=b, precision="bf16"))):
            compiled.lower(x)
            calls[f"nir-{b}-{label}"] = (lambda c: lambda: c(x)._data)(compiled)
    try:
        import torch
    except ImportError:
        return calls, notes + ["torch peers skipped: torch is not installed"]
    torch.set_num_threads(threads)
    tx = torch.from_numpy(np.array(x.numpy()))
    peer = workload.peers["torch"]()
    targs = [torch.from_numpy(np.array(t.numpy())) for t in inputs[1:]]

    def torch_fp32() -> Any:
        with torch.no_grad():
            return peer(tx, *targs).numpy()

    def torch_bf16() -> Any:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return peer(tx, *targs).float().numpy()
    calls["torch-fp32"], calls["torch-bf16"] = torch_fp32, torch_bf16
    module = _torch_module(workload, size, inputs)
    if module is None:
        notes.append(f"{workload.name}: no torch.ao int8 peer (no nn.Module form here)")
    else:
        qmodel = _torch_int8(module, tx, [torch.from_numpy(np.array(c[0].numpy())) for c in _calibration(x)])

        def torch_int8() -> Any:
            with torch.no_grad():
                return qmodel(tx).numpy()
        calls["torch-int8"] = torch_int8
    return calls, notes


def measure(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each variant, sampled round-robin after one warm-up call each."""
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Print, per workload, every variant's median time, its speed-up over nir float32 on the same
    backend (torch variants: over torch float32) and its error against float32."""
    p = argparse.ArgumentParser(prog="python -m nir.bench.reduced", description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS)
    p.add_argument("--backends", default=",".join(b for b in ("tvm", "xla") if nir.backends.installed(b)))
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    for note in set_threads(args.threads):
        print("note:", note)
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, load average {load:.1f} at start, size {args.size}")
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            print(f"{name}: not a workload here (workloads: {', '.join(WORKLOADS)})")
            continue
        calls, notes = variants(WORKLOADS[name], args.size, args.backends.split(","), args.threads)
        outputs = {k: np.asarray(c(), dtype=np.float32) for k, c in calls.items()}
        times = measure(calls, args.rounds)
        print(f"\n{name}")
        for k in calls:
            base = k.rsplit("-", 1)[0] + "-fp32"
            err = np.abs(outputs[k] - outputs[base]).max() / max(np.abs(outputs[base]).max(), 1e-30)
            print(f"  {k:<16} {times[k] * 1e3:9.3f} ms   {times[base] / times[k]:5.2f}x vs {base:<14} "
                  f"err {err:.2e}")
        for note in notes:
            print("  note:", note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
