"""The named-tensor API: every function here works eagerly and while tracing, and is also a
NamedTensor method where PyTorch has one (``nir.exp(x)`` and ``x.exp()``).

Positional rules follow PyTorch's named tensors (<= 2.12): operands broadcast by position from the
right, unnamed dims match anything, and two different names at the same position are an error
(`align_as` / `align_to` broadcast by name instead). The functions resolve those rules into
name-keyed primitives (`nir.ops`); no primitive sees an axis number.

One module per family: elementwise, reductions, contraction, nn (normalization, convolution, pooling),
layout (names, reshaping, indexing), creation and control (scan, cond); _methods binds them onto NamedTensor.
"""

# ruff: noqa: F401  (this module re-exports the families)
from .control import cond, scan
from .contraction import addmm, bmm, contract, dot, matmul, mm, mv
from .creation import (arange, full, manual_seed, ones, ones_like, rand, randn, tensor, zeros, zeros_like)
from .elementwise import (abs, add, cast, clamp, cos, div, eq, erf, exp, ge, gelu, gt, le, log, logical_and,
                          logical_not, logical_or, lt, masked_fill, maximum, minimum, mul, ne, neg, pow, relu,
                          rsqrt, sigmoid, sin, sqrt, sub, tanh, where)
from .layout import (align_as, align_to, cat, expand, flatten, narrow, permute, refine_names, rename, reshape,
                     select, squeeze, stack, t, take, transpose, unbind, unflatten, unsqueeze, view)
from .layout import pad, scatter_add
from .nn import avg_pool2d, conv2d, layer_norm, max_pool2d
from .reductions import (amax, amin, argmax, argmin, log_softmax, logsumexp, max, mean, min, prod, softmax, std,
                         sum, var)
from .layout import gather
from .reductions import cumprod, cumsum
from ._common import Dim, TensorLike, _rename_ir
from .nn import _pair
from . import _methods  # noqa: F401  (installs NamedTensor methods and operators)
