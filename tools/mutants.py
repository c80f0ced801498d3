"""The hand-picked mutants `tools/mutate.py` plants: each is one plausible bug in the named API
(nir/functions), a primitive's reference (nir/ops) or a lowering table (backends/*/lower.py), with the
tests that should catch it. A mutant whose ``old`` text is no longer in its file is reported as stale
(the code moved on: update or drop the mutant)."""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "tests/ops/test_op_table.py"
TVM_TESTS = "tests/backends/tvm/test_tvm_backend.py"
XLA_TESTS = "tests/backends/xla/test_xla_backend.py"
FUZZ = "tests/fuzz/test_fuzz.py"


@dataclass(frozen=True)
class Mutant:
    """Replace ``old`` by ``new`` (exactly once) in ``path``; ``tests`` are pytest arguments."""

    id: str
    path: str
    old: str
    new: str
    what: str
    tests: tuple[str, ...]


def table(k: str) -> tuple[str, ...]:
    """The op table's tests of the ops matching ``k`` (every mode and backend)."""
    return (TABLE, "-k", k)


MUTANTS = [
    # -- the named API (nir/functions): eager, traced and every backend share these ----------------
    Mutant("select-negative-index", "nir/functions/layout.py",
           'return bind("select", [x], dim=name, index=int(index) % n)',
           'return bind("select", [x], dim=name, index=int(index) if index >= 0 else 0)',
           "select with a negative index picks index 0", table("select")),
    Mutant("clamp-min-by-minimum", "nir/functions/elementwise.py",
           "        x = maximum(x, min)", "        x = minimum(x, min)",
           "clamp(min=) computed with minimum instead of maximum", table("clamp")),
    Mutant("narrow-negative-start", "nir/functions/layout.py",
           "    start = start + n if start < 0 else start", "    start = start + n - 1 if start < 0 else start",
           "narrow counts a negative start one too far", table("narrow")),
    Mutant("transpose-no-swap", "nir/functions/layout.py",
           "    order[i], order[j] = j, i", "    order[i], order[j] = i, j",
           "transpose leaves the dims in place", table("transpose")),
    Mutant("new-dim-negative", "nir/functions/layout.py",
           "    return int(dim) % (x.ndim + 1)", "    return int(dim) % max(x.ndim, 1)",
           "unsqueeze/stack count a negative index from the wrong end", table("unsqueeze or stack")),
    Mutant("var-ignores-correction", "nir/functions/reductions.py",
           "builtins.max(count - correction, 0))", "builtins.max(count - 1, 0))",
           "var/std always use Bessel's correction", table("var or std")),
    Mutant("keepdim-ignored", "nir/functions/reductions.py",
           "    return _keep(x, y, dims) if keepdim else y", "    return y",
           "sum/amax/... drop the reduced dims even with keepdim=True", table("sum or amax or prod")),
    Mutant("matmul-output-order", "nir/functions/contraction.py",
           "    want = batch + a_row + b_col", "    want = batch + b_col + a_row",
           "matmul returns (..., column, row)", table("matmul or mm")),
    Mutant("masked-fill-inverted", "nir/functions/elementwise.py",
           'return where(mask, as_tensor(value, x, "masked_fill"), x)',
           'return where(mask, x, as_tensor(value, x, "masked_fill"))',
           "masked_fill fills where the mask is False", table("masked_fill")),
    Mutant("weak-int-scalar", "nir/tensor.py",
           "            dtype = like.dtype if like.dtype != \"bool\"",
           "            dtype = \"float32\" if like.dtype.startswith(\"float\") else like.dtype "
           "if like.dtype != \"bool\"",
           "a Python number with a float16/float64 tensor is float32 (x + 1 promotes)", table("add or mul")),
    Mutant("promote-half-bfloat", "nir/types.py",
           '        return "float32"\n    if {"int8"', '        return "float16"\n    if {"int8"',
           "float16 with bfloat16 promotes to float16", table("add")),
    Mutant("flatten-range-short", "nir/functions/layout.py",
           "        idx = list(range(i, j + 1))", "        idx = list(range(i, max(j, i + 1)))",
           "positional flatten stops one dim early", table("flatten")),
    # -- primitives' reference implementations (nir/ops) -------------------------------------------
    Mutant("ref-exp-off", "nir/ops/elementwise.py",
           '"exp": (np.exp, True),', '"exp": (lambda x: np.exp(x) * 1.001, True),',
           "the reference exp is off by 0.1%", table("exp")),
    Mutant("ref-argmin-first", "nir/ops/reductions.py",
           '_arg_impl(np.argmin), "index of the first minimum"',
           '_arg_impl(lambda x, axis: x.shape[axis] - 1 - np.argmin(np.flip(x, axis), axis=axis)), "last"',
           "the reference argmin returns the last minimum", table("argmin or min")),
    Mutant("ref-rsqrt", "nir/ops/elementwise.py",
           '"rsqrt": (lambda x: 1 / np.sqrt(x), True),', '"rsqrt": (lambda x: np.sqrt(1 / x) * (1 + 1e-4), True),',
           "the reference rsqrt is off by 1e-4", table("rsqrt")),
    # -- TVM lowerings --------------------------------------------------------------------------------
    Mutant("tvm-no-downcast", "backends/tvm/lower.py",
           "    return x if x.dtype == dtype else bind(R.astype(x.expr, dtype), x.names)", "    return x",
           "TVM skips the cast back to float16/bfloat16 (returns float32)",
           (TVM_TESTS, "-k", "every_primitive_matches")),
    Mutant("tvm-exp-off", "backends/tvm/lower.py",
           '"exp": R.exp,', '"exp": lambda x: R.multiply(R.exp(x), relax.const(1.001, x.ty.dtype)),',
           "TVM exp off by 0.1%", (FUZZ, "-k", "agree and tvm")),
    Mutant("tvm-gelu-tanh", "backends/tvm/lower.py",
           "    e = R.erf(R.multiply(y.expr, root))",
           "    e = R.tanh(R.multiply(y.expr, relax.const(0.7978845608, y.dtype)) * (1 + relax.const(0.044715, "
           "y.dtype) * y.expr * y.expr))",
           "TVM gelu by its tanh approximation", (FUZZ, "-k", "agree and tvm")),
    Mutant("tvm-take-clip", "backends/tvm/lower.py",
           'mode="wrap"', 'mode="clip"', "TVM take clips negative indices to 0", table("take and tvm")),
    Mutant("tvm-maximum-nan", "backends/tvm/lower.py",
           "    return R.where(R.logical_or(R.greater(a, b), _isnan(a)), a, b)", "    return R.maximum(a, b)",
           "TVM maximum drops NaN", (TVM_TESTS, "-k", "every_primitive or nan")),
    Mutant("tvm-avg-pool-pad", "backends/tvm/lower.py",
           "count_include_pad=True", "count_include_pad=False",
           "TVM avg_pool2d averages over the window without padding", table("avg_pool2d and tvm")),
    Mutant("tvm-bool-arith", "backends/tvm/lower.py",
           '        if eqn.prim in BOOL_AS_INT8:', '        if False:',
           "TVM arithmetic on bool without the int8 detour", table("maximum and tvm")),
    # -- XLA lowerings --------------------------------------------------------------------------------
    Mutant("xla-iota-float32", "backends/xla/lower.py",
           "        return int(start) + int(step) * lax.iota(dt, size), (dim,)  # exact for any size",
           "        return (start + step * lax.iota(jnp.float32, size)).astype(dt), (dim,)",
           "XLA integer iota computed through float32 (2^40 + 3k rounds)", table("arange and xla")),
    Mutant("xla-iota-float32-wide", "backends/xla/lower.py",
           "    wide = jnp.float64 if dt.itemsize == 8 else jnp.float32",
           "    wide = jnp.float32",
           "XLA float64 iota computed in float32", table("arange and xla")),
    Mutant("xla-exp-off", "backends/xla/lower.py",
           '"exp": jnp.exp,', '"exp": lambda x: jnp.exp(x) * 1.001,',
           "XLA exp off by 0.1%", (FUZZ, "-k", "agree and xla")),
    Mutant("xla-select-index", "backends/xla/lower.py",
           "lax.index_in_dim(args[0], index, order.index(dim), keepdims=False)",
           "lax.index_in_dim(args[0], min(index, 1), order.index(dim), keepdims=False)",
           "XLA select never goes past index 1", table("select and xla")),
    Mutant("xla-bool-cast", "backends/xla/lower.py",
           "        x = lax.convert_element_type(x, jnp.int8)", "        pass",
           "XLA bool-to-float cast without the int8 detour (0/0 gives 0)", table("div and xla")),
]
