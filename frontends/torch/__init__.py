"""The PyTorch frontend: bring a torch program in, give its dimensions names, compile it anywhere.

    traced = nir.from_torch(model, (images,), names={"x": ("N", "C", "H", "W")})
    f = nir.compile(traced, target="llvm", backend="xla")
    logits = f(nir.tensor(images, names=("N", "C", "H", "W")))      # names ('N', 'fc3.out')

How it works. `torch.export.export` (eval mode, no_grad) gives a flat graph of ATen ops whose parameters
are lifted to inputs. That graph is *replayed* with nir's named-tensor API inside a nir trace: every ATen
op has a converter in `CONVERTERS` that resolves its positional meaning (``dim=1``, Linear's
``x @ W.T``) against the tensor's positional layout and calls `nir.functions`, so nir's name rules check
the program while it is converted. Parameters and buffers become named constants whose dims are named
after their layer and role (``fc1.weight`` -> ``{fc1.out, fc1.in}``, ``conv1.weight`` ->
``{conv1.out, conv1.in, conv1.kh, conv1.kw}``); ``param_names=`` overrides any of them.

How names flow. Names the user gives (for inputs, and for parameters through ``param_names=``) are
*asserted*: two asserted names that meet at one position of an elementwise op are a conflict, reported
as a `TorchNameError` (a `nir.NamedShapeError`) that names the module it happened in. Names derived from
layers (``fc1.out``) are *provisional*: where one meets another name at the same position of an
elementwise op (the residual ``x + self.proj(h)``), it yields and takes that name, since the model says
they are one dim. A contraction renames the weight's contracted dim to the input's name (Linear's in-dim
becomes ``C``); a Linear's output dim carries the layer's out name. A torch ``view``/``reshape`` becomes
nir ``flatten``/``unflatten`` on the runs of consecutive dims it merges or splits; dims it leaves alone
keep their names, merged or split dims are unnamed.

An ATen op without a converter is first decomposed with torch's own decomposition (when torch has one)
into ops that have converters; one that still has none raises `UnsupportedOpError`, naming the op and the
module and source line it came from. `docs/torch_ops.md` lists the converted ops (`supported_ops_markdown`).

Where things are. One module per converter family: `elementwise`, `reductions`, `layers` (contraction,
normalization, convolution, pooling, attention, embedding), `layout` (views, slicing, indexing),
`creation` (creation, dtype, copies, symbolic sizes); `naming` names parameters; `driver` exports, replays
and holds `from_torch`; `_common` holds the table and the helpers converters share.
"""

from __future__ import annotations

from . import creation, elementwise, layers, layout, reductions  # noqa: F401  (register their converters)
from ._common import CONVERTERS, TorchNameError, UnsupportedOpError, converts, op_key
from .driver import TorchTraced, from_torch, supported_ops_markdown
from .naming import default_param_names

__all__ = ["from_torch", "TorchTraced", "UnsupportedOpError", "TorchNameError", "CONVERTERS", "converts", "op_key",
           "default_param_names", "supported_ops_markdown"]
