"""PyTorch's named-tensor rules where nir used to differ (issue 13): misaligned dims wherever names are
unified by position, implicit dims, unflatten, and the exception types of nir.compile's arguments.

Each rule runs eagerly, while tracing, and compiled on every installed backend (name rules are checked
while tracing, so a compiled function refuses what eager code refuses, before its backend sees anything)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import nir
from nir.backends import BackendChoiceError, BackendError

BACKENDS = nir.backends.available()
MODES = ["eager", "traced", *(f"compiled-{b}" for b in BACKENDS)]


@dataclass
class Rule:
    id: str
    fn: Callable[..., Any]
    inputs: tuple[tuple[tuple[int, ...], tuple[str | None, ...]], ...]  # (shape, names) per input
    error: type[Exception] | None = None
    match: str = ""
    names: tuple[str | None, ...] | None = None
    shape: tuple[int, ...] | None = None


def _inputs(rule: Rule) -> list[nir.NamedTensor]:
    rng = np.random.default_rng(len(rule.id))
    return [nir.tensor(rng.standard_normal(shape).astype(np.float32), names=names) for shape, names in rule.inputs]


def _run(rule: Rule, mode: str) -> nir.NamedTensor:
    args = _inputs(rule)
    if mode == "eager":
        return rule.fn(*args)
    if mode == "traced":
        traced = nir.trace(rule.fn, *args)
        nir.verify(traced.program)
        return nir.tensor(nir.interpret(traced.program, *[a.numpy() for a in args])[0],
                          names=traced.program.outputs[0].type.user_names)
    return nir.compile(rule.fn, backend=mode.removeprefix("compiled-"))(*args)


MISALIGNED = r"Are your tensors misaligned\?"
NAB, UNB = ((2, 3, 4), ("N", "A", "B")), ((2, 4, 2), (None, "N", "B"))

RULES = [
    # ---- 1. a name may not be unified by position with an unnamed dim of an operand that has it elsewhere
    Rule("bmm-misaligned-batch", nir.bmm, (NAB, UNB), nir.NamedShapeError,
         r"bmm: cannot match dim 'N' of \{N: 2, A: 3, B: 4\} with the unnamed dim .* of \{None: 2, N: 4, B: 2\}.*"
         + MISALIGNED),
    Rule("matmul-misaligned-batch", nir.matmul, (NAB, UNB), nir.NamedShapeError,
         r"matmul: cannot match dim 'N' of \{N: 2, A: 3, B: 4\} .* \{None: 2, N: 4, B: 2\}.*" + MISALIGNED),
    Rule("matmul-operator-misaligned-batch", lambda a, b: a @ b, (NAB, UNB), nir.NamedShapeError,
         r"matmul: .*" + MISALIGNED),
    Rule("matmul-misaligned-with-output-dim", lambda a, b: a @ b, (NAB, ((2, 4, 2), (None, "B", "N"))),
         nir.NamedShapeError, r"matmul: cannot match dim 'N' .* \{None: 2, B: 4, N: 2\}.*" + MISALIGNED),
    Rule("matmul-misaligned-longer-batch", lambda a, b: a @ b,
         (((5, 2, 3, 4), ("X", "N", "A", "B")), ((2, 4, 3), (None, "B", "N"))), nir.NamedShapeError,
         r"matmul: cannot match dim 'N' .*" + MISALIGNED),
    Rule("matmul-misaligned-first-operand", lambda a, b: a @ b,
         (((2, 3, 4), (None, "N", "K")), ((2, 4, 5), ("N", "K2", "M"))), nir.NamedShapeError,
         r"matmul: cannot match dim 'N' of \{N: 2, K2: 4, M: 5\} .* of \{None: 2, N: 3, K: 4\}.*" + MISALIGNED),
    Rule("bmm-unnamed-batch-still-broadcasts", nir.bmm, (NAB, ((2, 4, 5), (None, "B", "C"))),
         names=("N", "A", "C"), shape=(2, 3, 5)),
    Rule("addmm-misaligned", lambda c, a, b: nir.addmm(c, a, b),
         (((3, 4), (None, "N")), ((3, 4), ("N", "K")), ((4, 4), ("K", None))), nir.NamedShapeError,
         r"addmm: misaligned dims: dim 'N'"),
    Rule("where-misaligned", lambda x, y: nir.where(x > 0, x, y), (((2, 2), ("N", None)), ((2, 2), (None, "N"))),
         nir.NamedShapeError, r"where: misaligned dims: dim 'N'"),
    Rule("cat-misaligned", lambda x, y: nir.cat([x, y], 0), (((2, 2), ("N", None)), ((2, 2), (None, "N"))),
         nir.NamedShapeError, r"cat: cannot match dim 'N' of \{None: 2, N: 2\} .* of \{N: 2, None: 2\}.*" + MISALIGNED),
    Rule("cat-unnamed-still-unifies", lambda x, y: nir.cat([x, y], 0), (((2, 3), ("N", None)), ((2, 3), (None, "C"))),
         names=("N", "C"), shape=(4, 3)),
    Rule("stack-misaligned", lambda x, y: nir.stack([x, y], 0), (((2, 2), ("N", None)), ((2, 2), (None, "N"))),
         nir.NamedShapeError, r"stack: cannot match dim 'N' of \{None: 2, N: 2\} .* of \{N: 2, None: 2\}.*"
         + MISALIGNED),
    Rule("stack-unifies-names", lambda x, y: nir.stack([x, y], -1, name="S"),
         (((2, 3), ("N", None)), ((2, 3), (None, "C"))), names=("N", "C", "S"), shape=(2, 3, 2)),
    # ---- 2. no implicit dims: dim=None is refused where PyTorch's dim is not optional
    Rule("prod-dim-none", lambda x: x.prod(dim=None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"prod: dim=None names no dim of \{N: 2, C: 3\}.*look up dimensions by name \(dim='N'\), or call prod\(\)"),
    Rule("softmax-dim-none", lambda x: x.softmax(dim=None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"softmax: dim=None .*look up dimensions by name"),
    Rule("log-softmax-dim-none", lambda x: nir.log_softmax(x, None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"log_softmax: dim=None .*look up dimensions by name"),
    Rule("logsumexp-dim-none", lambda x: x.logsumexp(None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"logsumexp: dim=None .*look up dimensions by name"),
    Rule("max-dim-none", lambda x: x.max(dim=None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"max: dim=None .*look up dimensions by name"),
    Rule("min-dim-none", lambda x: x.min(None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"min: dim=None .*look up dimensions by name"),
    Rule("select-dim-none", lambda x: x.select(None, 0), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"select: dim=None .*look up dimensions by name"),
    Rule("stack-dim-none", lambda x: nir.stack([x, x], None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"stack: dim=None .*look up dimensions by name"),
    Rule("unsqueeze-dim-none", lambda x: x.unsqueeze(None), (((2, 3), ("N", "C")),), nir.NamedShapeError,
         r"unsqueeze: dim=None .*look up dimensions by name"),
    Rule("softmax-several-dims", lambda x: x.softmax(("N", "C")), (((2, 3), ("N", "C")),), TypeError,
         r"softmax: a dim is a name or an int, got \('N', 'C'\)"),
    Rule("sum-no-dim-reduces-all", lambda x: x.sum(), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("sum-dim-none-reduces-all", lambda x: x.sum(dim=None), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("prod-no-dim-reduces-all", lambda x: x.prod(), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("max-no-dim-reduces-all", lambda x: x.max(), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("mean-dim-none-reduces-all", lambda x: x.mean(None), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("amax-dim-none-reduces-all", lambda x: x.amax(dim=None), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("var-dim-none-reduces-all", lambda x: x.var(dim=None), (((2, 3), ("N", "C")),), names=(), shape=()),
    Rule("argmax-dim-none-flattens", lambda x: x.argmax(None), (((2, 3), ("N", "C")),), names=(), shape=()),
    # ---- 3. unflatten
    Rule("unflatten-named-without-names", lambda x: x.unflatten("D", (3, 4)), (((2, 12), ("N", "D")),),
         nir.NamedShapeError, r"unflatten: the input \{N: 2, D: 12\} is a named tensor but no names were given for "
                              r"the unflattened sizes \[3, 4\]"),
    Rule("unflatten-partly-named-without-names", lambda x: x.unflatten(1, (3, -1)), (((2, 12), ("N", None)),),
         nir.NamedShapeError, r"is a named tensor but no names were given"),
    Rule("unflatten-unnamed-sizes", lambda x: x.unflatten(1, (3, -1)), (((2, 12), (None, None)),),
         names=(None, None, None), shape=(2, 3, 4)),
    Rule("unflatten-explicit-unnamed-parts", lambda x: x.unflatten("D", ((None, 3), ("E", -1))),
         (((2, 12), ("N", "D")),), names=("N", None, "E"), shape=(2, 3, 4)),
    Rule("unflatten-empty-sizes", lambda x: x.unflatten("D", ()), (((2, 12), ("N", "D")),), ValueError,
         r"unflatten: sizes must be non-empty"),
    Rule("unflatten-minus-one-ambiguous", lambda x: x.unflatten("B", (("B1", 0), ("B2", -1))),
         (((2, 0), ("A", "B")),), nir.NamedShapeError,
         r"unflatten: cannot infer the -1 in \[0, -1\] for dim 'B' of \{A: 2, B: 0\}"),
    Rule("unflatten-zero-size", lambda x: x.unflatten("B", (("B1", 3), ("B2", -1), ("B3", 4))),
         (((2, 0), ("A", "B")),), names=("A", "B1", "B2", "B3"), shape=(2, 3, 0, 4)),
    Rule("unflatten-zero-size-twice", lambda x: x.unflatten("B", (("B1", 0), ("B2", 3), ("B3", 0))),
         (((2, 0), ("A", "B")),), names=("A", "B1", "B2", "B3"), shape=(2, 0, 3, 0)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule(rule: Rule, mode: str) -> None:
    if rule.error is not None:
        with pytest.raises(rule.error, match=rule.match):
            _run(rule, mode)
        return
    out = _run(rule, mode)
    assert (out.names, out.shape) == (rule.names, rule.shape)
    want = rule.fn(*_inputs(rule)).numpy()  # eager: the reference implementation of every op
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


# ---- 4. exception types: a bad argument is a ValueError, a failure while building or running is not

def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'mlir'; known backends: reference"):
        nir.compile(lambda x: x + 1, backend="mlir")


def test_unknown_backend_is_still_a_backend_error() -> None:
    with pytest.raises(BackendError):
        nir.compile(lambda x: x + 1, backend="mlir")


def test_unknown_target_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown target 'fpga'; known kinds: llvm, cuda, tpu"):
        nir.compile(lambda x: x + 1, target="fpga")


def test_backend_that_cannot_serve_the_target_is_a_value_error() -> None:
    with pytest.raises(BackendChoiceError, match="backend 'reference' cannot serve target 'tpu'"):
        nir.compile(lambda x: x + 1, backend="reference", target="tpu")


@pytest.mark.skipif("tvm" not in BACKENDS, reason="tvm is not installed")
def test_target_option_the_backend_does_not_know_is_a_value_error() -> None:
    f = nir.compile(lambda x: x + 1, backend="tvm", target="llvm -no-such-option=1")
    with pytest.raises(ValueError, match="the tvm backend cannot use target 'llvm -no-such-option=1'"):
        f(nir.randn(2, names=("N",)))


@pytest.mark.skipif("xla" not in BACKENDS, reason="xla is not installed")
def test_running_without_the_device_stays_a_runtime_error() -> None:
    f = nir.compile(lambda x: x + 1, backend="xla", target="tpu")
    with pytest.raises(BackendError, match="no tpu device is present") as info:
        f(nir.randn(2, names=("N",)))
    assert isinstance(info.value, RuntimeError) and not isinstance(info.value, ValueError)


@pytest.mark.parametrize("alias,kind", [("cpu", "llvm"), ("gpu", "cuda"), ("nvidia", "cuda")])
def test_target_aliases(alias: str, kind: str) -> None:
    assert nir.parse_target(alias).kind == kind
