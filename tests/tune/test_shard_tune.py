"""Shard maps by measurement (`nir tune --mesh`): candidates, the record, nir.compile applying it, and tuning
across two processes. Measuring needs host devices, which JAX fixes when it starts: those runs are fresh
processes (bounded in time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import nir
from nir.bench.workloads import WORKLOADS
from nir.tune.shard import parse_mesh, shard_candidates, shard_dims

MLP = nir.trace(WORKLOADS["mlp"].fn, *WORKLOADS["mlp"].make_inputs("small", 0)).program
TIMEOUT_S = 300


def test_the_batch_dim_is_N_and_the_model_dim_the_largest_contracted_user_dim():
    assert shard_dims(MLP) == ("N", "F1")  # x @ w contracts a generated alias of F1; the user's name is kept


def test_an_explicit_batch_dim_must_exist():
    with pytest.raises(ValueError, match=r"--batch 'B': the program has no dim 'B'; its dims are \['F0', "):
        shard_dims(MLP, "B")


def test_each_mesh_axis_goes_to_the_batch_dim_the_model_dim_or_neither():
    labels = [c.label for c in shard_candidates(MLP, {"data": 2, "model": 2})]
    assert len(labels) == 9 and len(set(labels)) == 9
    assert {"unsharded", "N:data+model", "F1:data+model", "N:data F1:model", "N:model F1:data"} <= set(labels)


def test_a_malformed_mesh_is_refused_with_the_form_to_use():
    assert parse_mesh("data:2,model:2") == {"data": 2, "model": 2}
    with pytest.raises(ValueError, match=r"--mesh 'data=2': 'data=2' should be AXIS:SIZE .* --mesh data:2,model:2"):
        parse_mesh("data=2")


def _nir(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nir.cli", *argv], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    pytest.importorskip("jax")
    db = str(tmp_path_factory.mktemp("db"))
    r = _nir("tune", "mlp", "--size", "small", "--mesh", "data:2", "--db", db, "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return db, json.loads(r.stdout)


def test_every_fitting_candidate_is_measured_with_its_collectives(tuned):
    _, report = tuned
    rows = {r["label"]: r for r in report["candidates"]}
    assert set(rows) == {"unsharded", "N:data", "F1:data"}
    assert all(r["ms"] > 0 for r in rows.values())
    assert rows["F1:data"]["collectives"] == {"all-reduce": 1}  # the Megatron split sums partial products once
    assert rows["N:data"]["collectives"] == {}                  # data parallel forward: nothing crosses devices
    assert report["winner"]["ms"] == min(r["ms"] for r in rows.values())


def test_the_winner_is_stored_in_the_database(tuned):
    db, report = tuned
    (path,) = (p for p in os.listdir(os.path.join(db, "shard")) if p.endswith(".json"))
    record = json.loads(open(os.path.join(db, "shard", path)).read())
    assert record["mesh"] == {"data": 2} and record["processes"] == 1
    assert record["shard"] == report["winner"]["shard"]


APPLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import nir
    from nir.bench.workloads import WORKLOADS
    from nir.backends.xla.shard import ShardingError
    w = WORKLOADS["mlp"]
    inputs = w.make_inputs("small", 0)
    f = nir.compile(w.fn, backend="xla", mesh={"data": 2}, tuning=sys.argv[1])
    got = f(*inputs).numpy()
    want = nir.compile(w.fn, backend="reference")(*inputs).numpy()
    try:
        nir.compile(w.fn, backend="xla", mesh={"data": 2}, tuning=sys.argv[2])(*inputs)
        missing = "no error"
    except ShardingError as e:
        missing = str(e)
    print(json.dumps({"tuned": f.tuned, "sharding": f._entry().executable._sharding, "missing": missing,
                      "err": float(np.abs(got - want).max())}))
""")


def test_compile_applies_the_measured_map_when_no_shard_is_given(tuned, tmp_path):
    db, report = tuned
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, "-c", APPLY, db, str(tmp_path / "empty")], capture_output=True, text=True,
                       timeout=TIMEOUT_S, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    winner = report["winner"]["shard"]
    assert out["tuned"] is True
    assert out["sharding"] == ({"mesh": {"data": 2}, "shard": winner} if winner else {})
    assert out["err"] < 1e-4
    assert out["missing"].startswith(f"the tuning database {str(tmp_path / 'empty')!r} has no shard map for this "
                                     "program (inputs {N: 8, F0: 32}, {F0: 32, F1: 64}")
    assert "`nir tune ... --mesh data:2 --db" in out["missing"]


def test_tuning_across_two_processes_agrees_on_one_winner(tmp_path):
    pytest.importorskip("jax")
    r = _nir("launch", "-n", "2", "--timeout", str(TIMEOUT_S), "nir", "tune", "mlp", "--size", "small",
             "--mesh", "data:2", "--db", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:]
    winners = sorted(line.split("] ", 1) for line in r.stdout.splitlines() if "<- winner" in line)
    assert [w[0] for w in winners] == ["[0", "[1"] and winners[0][1].split()[0] == winners[1][1].split()[0]
    (path,) = (tmp_path / "shard").glob("*.json")
    assert json.loads(path.read_text())["processes"] == 2
