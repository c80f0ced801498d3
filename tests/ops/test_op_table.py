"""The named API against an independent oracle (PyTorch), driven by the op table (tests/ops/optable):
every sample eagerly, through the NamedTensor method, traced and compiled on every backend, and every
error sample eagerly and traced. Per op and backend all samples go into one program (one build); a
build or run that fails is retried sample by sample to say which one."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np
import pytest

pytest.importorskip("torch")

import nir  # noqa: E402
import nir.functions  # noqa: E402
from nir.functions import _methods  # noqa: E402
from nir.target import parse_target  # noqa: E402

from optable import BACKENDS, EXEMPT, TABLE, OpInfo, Sample  # noqa: E402
from optable.core import compare, expected, leaves, nir_outputs  # noqa: E402

IDS = [op.name for op in TABLE]
WITH_METHODS = [op for op in TABLE if op.method_name]
WITH_ERRORS = [op for op in TABLE if list(op.errors())]


class Report:
    """Problems per sample in one mode, with xfail markers honoured both ways."""

    def __init__(self, op: OpInfo, mode: str) -> None:
        self.op, self.mode, self.lines, self.checked = op, mode, [], 0

    def add(self, sample: Sample, problems: Sequence[str]) -> None:
        self.checked += 1
        known = sample.xfail.get(self.mode) or self.op.xfail.get(self.mode)
        if known and not problems:
            self.lines.append(f"[{sample.id}] passes although marked as failing ({known}): remove the marker")
        elif problems and not known:
            self.lines.append(f"[{sample.id}] " + "; ".join(problems))

    def check(self) -> None:
        assert self.checked, f"{self.op.name}: no sample ran in mode {self.mode}"
        assert not self.lines, f"{self.op.name} ({self.mode}), {len(self.lines)} of {self.checked} samples:\n" + \
            "\n".join(self.lines)


def _run_eager(op: OpInfo, fn: Callable[..., Any], mode: str) -> None:
    report = Report(op, mode)
    for s in op.all_samples():
        if mode in s.skip:
            continue
        inputs = s.inputs()
        want, names = expected(s, inputs)
        try:
            out = s.call(fn, [nir.tensor(a, names=t.names) for a, t in zip(inputs, s.tensors)])
            problems = compare(*nir_outputs(out), want, names, s.tol)
        except Exception as e:  # noqa: BLE001 - any exception is a finding about this sample
            problems = [f"raised {type(e).__name__}: {e}"]
        report.add(s, problems)
    report.check()


@pytest.mark.parametrize("op", TABLE, ids=IDS)
def test_eager_matches_the_oracle(op: OpInfo) -> None:
    _run_eager(op, op.function, "eager")


@pytest.mark.parametrize("op", WITH_METHODS, ids=[op.name for op in WITH_METHODS])
def test_method_matches_the_oracle(op: OpInfo) -> None:
    name = op.method_name
    _run_eager(op, lambda x, *rest, **kw: getattr(x, name)(*rest, **kw), "method")


# ------------------------------------------------------------------------------------------------
# traced, then built by each backend
# ------------------------------------------------------------------------------------------------

def _trace(op: OpInfo, samples: Sequence[Sample]) -> tuple[nir.Traced, dict[int, str]]:
    """One program computing every sample (its inputs in sample order); samples that fail to trace are
    left out and returned with their error."""
    errors: dict[int, str] = {}

    def fn(*ts: nir.NamedTensor) -> list[Any]:
        outs, k = [], 0
        for i, s in enumerate(samples):
            n = len(s.tensors)
            try:
                outs.append(s.call(op.function, ts[k:k + n]))
            except Exception as e:  # noqa: BLE001
                errors[i] = f"tracing raised {type(e).__name__}: {e}"
                outs.append([])
            k += n
        return outs
    return nir.trace(fn, *[t.spec for s in samples for t in s.tensors]), errors


def _compiled_outputs(backend: str, op: OpInfo, samples: Sequence[Sample], inputs: Sequence[list[np.ndarray]]
                      ) -> tuple[list[Any], dict[int, str]]:
    """Per sample: (arrays, names) from the backend, or an error message."""
    traced, errors = _trace(op, samples)
    program = traced.program
    nir.verify(program)
    exe = nir.backends.get(backend).build(program, parse_target("llvm"))
    arrays = exe(*[a for ins in inputs for a in ins])
    names = [v.type.user_names for v in program.outputs]
    results = []
    for part in traced.structure:
        idx = leaves(part)
        results.append(([np.asarray(arrays[i]) for i in idx], [names[i] for i in idx]))
    return results, errors


def _outputs_one_by_one(backend: str, op: OpInfo, samples: Sequence[Sample], inputs: Sequence[list[np.ndarray]]
                        ) -> tuple[list[Any], dict[int, str]]:
    results, errors = [], {}
    for i, (s, ins) in enumerate(zip(samples, inputs)):
        try:
            (res,), errs = _compiled_outputs(backend, op, [s], [ins])
            if errs:
                errors[i] = errs[0]
            results.append(res)
        except Exception as e:  # noqa: BLE001
            errors[i] = f"{backend} raised {type(e).__name__}: {str(e)[:400]}"
            results.append(None)
    return results, errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", TABLE, ids=IDS)
def test_compiled_matches_the_oracle(op: OpInfo, backend: str) -> None:
    if not nir.backends.installed(backend):
        pytest.skip(f"{backend} not installed")
    chosen = op.all_samples() if backend == "reference" else op.compiled_samples()
    samples = [s for s in chosen if backend not in s.skip]
    inputs = [s.inputs() for s in samples]
    try:
        results, errors = _compiled_outputs(backend, op, samples, inputs)
    except Exception:  # noqa: BLE001 - retried one by one to say which sample
        results, errors = _outputs_one_by_one(backend, op, samples, inputs)
    report = Report(op, backend)
    for i, (s, ins) in enumerate(zip(samples, inputs)):
        if i in errors:
            report.add(s, [errors[i]])
            continue
        want, names = expected(s, ins)
        got, got_names = results[i]
        report.add(s, compare(got, got_names, want, names, s.tol))
    report.check()


# ------------------------------------------------------------------------------------------------
# error samples
# ------------------------------------------------------------------------------------------------

def _raises(call: Callable[[], Any], exc: type[BaseException], match: str) -> str | None:
    """None when ``call`` raises ``exc`` with ``match`` in its message, else what happened instead."""
    try:
        call()
    except exc as e:
        return None if match in str(e) else f"{type(e).__name__} without {match!r}: {e}"
    except Exception as e:  # noqa: BLE001
        return f"raised {type(e).__name__} instead of {exc.__name__}: {e}"
    return f"did not raise (expected {exc.__name__}: {match})"


@pytest.mark.parametrize("op", WITH_ERRORS, ids=[op.name for op in WITH_ERRORS])
def test_error_samples_raise_eagerly_and_traced(op: OpInfo) -> None:
    lines = []
    for e in op.errors():
        rng = np.random.default_rng(0)
        tensors = [nir.tensor(t.array(rng), names=t.names) for t in e.tensors]
        got = {"eager": _raises(lambda: e.call(op.function, tensors), e.exc, e.match)}
        if e.tensors:
            got["traced"] = _raises(lambda: nir.trace(lambda *ts: e.call(op.function, ts),
                                                      *[t.spec for t in e.tensors]), e.exc, e.match)
        for mode, problem in got.items():
            if e.xfail and problem is None:
                lines.append(f"[{e.id}] {mode}: raises although marked as failing ({e.xfail}): remove the marker")
            elif problem and not e.xfail:
                lines.append(f"[{e.id}] {mode}: {problem}")
    assert not lines, f"{op.name}:\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the table covers the API
# ------------------------------------------------------------------------------------------------

def _public_functions() -> set[str]:
    return {n for n, v in vars(nir.functions).items()
            if not n.startswith("_") and callable(v) and not inspect.isclass(v) and not inspect.ismodule(v)
            and getattr(v, "__module__", "").startswith("nir.functions")}


def _bound_methods() -> set[str]:
    dunders = {n for n, v in vars(nir.NamedTensor).items() if n.startswith("__") and
               getattr(v, "__module__", "").startswith("nir.functions")}
    return set(_methods._METHODS) | {"to"} | dunders


def test_every_public_function_and_method_is_in_the_table() -> None:
    """A new function of the named API (or method, or operator) needs an OpInfo entry: docs/testing.md."""
    covered = {op.name for op in TABLE} | {op.method_name for op in TABLE if op.method_name}
    missing = sorted((_public_functions() | _bound_methods()) - covered - set(EXEMPT))
    assert not missing, (f"not in the op table (tests/ops/optable): {missing}; add an OpInfo with samples, "
                         "the torch oracle and error samples (docs/testing.md, 'Adding an op')")


def test_every_method_sample_runs_through_the_method() -> None:
    """The method of each bound function is that function (so the table's method runs test the binding)."""
    for op in WITH_METHODS:
        assert hasattr(nir.NamedTensor, op.method_name), op.name


# ------------------------------------------------------------------------------------------------
# random creation: no oracle gives the same numbers; check what can be checked
# ------------------------------------------------------------------------------------------------

def test_randn_and_rand_have_their_shape_names_dtype_and_range() -> None:
    x = nir.randn(400, 3, names=("N", None), dtype="float64")
    assert (x.names, x.shape, x.dtype) == (("N", None), (400, 3), "float64")
    assert abs(float(x.numpy().mean())) < 0.2 and 0.8 < float(x.numpy().std()) < 1.2
    u = nir.rand(500, names=("N",))
    assert u.dtype == "float32" and 0.0 <= float(u.numpy().min()) and float(u.numpy().max()) < 1.0
    assert 0.4 < float(u.numpy().mean()) < 0.6


def test_manual_seed_repeats_the_samples() -> None:
    nir.manual_seed(7)
    a, b = nir.randn(5, names=("N",)).numpy(), nir.rand(5).numpy()
    nir.manual_seed(7)
    assert np.array_equal(a, nir.randn(5, names=("N",)).numpy()) and np.array_equal(b, nir.rand(5).numpy())
    nir.manual_seed(8)
    assert not np.array_equal(a, nir.randn(5, names=("N",)).numpy())
