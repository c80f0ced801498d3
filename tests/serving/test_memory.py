"""Bounded memory: a long stream of calls keeps resident memory flat, and a compiled function keeps at
most ``max_signatures`` signatures compiled (least recently used dropped first)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import nir

BACKENDS = nir.backends.available()


def rss_mib() -> float:
    """Resident memory of this process (Linux)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def batch(n: int) -> nir.NamedTensor:
    return nir.tensor(np.random.default_rng(n).standard_normal((n, 64)).astype(np.float32), names=("N", "C"))


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_stream_of_calls_keeps_resident_memory_flat(backend) -> None:
    """20,000 calls (fresh input tensors each time, three batch sizes) after a warm-up: growth stays
    under 25 MiB (a leak of one 8 KiB output per call would be 160 MiB)."""
    f = nir.compile(lambda x: (x * 2.0).relu().softmax("C"), backend=backend)
    data = {n: batch(n).numpy() for n in (4, 8, 32)}
    calls = 20_000 if backend != "reference" else 5_000

    def stream(count: int) -> None:
        for i in range(count):
            arr = data[(4, 8, 32)[i % 3]]
            f(nir.tensor(arr, names=("N", "C")))

    stream(2_000)
    before = rss_mib()
    stream(calls)
    assert rss_mib() - before < 25


def test_max_signatures_bounds_the_compiled_signatures() -> None:
    f = nir.compile(lambda x: x * 2.0, backend="reference", max_signatures=3)
    for n in range(1, 8):
        f(batch(n))
    assert [s[0].shape[0] for s in f.signatures] == [5, 6, 7]


def test_the_least_recently_used_signature_is_dropped_first() -> None:
    f = nir.compile(lambda x: x * 2.0, backend="reference", max_signatures=2)
    f(batch(1)), f(batch(2)), f(batch(1)), f(batch(3))  # 2 is the least recently used when 3 arrives
    assert sorted(s[0].shape[0] for s in f.signatures) == [1, 3]


def test_a_dropped_signature_compiles_again_when_called(monkeypatch) -> None:
    builds = []
    mod = nir.backends.get("reference")
    real = mod.build
    monkeypatch.setattr(mod, "build", lambda p, t, **o: builds.append(p.inputs[0].type.shape) or real(p, t, **o))
    f = nir.compile(lambda x: x * 2.0, backend="reference", max_signatures=1)
    for n in (1, 2, 1):
        np.testing.assert_array_equal(f(batch(n)).numpy(), batch(n).numpy() * 2)
    assert builds == [(1, 64), (2, 64), (1, 64)]


def test_max_signatures_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_signatures=0; give a positive number"):
        nir.compile(lambda x: x, backend="reference", max_signatures=0)


def test_the_default_bound_is_sensible() -> None:
    from nir.compile import MAX_SIGNATURES
    assert nir.compile(lambda x: x, backend="reference").max_signatures == MAX_SIGNATURES == 64
