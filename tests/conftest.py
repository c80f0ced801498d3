"""Fixtures for the whole suite."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# `bench.variants.set_threads` (nir bench run in-process) pins the calling thread to fewer CPUs and sets
# these for the libraries it starts; a test must not hand that on to the tests after it
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS")


@pytest.fixture(autouse=True)
def _restore_cpu_affinity_and_thread_counts() -> Iterator[None]:
    cpus = os.sched_getaffinity(0)
    env = {k: os.environ.get(k) for k in _THREAD_VARS}
    yield
    if os.sched_getaffinity(0) != cpus:
        os.sched_setaffinity(0, cpus)
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
