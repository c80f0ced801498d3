"""The name rules of every op, as one table of cases: what names and shape come out, or which error
(type and message) a mistake gets. Each case runs eagerly and while tracing; both must agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import nir

NCHW = ("N", "C", "H", "W")


def T(*shape: int, names: Any = None, dtype: str = "float32") -> nir.NamedTensor:
    rng = np.random.default_rng(sum(shape) + len(shape))
    return nir.tensor(rng.standard_normal(shape).astype(dtype), names=names)


@dataclass
class Case:
    id: str
    build: Callable[[], Any]
    names: tuple | None = None
    shape: tuple | None = None
    error: type[Exception] | None = None
    match: str = ""
    dtype: str | None = None


def x4() -> nir.NamedTensor:
    return T(2, 3, 4, 5, names=NCHW)


CASES = [
    # ---- elementwise broadcasting by position, checked by name
    Case("add-same", lambda: x4() + x4(), NCHW, (2, 3, 4, 5)),
    Case("add-right-aligned", lambda: x4() + T(4, 5, names=("H", "W")), NCHW, (2, 3, 4, 5)),
    Case("add-unnamed-matches-name", lambda: T(3, 4, names=("N", None)) + T(4, names=("C",)), ("N", "C"), (3, 4)),
    Case("add-unnamed-both", lambda: T(3, 4) + T(4), (None, None), (3, 4)),
    Case("add-size1-broadcast", lambda: T(3, 1, names=("N", "C")) + T(1, 4, names=("N", "C")), ("N", "C"), (3, 4)),
    Case("add-scalar", lambda: x4() + 1.5, NCHW, (2, 3, 4, 5)),
    Case("radd-scalar", lambda: 2 * x4(), NCHW, (2, 3, 4, 5)),
    Case("add-accidental-broadcast", lambda: x4() + T(3, names=("C",)), error=nir.NamedShapeError,
         match=r"add: dim 'W' and dim 'C' are at the same position from the right but do not match "
               r"\(named shapes \{N: 2, C: 3, H: 4, W: 5\} and \{C: 3\}\).*align_as"),
    Case("add-accidental-alignment", lambda: T(3, 3, names=("N", "C")) + T(3, 3, names=("C", "N")),
         error=nir.NamedShapeError, match=r"dim 'N' and dim 'C' are at the same position"),
    Case("add-misaligned", lambda: T(3, 4, names=("N", None)) + T(3, names=("N",)), error=nir.NamedShapeError,
         match=r"misaligned dims: dim 'N' appears in a different position from the right"),
    Case("add-size-mismatch", lambda: T(3, 4, names=("N", "C")) + T(5, names=("C",)), error=nir.NamedShapeError,
         match=r"sizes do not broadcast: dim 'C' has size 4 .* and 5"),
    Case("add-promotes-dtype", lambda: T(2, names=("N",), dtype="float16") + T(2, names=("N",)), ("N",), (2,),
         dtype="float32"),
    Case("int-plus-float-scalar", lambda: nir.arange(3, name="N") + 0.5, ("N",), (3,), dtype="float32"),
    Case("int-true-div", lambda: nir.arange(3, name="N") / 2, ("N",), (3,), dtype="float32"),
    Case("compare-gives-bool", lambda: x4() > 0, NCHW, (2, 3, 4, 5), dtype="bool"),
    Case("where", lambda: nir.where(x4() > 0, x4(), 0.0), NCHW, (2, 3, 4, 5)),
    Case("where-not-bool", lambda: nir.where(x4(), x4(), 0.0), error=TypeError, match="condition must be a bool"),
    Case("masked-fill", lambda: x4().masked_fill(T(4, 5, names=("H", "W")) > 0, -1.0), NCHW, (2, 3, 4, 5)),
    Case("clamp", lambda: x4().clamp(min=-0.5, max=0.5), NCHW, (2, 3, 4, 5)),
    Case("unary-keeps-names", lambda: x4().exp().tanh().relu().gelu().sigmoid(), NCHW, (2, 3, 4, 5)),
    Case("unary-int-to-float", lambda: nir.arange(4, name="N").exp(), ("N",), (4,), dtype="float32"),
    # ---- reductions
    Case("sum-by-name", lambda: x4().sum("C"), ("N", "H", "W"), (2, 4, 5)),
    Case("sum-by-index", lambda: x4().sum(1), ("N", "H", "W"), (2, 4, 5)),
    Case("sum-several", lambda: x4().sum(("H", "W")), ("N", "C"), (2, 3)),
    Case("sum-keepdim", lambda: x4().sum("C", keepdim=True), NCHW, (2, 1, 4, 5)),
    Case("sum-all", lambda: x4().sum(), (), ()),
    Case("sum-unknown-name", lambda: x4().sum("X"), error=nir.NamedShapeError,
         match=r"sum: name 'X' not found in \{N: 2, C: 3, H: 4, W: 5\}"),
    Case("sum-int-gives-int64", lambda: nir.arange(4, name="N", dtype="int32").sum(), (), (), dtype="int64"),
    Case("mean", lambda: x4().mean(("H", "W"), keepdim=True), NCHW, (2, 3, 1, 1)),
    Case("mean-int-refused", lambda: nir.arange(4, name="N").mean(), error=TypeError, match="floating-point"),
    Case("std", lambda: x4().std("W"), ("N", "C", "H"), (2, 3, 4)),
    Case("var", lambda: x4().var(("H", "W"), correction=0), ("N", "C"), (2, 3)),
    Case("prod", lambda: x4().prod("N"), ("C", "H", "W"), (3, 4, 5)),
    Case("max-all", lambda: x4().max(), (), ()),
    Case("max-dim-values", lambda: x4().max("H").values, ("N", "C", "W"), (2, 3, 5)),
    Case("max-dim-indices", lambda: x4().max("H").indices, ("N", "C", "W"), (2, 3, 5), dtype="int64"),
    Case("min-dim", lambda: x4().min("W", keepdim=True).values, NCHW, (2, 3, 4, 1)),
    Case("max-other", lambda: x4().max(x4()), NCHW, (2, 3, 4, 5)),
    Case("amax", lambda: x4().amax(("H", "W")), ("N", "C"), (2, 3)),
    Case("argmax", lambda: x4().argmax("C"), ("N", "H", "W"), (2, 4, 5), dtype="int64"),
    Case("argmax-all", lambda: x4().argmax(), (), (), dtype="int64"),
    Case("logsumexp", lambda: x4().logsumexp("W"), ("N", "C", "H"), (2, 3, 4)),
    Case("softmax", lambda: x4().softmax("C"), NCHW, (2, 3, 4, 5)),
    Case("log-softmax", lambda: x4().log_softmax(-1), NCHW, (2, 3, 4, 5)),
    # ---- matmul family: PyTorch's rules (contracted names dropped, others kept)
    Case("matmul-2d", lambda: T(3, 4, names=("N", "K")) @ T(4, 5, names=("J", "M")), ("N", "M"), (3, 5)),
    Case("matmul-batched", lambda: T(2, 3, 4, names=("B", "N", "K")) @ T(2, 4, 5, names=("B", "K", "M")),
         ("B", "N", "M"), (2, 3, 5)),
    Case("matmul-broadcast-batch", lambda: T(2, 3, 4, names=("B", "N", None)) @ T(4, 5, names=(None, "M")),
         ("B", "N", "M"), (2, 3, 5)),
    Case("matmul-size1-batch", lambda: T(1, 3, 4, names=("B", "N", None)) @ T(2, 4, 5, names=("B", None, "M")),
         ("B", "N", "M"), (2, 3, 5)),
    Case("matmul-batch-names-differ", lambda: T(2, 3, 4, names=("B", None, None)) @ T(2, 4, 5, names=("X", None, None)),
         error=nir.NamedShapeError, match=r"matmul: dim 'B' and dim 'X'"),
    Case("matmul-size-mismatch", lambda: T(3, 4) @ T(5, 6), error=nir.NamedShapeError,
         match=r"matmul: contracted dims differ in size"),
    Case("matmul-repeated-name", lambda: T(3, 4, names=("N", "K")) @ T(4, 3, names=("K", "N")),
         error=nir.NamedShapeError, match=r"would repeat a dim name"),
    Case("matmul-vector", lambda: T(3, 4, names=("N", "K")) @ T(4, names=("K",)), ("N",), (3,)),
    Case("matmul-self-transpose", lambda: (lambda a: a @ a.t())(T(3, 4)), (None, None), (3, 3)),
    Case("mm-rank", lambda: nir.mm(T(2, 3, 4), T(4, 5)), error=nir.NamedShapeError, match="mm: expects two 2-dim"),
    Case("mv", lambda: nir.mv(T(3, 4, names=("N", "K")), T(4)), ("N",), (3,)),
    Case("dot", lambda: nir.dot(T(4), T(4)), (), ()),
    Case("bmm", lambda: nir.bmm(T(2, 3, 4, names=("B", None, None)), T(2, 4, 5)), ("B", None, None), (2, 3, 5)),
    Case("addmm", lambda: nir.addmm(T(5, names=("M",)), T(3, 4, names=("N", "K")), T(4, 5, names=("K", "M"))),
         ("N", "M"), (3, 5)),
    Case("contract-by-name", lambda: nir.contract(T(2, 3, 4, names=("B", "Q", "D")), T(2, 5, 4, names=("B", "K", "D")),
                                                  over="D"), ("B", "Q", "K"), (2, 3, 5)),
    Case("contract-missing-dim", lambda: nir.contract(T(3, 4, names=("M", "K")), T(4, 5, names=("J", "N")), over="K"),
         error=nir.NamedShapeError, match=r"contract: dim 'K' is not in the second operand"),
    Case("contract-batch-size-mismatch", lambda: nir.contract(T(2, 4, names=("B", "K")), T(3, 4, names=("B", "K")),
                                                              over="K"),
         error=nir.NamedShapeError, match=r"dim 'B' has size 2 and 3"),
    # ---- normalization, convolution, pooling
    Case("layer-norm", lambda: nir.layer_norm(x4(), over=("H", "W"), weight=T(5, 4, names=("W", "H")),
                                              bias=T(4, names=("H",))), NCHW, (2, 3, 4, 5)),
    Case("layer-norm-weight-extra-dim", lambda: nir.layer_norm(x4(), over="W", weight=T(3, 5, names=("C", "W"))),
         error=nir.NamedShapeError, match=r"layer_norm: weight \{C: 3, W: 5\} has dims \['C'\]"),
    Case("conv2d-nchw", lambda: nir.conv2d(x4(), T(6, 3, 3, 3, names=("O", "C", "H", "W")), padding=1),
         ("N", "O", "H", "W"), (2, 6, 4, 5)),
    Case("conv2d-nhwc", lambda: nir.conv2d(x4().align_to("N", "H", "W", "C"), T(3, 3, 3, 6, names=("H", "W", "C", "O")),
                                           T(6, names=("O",)), stride=2, padding="valid"), ("N", "H", "W", "O"), (2, 1, 2, 6)),
    Case("conv2d-same", lambda: nir.conv2d(x4(), T(6, 3, 3, 3, names=("O", "C", "H", "W")), padding="same"),
         ("N", "O", "H", "W"), (2, 6, 4, 5)),
    Case("conv2d-bad-weight-names", lambda: nir.conv2d(x4(), T(6, 3, 3, 3, names=("O", "I", "H", "W"))),
         error=nir.NamedShapeError, match=r"weight \{O: 6, I: 3, H: 3, W: 3\} must have dims named \['C', 'H', 'O', 'W'\]"),
    Case("conv2d-channel-mismatch", lambda: nir.conv2d(x4(), T(6, 2, 3, 3, names=("O", "C", "H", "W"))),
         error=nir.NamedShapeError, match=r"weight has C=2 but the input has C=3"),
    Case("conv2d-no-channels", lambda: nir.conv2d(T(2, 3, 4, 5), T(6, 3, 3, 3, names=("O", "C", "H", "W"))),
         error=nir.NamedShapeError, match=r"has no dim 'C'"),
    Case("max-pool", lambda: nir.max_pool2d(x4(), 2), NCHW, (2, 3, 2, 2)),
    Case("avg-pool-nhwc", lambda: nir.avg_pool2d(x4().align_to("N", "H", "W", "C"), 3, 1, 1), ("N", "H", "W", "C"),
         (2, 4, 5, 3)),
    # ---- names and layout
    Case("rename-positional", lambda: x4().rename("a", "b", "c", "d"), ("a", "b", "c", "d"), (2, 3, 4, 5)),
    Case("rename-ellipsis", lambda: x4().rename("batch", "..."), ("batch", "C", "H", "W"), (2, 3, 4, 5)),
    Case("rename-none", lambda: x4().rename(None), (None,) * 4, (2, 3, 4, 5)),
    Case("rename-mapping", lambda: x4().rename(N="batch"), ("batch", "C", "H", "W"), (2, 3, 4, 5)),
    Case("rename-missing", lambda: x4().rename(X="Y"), error=nir.NamedShapeError, match="no such dim"),
    Case("rename-duplicate", lambda: x4().rename(N="C"), error=nir.NamedShapeError, match="repeat"),
    Case("rename-invalid-name", lambda: x4().rename(N="_x"), error=nir.NamedShapeError, match="invalid dimension name"),
    Case("refine-names", lambda: T(2, 3, 4).refine_names("N", ..., "W"), ("N", None, "W"), (2, 3, 4)),
    Case("refine-names-conflict", lambda: x4().refine_names("N", "X", "H", "W"), error=nir.NamedShapeError,
         match=r"cannot coerce names \['N', 'C', 'H', 'W'\] to \['N', 'X', 'H', 'W'\]"),
    Case("align-to", lambda: x4().align_to("W", "H", "C", "N"), ("W", "H", "C", "N"), (5, 4, 3, 2)),
    Case("align-to-insert", lambda: T(3, names=("C",)).align_to("N", "C", "H"), ("N", "C", "H"), (1, 3, 1)),
    Case("align-to-ellipsis", lambda: x4().align_to("W", ...), ("W", "N", "C", "H"), (5, 2, 3, 4)),
    Case("align-to-unnamed", lambda: T(3, 4, names=("N", None)).align_to("N", "C"), error=nir.NamedShapeError,
         match="all input dims must be named"),
    Case("align-to-missing", lambda: x4().align_to("N", "C"), error=nir.NamedShapeError,
         match=r"dims \['H', 'W'\] .* are not in the target"),
    Case("align-as", lambda: T(3, names=("C",)).align_as(x4()), NCHW, (1, 3, 1, 1)),
    Case("align-as-then-add", lambda: x4() + T(3, names=("C",)).align_as(x4()), NCHW, (2, 3, 4, 5)),
    Case("permute", lambda: x4().permute(3, 0, 1, 2), ("W", "N", "C", "H"), (5, 2, 3, 4)),
    Case("transpose", lambda: x4().transpose("N", "W"), ("W", "C", "H", "N"), (5, 3, 4, 2)),
    Case("t", lambda: T(2, 3, names=("N", "C")).t(), ("C", "N"), (3, 2)),
    Case("t-3d", lambda: x4().select("N", 0).t(), error=nir.NamedShapeError, match="at most 2 dims"),
    Case("flatten-named", lambda: x4().flatten(["H", "W"], "HW"), ("N", "C", "HW"), (2, 3, 20)),
    Case("flatten-range", lambda: x4().flatten(1, -1, "F"), ("N", "F"), (2, 60)),
    Case("flatten-not-consecutive", lambda: x4().flatten(["C", "W"], "CW"), error=nir.NamedShapeError,
         match="must be consecutive"),
    Case("unflatten-named", lambda: x4().flatten(["H", "W"], "HW").unflatten("HW", (("H", 4), ("W", 5))), NCHW,
         (2, 3, 4, 5)),
    Case("unflatten-unnamed", lambda: T(2, 12, names=("N", None)).unflatten(1, ((None, 3), (None, -1))),
         ("N", None, None), (2, 3, 4)),
    Case("unflatten-bad-size", lambda: T(2, 12, names=("N", "D")).unflatten("D", (("a", 5), ("b", 3))),
         error=nir.NamedShapeError, match="multiply to 15, not D=12"),
    Case("select", lambda: x4().select("C", -1), ("N", "H", "W"), (2, 4, 5)),
    Case("select-out-of-range", lambda: x4().select("C", 3), error=IndexError, match="out of range"),
    Case("narrow", lambda: x4().narrow("W", 1, 3), NCHW, (2, 3, 4, 3)),
    Case("squeeze", lambda: T(2, 1, 3, names=("N", "O", "C")).squeeze("O"), ("N", "C"), (2, 3)),
    Case("squeeze-all", lambda: T(1, 2, 1).squeeze(), (None,), (2,)),
    Case("unsqueeze", lambda: x4().unsqueeze(1), ("N", None, "C", "H", "W"), (2, 1, 3, 4, 5)),
    Case("reshape-unnamed", lambda: T(2, 6).reshape(3, 4), (None, None), (3, 4)),
    Case("view-unnamed", lambda: T(2, 6).view(-1), (None,), (12,)),
    Case("reshape-named-refused", lambda: x4().reshape(6, 20), error=nir.NamedShapeError,
         match="not supported on named tensors"),
    Case("expand", lambda: T(3, 1, names=("N", "C")).expand(2, 3, 4), (None, "N", "C"), (2, 3, 4)),
    Case("expand-bad", lambda: T(3, 2, names=("N", "C")).expand(3, 4), error=nir.NamedShapeError, match="cannot expand"),
    Case("unbind", lambda: x4().unbind("C")[2], ("N", "H", "W"), (2, 4, 5)),
    Case("cat", lambda: nir.cat([x4(), x4()], "C"), NCHW, (2, 6, 4, 5)),
    Case("cat-unifies", lambda: nir.cat([T(2, 3, names=("N", None)), T(2, 3, names=(None, "C"))], 0), ("N", "C"), (4, 3)),
    Case("cat-name-mismatch", lambda: nir.cat([T(2, 3, names=("N", "C")), T(2, 3, names=("N", "D"))], 0),
         error=nir.NamedShapeError, match=r"cat: dim 'C' and dim 'D'"),
    Case("stack", lambda: nir.stack([x4(), x4()], 0), (None,) + NCHW, (2, 2, 3, 4, 5)),
    Case("take", lambda: nir.take(T(10, 4, names=("V", "D")), nir.tensor(np.array([[1, 2, 3]]), names=("B", "S")), "V"),
         ("B", "S", "D"), (1, 3, 4)),
    Case("cast", lambda: x4().to("float16"), NCHW, (2, 3, 4, 5), dtype="float16"),
    Case("cast-unknown", lambda: x4().to("float8"), error=TypeError, match="unsupported dtype"),
    # ---- factories
    Case("zeros", lambda: nir.zeros(2, 3, names=("N", "C")), ("N", "C"), (2, 3)),
    Case("ones-partial-names", lambda: nir.ones(2, 3, names=(None, "C")), (None, "C"), (2, 3)),
    Case("full-int", lambda: nir.full(2, fill_value=3, names=("N",)), ("N",), (2,), dtype="int64"),
    Case("names-count", lambda: nir.zeros(2, 3, names=("N",)), error=nir.NamedShapeError, match="1 names"),
    Case("names-duplicate", lambda: nir.zeros(2, 3, names=("N", "N")), error=nir.NamedShapeError, match="repeat"),
    Case("arange", lambda: nir.arange(0, 1, 0.25, name="T"), ("T",), (4,), dtype="float32"),
]


def _check(case: Case, run: Callable[[], Any]) -> None:
    if case.error is not None:
        with pytest.raises(case.error, match=case.match):
            run()
        return
    out = run()
    assert out.names == case.names
    assert out.shape == case.shape
    if case.dtype is not None:
        assert out.dtype == case.dtype


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_eager(case: Case) -> None:
    _check(case, case.build)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_traced_matches_eager(case: Case) -> None:
    """The same case inside a trace: same names, shape and errors; and the recorded program, run by the
    reference interpreter, computes what eager computed."""
    def run() -> Any:
        traced = nir.trace(lambda: case.build())
        nir.verify(traced.program)
        return traced
    if case.error is not None:
        _check(case, run)
        return
    traced = run()
    (out_v,) = traced.program.outputs
    want = case.build()
    names = tuple(None if n.startswith("_") else n for n in out_v.type.names)
    assert names == case.names and out_v.type.shape == case.shape
    got = nir.interpret(traced.program)[0]
    np.testing.assert_allclose(got.astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6, atol=1e-6)
