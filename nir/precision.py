"""How close a compiled program's result must be to the exact answer: a float64 run of the program is the
answer, and the program's own conditioning sets the tolerance.

A per-primitive test allows float32 results ``rtol = atol = 2e-5`` (`nir.testing.TOLERANCE`). A program
of many primitives amplifies rounding errors by its conditioning (cancellation in sums and differences,
layer norms over near-constant values, near-ties in max and argmax), so one fixed tolerance is either
too tight for some programs or too loose for the rest. Here the amplification is measured:

- ``want``: the program widened to float64 (`widen`), run by the reference interpreter;
- ``noise``: per element, the largest deviation from ``want`` of runs that round like the program's
  dtype: the reference interpreter at the program's own dtype, and float64 runs whose every equation's
  result is perturbed by a random relative error of ``PERTURBATION`` unit roundoffs;
- a result passes when ``|got - want| <= NOISE_FACTOR * noise + rtol * |want| + atol * max|want|``
  element-wise, with (rtol, atol) the dtype's per-primitive tolerance (atol relative to the output's
  largest value: per-primitive tests use inputs of about 1, generated programs reach other scales).

So a well-conditioned float32 program is held to about the per-primitive tolerance (a 0.1% error in one
primitive fails), and an ill-conditioned one gets the slack its own rounding shows. A program whose
slack hides a 0.1% error in most of every output has a `weakness`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .interpret import evaluate, interpret
from .ir import Eqn, Program, Value
from .testing import tolerance
from .types import TensorType, is_float, numpy_dtype

__all__ = ["widen", "Expected", "expected", "mismatch", "UNIT_ROUNDOFF", "NOISE_FACTOR", "PERTURBATION",
           "DETECT", "ILL_CONDITIONED", "ZERO_OUTPUT"]

UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
PERTURBATION = 4  # unit roundoffs of relative error put on every equation's result in the noise runs
NOISE_RUNS = 2  # perturbed float64 runs (besides the run at the program's own dtype)
NOISE_FACTOR = 30.0  # how many times the measured rounding noise a backend may be off
DETECT = 1e-3  # a program is ill-conditioned when a relative error this large hides in most of its output
ILL_CONDITIONED = "ill-conditioned (its own rounding noise hides a 0.1% error)"
ZERO_OUTPUT = "every output is zero (a 0.1% error cannot show)"


def _wide(dtype: str) -> str:
    return "float64" if is_float(dtype) else dtype


def _widen_value(v: Value) -> Value:
    return replace(v, type=v.type.with_dtype(_wide(v.type.dtype)))


def _widen_eqn(e: Eqn) -> Eqn:
    params = dict(e.params)
    for k, p in params.items():
        if isinstance(p, Program):  # sub-programs (scan bodies, cond branches) are widened the same way
            params[k] = widen(p)
    if isinstance(params.get("dtype"), str):
        params["dtype"] = _wide(params["dtype"])
    if e.prim == "constant" and is_float(e.outputs[0].type.dtype):
        data = np.frombuffer(params["data"], dtype=numpy_dtype(e.outputs[0].type.dtype))
        params["data"] = data.astype(np.float64).tobytes()
    return replace(e, inputs=tuple(map(_widen_value, e.inputs)), outputs=tuple(map(_widen_value, e.outputs)),
                   params=tuple(params.items()))


def widen(program: Program) -> Program:
    """``program`` computed in float64: every floating-point value, `dtype` parameter and constant widened
    (integer and bool values unchanged). Layouts are kept; they never change what a program computes."""
    return Program(tuple(map(_widen_value, program.inputs)), tuple(map(_widen_eqn, program.eqns)),
                   tuple(map(_widen_value, program.outputs)))


def _perturbed_run(program: Program, inputs: Sequence[np.ndarray], rng: np.random.Generator,
                   rel: float) -> list[np.ndarray]:
    """The interpreter, with every floating-point equation result multiplied by ``1 + rel * U(-1, 1)``."""
    env = {v.id: np.asarray(a, dtype=numpy_dtype(v.type.dtype)) for v, a in zip(program.inputs, inputs)}
    for e in program.eqns:  # (a scan's or cond's sub-programs run unperturbed: their results are perturbed)
        ys = evaluate(e.prim, [env[v.id] for v in e.inputs], [v.type for v in e.inputs],
                      [v.type for v in e.outputs], e.kwargs)
        for v, y in zip(e.outputs, ys):
            if is_float(v.type.dtype) and e.prim not in ("constant", "full", "iota"):
                y = y * (1 + rel * rng.uniform(-1, 1, y.shape))
            env[v.id] = y
    return [env[v.id] for v in program.outputs]


@dataclass(frozen=True)
class Expected:
    """The exact answer of each output (float64), its rounding noise, and the output's own type."""

    want: tuple[np.ndarray, ...]
    noise: tuple[np.ndarray, ...]
    types: tuple[TensorType, ...]

    def bounds(self) -> list[np.ndarray]:
        """Per output, the largest error allowed at each element."""
        out = []
        for w, n, t in zip(self.want, self.noise, self.types):
            rtol, atol = tolerance(t.dtype) if is_float(t.dtype) else tolerance("float32")
            scale = float(np.max(np.abs(w[np.isfinite(w)]), initial=0.0)) or 1.0
            out.append(NOISE_FACTOR * n + rtol * np.abs(w) + atol * scale)
        return out

    @property
    def weakness(self) -> str | None:
        """Why a 0.1% error in one primitive could go unseen in this program, or None when it would show:
        at least one output must have most of its non-negligible elements (>= 1e-3 of its largest) with
        bounds below 0.1% of their value."""
        if all(not np.any(w) for w in self.want):
            return ZERO_OUTPUT
        for w, b in zip(self.want, self.bounds()):
            mag = np.abs(np.where(np.isfinite(w), w, 0.0))
            counted = mag >= 1e-3 * mag.max(initial=0.0)
            if mag.max(initial=0.0) > 0 and np.sum(counted & (b <= DETECT * mag)) > np.sum(counted) / 2:
                return None
        return ILL_CONDITIONED


def expected(program: Program, inputs: Sequence[np.ndarray], seed: int = 0) -> Expected:
    """The float64 answer of ``program`` on ``inputs`` and its rounding noise (see the module docstring)."""
    wide = widen(program)
    wide_inputs = [np.asarray(a).astype(numpy_dtype(v.type.dtype)) for a, v in zip(inputs, wide.inputs)]
    want = [np.asarray(w, dtype=np.float64) for w in interpret(wide, *wide_inputs)]
    runs = [interpret(program, *inputs)]
    rng = np.random.default_rng(seed)
    dtypes = {v.type.dtype for v in program.values() if is_float(v.type.dtype)}
    u = max((UNIT_ROUNDOFF[d] for d in dtypes), default=UNIT_ROUNDOFF["float64"])
    runs += [_perturbed_run(wide, wide_inputs, rng, PERTURBATION * u) for _ in range(NOISE_RUNS)]
    with np.errstate(invalid="ignore"):
        noise = [np.max([_deviation(np.asarray(r[i], dtype=np.float64), w) for r in runs], axis=0)
                 for i, w in enumerate(want)]
    return Expected(tuple(want), tuple(noise), tuple(v.type for v in program.outputs))


def _deviation(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``|got - want|``, 0 where both are the same NaN or infinity, inf where only one is."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0.0, np.abs(got - want))


def mismatch(got: Sequence[Any], exp: Expected) -> str | None:
    """None when every output of ``got`` is within its bounds, else what differs (the worst element)."""
    if len(got) != len(exp.want):
        return f"{len(got)} outputs, expected {len(exp.want)}"
    for i, (g, w, b, t) in enumerate(zip(got, exp.want, exp.bounds(), exp.types)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, expected {w.shape}"
        if g.dtype != numpy_dtype(t.dtype):
            return f"output {i}: dtype {g.dtype}, expected {t.dtype}"
        with np.errstate(invalid="ignore"):
            err = _deviation(g.astype(np.float64), w)
            excess = np.where(err > b, err / b, 0.0)
        if excess.any():
            at = np.unravel_index(int(np.argmax(excess)), w.shape)
            return (f"output {i}: {int(np.count_nonzero(excess))} of {w.size} elements beyond tolerance; worst at "
                    f"{tuple(int(j) for j in at)}: got {g[at]!r}, exact {w[at]!r} (error {err[at]:.3g}, allowed "
                    f"{b[at]:.3g}: {NOISE_FACTOR:g} x rounding noise {exp.noise[i][at]:.3g} + the dtype's tolerance)")
    return None
