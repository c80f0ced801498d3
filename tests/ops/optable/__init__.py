"""The op table: every public function of nir's named API (and every NamedTensor method and operator),
with samples, an independent oracle (PyTorch), expected output names and error samples, one module per
family like nir/functions. tests/ops/test_op_table.py runs it eagerly, as methods, traced on every
backend, and its error samples; docs/testing.md says how to add an op."""

from __future__ import annotations

from . import contraction, control, creation, cumulative, elementwise, layout, nn, reductions
from .core import ALL, BACKENDS, FLOATS, INTS, E, ErrorSample, OpInfo, S, Sample, T

TABLE: list[OpInfo] = [*elementwise.TABLE, *reductions.TABLE, *contraction.TABLE, *layout.TABLE, *nn.TABLE,
                       *creation.TABLE, *cumulative.TABLE, *control.TABLE]
EXEMPT: dict[str, str] = dict(creation.EXEMPT)

__all__ = ["TABLE", "EXEMPT", "OpInfo", "Sample", "ErrorSample", "S", "E", "T", "ALL", "FLOATS", "INTS", "BACKENDS"]
