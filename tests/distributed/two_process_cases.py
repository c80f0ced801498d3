"""Run in every process of a 2-process run (2 host devices each) by test_two_processes.py:

    nir launch -n 2 --devices 2 tests/distributed/two_process_cases.py OUT_DIR
    python two_process_cases.py OUT_DIR --plain 127.0.0.1:PORT RANK      # nir.distributed.initialize(...) by hand

Each process writes what it computed to OUT_DIR/rank<i>.npz (arrays) and OUT_DIR/rank<i>.json (errors and
facts); the tests compare them with the reference interpreter. Not a test module itself.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

import nir


def mlp(x, w):
    h = (x @ w).relu()
    return h, h.sum("N")


def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)  # the same in every process: global inputs are the same everywhere
    return rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)


def error(fn) -> str:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the message is what the tests check
        return f"{type(e).__name__}: {e}"
    return "no error"


def main(argv: list[str]) -> None:
    out = pathlib.Path(argv[0])
    if "--plain" in argv:
        i = argv.index("--plain")
        info = nir.distributed.initialize(argv[i + 1], 2, int(argv[i + 2]), local_devices=2)
    else:
        info = nir.distributed.initialize()
    rank = info.process_id
    x, w = inputs()
    X, W = nir.tensor(x, names=("N", "D")), nir.tensor(w, names=("D", "H"))
    arrays: dict[str, np.ndarray] = {}
    facts: dict[str, object] = {"info": info.__dict__}

    data = {"mesh": {"data": 4}, "shard": {"N": "data"}}
    h, s = nir.compile(mlp, backend="xla", **data)(X, W)
    arrays.update(global_h=h.numpy(), global_s=s.numpy())
    facts["global_h_names"] = list(h.names)
    if "--quick" not in argv:
        h, s = nir.compile(mlp, backend="xla", gather=True, **data)(X, W)
        arrays.update(gathered_h=h.numpy(), gathered_s=s.numpy())
        mine = nir.tensor(x[4 * rank:4 * rank + 4], names=("N", "D"))
        h, s = nir.compile(mlp, backend="xla", local_inputs=True, **data)(mine, W)
        arrays.update(local_h=h.numpy(), local_s=s.numpy())
        h, s = nir.compile(mlp, backend="xla", mesh={"data": 2, "model": 2}, shard={"N": "data", "H": "model"})(X, W)
        arrays.update(two_axes_h=h.numpy(), two_axes_s=s.numpy())
        small = nir.compile(mlp, backend="xla", mesh={"data": 2}, shard={"N": "data"})
        facts["small_mesh"] = error(lambda: small(X, W))
        facts["local_not_divisible"] = error(
            lambda: nir.compile(mlp, backend="xla", local_inputs=True, **data)(nir.tensor(x[:3], names=("N", "D")), W))
    np.savez(out / f"rank{rank}.npz", **arrays)
    (out / f"rank{rank}.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1:])
