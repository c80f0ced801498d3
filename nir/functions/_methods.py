"""NamedTensor methods and operators: the named API's functions, bound."""

from typing import Any

from ..tensor import NamedTensor
from . import contraction, creation, elementwise, layout, nn, reductions
from .contraction import matmul
from .elementwise import (abs, add, cast, div, eq, ge, gt, le, logical_and, logical_not, logical_or, lt, mul, ne, neg,
                          pow, sub)

# ------------------------------------------------------------------------------------------------
# NamedTensor methods and operators: the functions above, bound
# ------------------------------------------------------------------------------------------------

_METHODS = (
    "exp log sqrt rsqrt tanh sigmoid relu gelu sin cos erf abs neg clamp maximum minimum logical_not "
    "sum mean prod max min amax amin std var logsumexp argmax argmin softmax log_softmax "
    "matmul mm bmm mv dot rename refine_names align_to align_as flatten unflatten transpose t permute "
    "select narrow squeeze unsqueeze view reshape expand masked_fill unbind cast cumsum cumprod gather"
).split()


def _logical(symbol: str, what: str, f: Any) -> Any:
    """``f`` (a logical op) as an operator that refuses non-bool tensors: PyTorch's ``& | ~`` are bitwise on
    integers, which nir does not have, and a silently logical answer would be a wrong one."""
    def op(*args: Any) -> Any:
        for a in args:
            if isinstance(a, NamedTensor) and a.dtype != "bool":
                raise TypeError(f"{symbol} is logical {what} on bool tensors; got {a.dtype} {a.type.pretty()}. nir has "
                                f"no bitwise {what}: compare first (x > 0), or call nir.logical_{what}() to treat "
                                "nonzero as True")
        return f(*args)
    op.__name__ = f.__name__
    op.__doc__ = f"``{symbol}``: logical {what} of bool tensors."
    return op


def _install_methods() -> None:
    g = {k: v for m in (elementwise, reductions, contraction, nn, layout, creation) for k, v in vars(m).items()}
    for name in _METHODS:
        setattr(NamedTensor, name, g[name])
    NamedTensor.to = cast  # type: ignore[attr-defined]
    binary = {"add": add, "sub": sub, "mul": mul, "truediv": div, "pow": pow, "matmul": matmul,
              "and": _logical("&", "and", logical_and), "or": _logical("|", "or", logical_or)}
    for name, f in binary.items():
        setattr(NamedTensor, f"__{name}__", f)
        setattr(NamedTensor, f"__r{name}__", (lambda f: lambda a, b: f(b, a))(f))
    for name, f in {"eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge}.items():
        setattr(NamedTensor, f"__{name}__", f)
    NamedTensor.__neg__ = neg  # type: ignore[attr-defined]
    NamedTensor.__abs__ = abs  # type: ignore[attr-defined]
    NamedTensor.__invert__ = _logical("~", "not", logical_not)  # type: ignore[attr-defined]


_install_methods()
