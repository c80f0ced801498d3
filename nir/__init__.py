"""nir: named-tensor programs, checked by name while tracing, compiled to TVM (Relax) and XLA.

    import nir
    x = nir.randn(8, 3, 32, 32, names=("N", "C", "H", "W"))
    x.sum("C").names                         # ('N', 'H', 'W')
    f = nir.compile(lambda x: x.softmax("C"), target="llvm")
    f(x); print(f.ir)
"""

from . import backends, distributed, extras, ops, optim, tree
from .autodiff import grad, value_and_grad, vjp
from .compile import Compiled, Loaded, SignatureError, compile, load
from .frontends.python import Spec, Traced, spec, trace
from .functions import (abs, add, addmm, align_as, align_to, amax, amin, arange, argmax, argmin, avg_pool2d, bmm,
                        cast, cat, clamp, cond, contract, conv2d, cos, div, dot, eq, erf, exp, expand, flatten, full, ge,
                        gelu, gt, layer_norm, le, log, log_softmax, logical_and, logical_not, logical_or,
                        logsumexp, lt, manual_seed, masked_fill, matmul, max, max_pool2d, maximum, mean, min,
                        minimum, mm, mul, mv, narrow, ne, neg, ones, ones_like, permute, pow, prod, rand, randn,
                        refine_names, relu, rename, reshape, rsqrt, scan, select, sigmoid, sin, softmax, sqrt, squeeze,
                        stack, std, sub, sum, t, take, tanh, tensor, transpose, unbind, unflatten, unsqueeze, var,
                        view, where, zeros, zeros_like)
from .functions import cumprod, cumsum, gather, pad, scatter_add
from .interpret import interpret
from .ir import Builder, Program, VerifyError, verify
from .functions import contract_wide, dequantize, quantize_tensor
from .quant import QuantizationError, quantize
from .target import Target, TargetError, parse_target
from .tensor import NamedTensor, TraceError
from .text import ParseError, parse_program as parse
from .types import NamedShapeError, TensorType

__version__ = "0.1.0"


def from_torch(module_or_fn, example_inputs, names=None, **kwargs):  # type: ignore[no-untyped-def]
    """Convert a torch module or function into a named nir program (see `nir.frontends.torch.from_torch`).
    Needs `pip install "named-ir[torch]"` (`nir.extras.MissingDependencyError` says so otherwise); torch
    is imported only when this is called."""
    from .extras import require
    require("torch", "nir.from_torch")
    from .frontends.torch import from_torch as _from_torch
    return _from_torch(module_or_fn, example_inputs, names=names, **kwargs)
