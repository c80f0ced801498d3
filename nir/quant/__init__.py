"""Reduced precision by name: post-training int8 quantization (`quantize`) and precision policies for
`nir.compile` (`apply_precision`, ``precision="bf16"``).

Scales are NamedTensors keyed by the dim they are per — a weight's output dim (``fc1.out``), never an
axis number — and the quantized program is an ordinary nir program (int8 constants, `quantize`,
`contract_wide`/`conv2d_wide` -> int32, `dequantize`) that every backend compiles.
"""

from .observers import MinMaxObserver, Observer, PercentileObserver
from .precision import PRECISIONS, apply_precision
from .ptq import QuantizationError, quantizable, quantize

__all__ = ["quantize", "QuantizationError", "quantizable", "apply_precision", "PRECISIONS", "Observer",
           "MinMaxObserver", "PercentileObserver"]
