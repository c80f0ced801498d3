"""Quantization: quantize_tensor/dequantize with scales matched by name (per tensor, per channel) and
contract_wide (int8 x int8 -> int32, bfloat16 x bfloat16 -> float32). PyTorch's oracle: round half to
even and clamp to [-128, 127] (torch.quantize_per_channel's arithmetic), integer einsum."""

from __future__ import annotations

import torch

from nir.types import NamedShapeError

from .core import E, OpInfo, S, T


def _codes(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round(x.float() / s), -128, 127).to(torch.int8)  # in float32, as nir divides


def _quantize_samples(d):
    return [
        S(T("N3 C4", d), T("", "float32", "positive"), names=("N", "C"), torch=_codes),
        S(T("N3 C4", d), T("C4", "float32", "positive"), names=("N", "C"), torch=_codes),
        # a scale per N, the input's first dim: broadcast by name, not by trailing position
        S(T("N3 C4", d), T("N3", "float32", "positive"), names=("N", "C"), torch=lambda x, s: _codes(x, s[:, None]),
          label=f"per-first-dim-{d}"),
        # small scales: most codes clip to the int8 range
        S(T("N3 C4", d), T("", "float32", values=0.01), names=("N", "C"), torch=_codes, label=f"clips-{d}"),
    ]


def _dequantize_samples(d):
    return [
        S(T("N3 C4", d), T("C4", "float32", "positive"), names=("N", "C"), torch=lambda q, s: q.float() * s),
        S(T("N3 C4", d), T("N3", "float32", "positive"), names=("N", "C"),
          torch=lambda q, s: q.float() * s[:, None], label=f"per-first-dim-{d}"),
    ]


def _scale_errors(fn_dtype: str):
    def errors():
        return [
            E(T("N3 C4", fn_dtype), T("K4", "float32"), exc=NamedShapeError, match="the scale's dim 'K' is not a dim"),
            E(T("N3 C4", fn_dtype), T("C5", "float32"), exc=NamedShapeError, match="the scale's dim 'C' has size 5"),
            E(T("N3 C4", fn_dtype), T("C4", "float64"), exc=NamedShapeError, match="the scale must be float32"),
        ]
    return errors


def _wide_samples(d):
    def oracle(spec):
        if d == "int8":
            return lambda a, b: torch.einsum(spec, a.to(torch.int64), b.to(torch.int64)).to(torch.int32)
        return lambda a, b: torch.einsum(spec, a.float(), b.float())
    return [
        S(T("M3 K70", d), T("N5 K70", d), over="K", names=("M", "N"), torch=oracle("mk,nk->mn")),
        S(T("B2 M3 K6", d), T("K6 B2 N4", d), over=("K",), names=("B", "M", "N"), torch=oracle("bmk,kbn->bmn")),
    ]


def _wide_errors():
    return [
        E(T("M3 K4", "int8"), T("K4 N2", "float32"), over="K", exc=NamedShapeError,
          match="takes two int8, bfloat16 or float16 operands, got int8 and float32"),
        E(T("M3 K4", "int8"), T("J4 N2", "int8"), over="K", exc=NamedShapeError, match="dim 'K' is not in both"),
    ]


TABLE = [
    OpInfo("quantize_tensor", _quantize_samples, ("float32", "bfloat16"), method=None,
           errors=_scale_errors("float32")),
    OpInfo("dequantize", _dequantize_samples, ("int8", "int32"), method=None, errors=_scale_errors("int8")),
    OpInfo("contract_wide", _wide_samples, ("int8", "bfloat16"), method=None, errors=_wide_errors),
]
