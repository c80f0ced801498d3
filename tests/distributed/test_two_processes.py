"""Named sharding across two processes on 127.0.0.1 (2 host devices each, 4 in all): two_process_cases.py runs
in both, under `nir launch` and with a plain `nir.distributed.initialize(...)` call, and the results are compared
here with the reference interpreter. Each run is bounded in time and its processes are stopped when it ends."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

import nir  # noqa: E402
from nir.launch import free_port, launch  # noqa: E402

CASES = pathlib.Path(__file__).with_name("two_process_cases.py")
sys.path.insert(0, str(CASES.parent))
import two_process_cases as cases  # noqa: E402

TIMEOUT_S = 240  # both processes start jax and compile a few small programs; a loaded 2-core machine is slow
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _read(out: pathlib.Path, rank: int) -> tuple[dict, dict]:
    return dict(np.load(out / f"rank{rank}.npz")), json.loads((out / f"rank{rank}.json").read_text())


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict, dict]]:
    out = tmp_path_factory.mktemp("launched")
    log = out / "log.txt"
    with open(log, "w") as f:
        status = launch([str(CASES), str(out)], 2, devices=2, timeout_s=TIMEOUT_S, out=f)
    assert status == 0, log.read_text()[-4000:]
    return [_read(out, r) for r in range(2)]


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    x, w = cases.inputs()
    h, s = nir.compile(cases.mlp, backend="reference")(nir.tensor(x, names=("N", "D")), nir.tensor(w, names=("D", "H")))
    return h.numpy(), s.numpy()


def test_every_process_sees_the_four_devices_of_the_run(launched):
    for rank, (_, facts) in enumerate(launched):
        assert facts["info"] == {"process_id": rank, "num_processes": 2, "local_devices": 2, "global_devices": 4,
                                 "platform": "cpu"}


def test_each_process_gets_its_rows_of_a_sharded_output(launched, reference):
    h, _ = reference
    for rank, (arrays, facts) in enumerate(launched):
        assert facts["global_h_names"] == ["N", "H"]
        np.testing.assert_allclose(arrays["global_h"], h[4 * rank:4 * rank + 4], **TOL)


def test_a_reduction_over_the_sharded_dim_is_whole_in_every_process(launched, reference):
    _, s = reference
    for arrays, _ in launched:
        np.testing.assert_allclose(arrays["global_s"], s, **TOL)


def test_gather_gives_every_process_the_whole_output(launched, reference):
    h, s = reference
    for arrays, _ in launched:
        np.testing.assert_allclose(arrays["gathered_h"], h, **TOL)
        np.testing.assert_allclose(arrays["gathered_s"], s, **TOL)


def test_local_inputs_make_up_the_whole_batch(launched, reference):
    h, s = reference
    for rank, (arrays, _) in enumerate(launched):
        np.testing.assert_allclose(arrays["local_h"], h[4 * rank:4 * rank + 4], **TOL)
        np.testing.assert_allclose(arrays["local_s"], s, **TOL)


def test_a_model_axis_inside_each_process_splits_the_hidden_dim(launched, reference):
    h, s = reference  # mesh {data: 2, model: 2}: data across the processes, model across each one's devices
    for rank, (arrays, _) in enumerate(launched):
        np.testing.assert_allclose(arrays["two_axes_h"], h[4 * rank:4 * rank + 4], **TOL)
        np.testing.assert_allclose(arrays["two_axes_s"], s, **TOL)


def test_a_mesh_smaller_than_the_run_is_refused(launched):
    for _, facts in launched:
        assert facts["small_mesh"].startswith("ShardingError: mesh {'data': 2} has 2 devices, but this run has 4 cpu "
                                              "devices in 2 processes")
        assert "e.g. mesh={'data': 4}" in facts["small_mesh"]


def test_a_local_part_its_devices_cannot_split_is_refused_with_its_named_shape(launched):
    for _, facts in launched:
        assert facts["local_not_divisible"] == (
            "ShardingError: with local_inputs=True, input 0's part in this process, {N: 3, D: 6}, has 3 along 'N', "
            "which its 2 devices along mesh axes ['data'] cannot split evenly; give each process a multiple of 2")


def test_a_plain_initialize_call_joins_the_processes(tmp_path, reference):
    """No launcher: each process calls nir.distributed.initialize("127.0.0.1:PORT", 2, rank, local_devices=2)."""
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIR_")}
    procs = [subprocess.Popen([sys.executable, str(CASES), str(tmp_path), "--quick", "--plain", address, str(r)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
             for r in range(2)]
    try:
        logs = [p.communicate(timeout=TIMEOUT_S)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-4000:]
    _, s = reference
    for r in range(2):
        arrays, facts = _read(tmp_path, r)
        assert facts["info"]["process_id"] == r and facts["info"]["global_devices"] == 4
        np.testing.assert_allclose(arrays["global_s"], s, **TOL)
