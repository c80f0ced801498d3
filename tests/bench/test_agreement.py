"""Every peer and every nir backend computes what nir's reference backend computes, for every workload
at the small size, within the workload's tolerances (rtol/atol on float32 outputs).

torch.compile is checked only with NIR_BENCH_TORCH_COMPILE=1: its cold compile takes seconds per workload.
Slow workloads (minutes to compile, such as the 512-step unrolled RNN) are checked with numpy only.
"""

import functools
import os

import numpy as np
import pytest

import nir
from nir.bench.variants import Variant, build, to_numpy
from nir.bench.workloads import WORKLOADS

NIR_BACKENDS = [b for b in nir.backends.available() if b != "reference"]
DEFAULT = [name for name, w in WORKLOADS.items() if w.default]  # the zoo has tests of its own (tests/zoo)


@functools.lru_cache(maxsize=None)
def reference(name):
    w = WORKLOADS[name]
    inputs = w.make_inputs("small", 0)
    return inputs, to_numpy(nir.compile(w.fn, backend="reference")(*inputs))


def run_variant(variant, name):
    inputs, want = reference(name)
    got = to_numpy(build(variant, WORKLOADS[name], inputs, threads=2).call())
    return got, want


def assert_agrees(name, got, want):
    """Every output (a training step's loss and updated parameters; other workloads have one)."""
    w = WORKLOADS[name]
    assert len(got) == len(want)
    for g, r in zip(got, want):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=w.rtol, atol=w.atol)


@pytest.mark.parametrize("name", [n for n in DEFAULT if "numpy" in WORKLOADS[n].peers])
def test_numpy_peer_agrees_with_reference(name):
    assert_agrees(name, *run_variant(Variant("numpy", "peer"), name))


@pytest.mark.parametrize("name", DEFAULT)
def test_torch_peer_agrees_with_reference(name):
    pytest.importorskip("torch")
    assert_agrees(name, *run_variant(Variant("torch", "peer"), name))


@pytest.mark.parametrize("name", DEFAULT)
def test_jax_peer_agrees_with_reference(name):
    pytest.importorskip("jax")
    assert_agrees(name, *run_variant(Variant("jax", "peer"), name))


@pytest.mark.skipif(os.environ.get("NIR_BENCH_TORCH_COMPILE") != "1",
                    reason="torch.compile's cold compile is slow; set NIR_BENCH_TORCH_COMPILE=1 to check it")
@pytest.mark.parametrize("name", DEFAULT)
def test_torch_compile_peer_agrees_with_reference(name):
    pytest.importorskip("torch")
    assert_agrees(name, *run_variant(Variant("torch.compile", "peer"), name))


@pytest.mark.parametrize("backend", NIR_BACKENDS)
@pytest.mark.parametrize("name", DEFAULT)
def test_nir_backend_agrees_with_reference(name, backend):
    assert_agrees(name, *run_variant(Variant(f"nir-{backend}", "nir", backend), name))
