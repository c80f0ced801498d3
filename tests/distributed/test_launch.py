"""`nir launch` with small plain-Python scripts (no jax): environment, output, failures, time limit."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from nir.launch import TIMED_OUT, launch, main

SCRIPT = textwrap.dedent("""
    import os, pathlib, sys, time
    rank = int(os.environ["NIR_PROCESS_ID"])
    out = pathlib.Path(sys.argv[1])
    (out / f"pid{rank}").write_text(str(os.getpid()))
    print("env", rank, os.environ["NIR_NUM_PROCESSES"], os.environ["NIR_COORDINATOR_ADDRESS"],
          os.environ["NIR_LOCAL_DEVICES"], os.environ["XLA_FLAGS"], *sys.argv[2:])
    if rank == int(sys.argv[2]):
        sys.exit(int(sys.argv[3]))
    time.sleep(float(sys.argv[4]))
""")


@pytest.fixture
def script(tmp_path: pathlib.Path) -> pathlib.Path:
    p = tmp_path / "job.py"
    p.write_text(SCRIPT)
    return p


def _alive(pid_file: pathlib.Path) -> bool:
    if not pid_file.exists():  # stopped before it got that far
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def _run(script: pathlib.Path, n: int, fail_rank: int, code: int, sleep_s: float, **kw) -> tuple[int, str]:
    out = io.StringIO()
    status = launch([str(script), str(script.parent), str(fail_rank), str(code), str(sleep_s)], n, out=out, **kw)
    return status, out.getvalue()


def test_every_process_gets_its_id_the_count_and_one_coordinator(script):
    status, text = _run(script, 3, -1, 0, 0, devices=2)
    assert status == 0
    lines = sorted(line for line in text.splitlines() if " env " in line)
    assert len(lines) == 3
    addresses = {line.split()[4] for line in lines}
    assert len(addresses) == 1 and addresses.pop().startswith("127.0.0.1:")
    for rank, line in enumerate(lines):
        assert line.startswith(f"[{rank}] env {rank} 3 ")
        assert " 2 --xla_force_host_platform_device_count=2 " in line


def test_a_failing_process_stops_the_others_and_gives_its_status(script):
    t0 = time.monotonic()
    status, text = _run(script, 3, 1, 7, 120)
    assert status == 7
    assert time.monotonic() - t0 < 60  # the others sleep 120 s: they were stopped, not waited for
    assert "nir launch: process 1 failed with status 7; stopped process(es) 0, 2" in text
    for rank in (0, 2):
        assert not _alive(script.parent / f"pid{rank}")


def test_the_time_limit_stops_every_process_with_status_124(script):
    status, text = _run(script, 2, -1, 0, 120, timeout_s=1.5)
    assert status == TIMED_OUT
    assert "nir launch: timed out after 1.5 s; stopped process(es) 0, 1" in text
    for rank in (0, 1):
        assert not _alive(script.parent / f"pid{rank}")


def test_the_command_line_runs_a_module_with_its_own_options(tmp_path):
    (tmp_path / "hello_mod.py").write_text("import sys, os; print('args', os.environ['NIR_PROCESS_ID'], sys.argv[1:])")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "nir.cli", "launch", "-n", "2", "--timeout", "60", "-m", "hello_mod",
                        "--flag", "-n", "5"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(line for line in r.stdout.splitlines() if "args" in line) == [
        "[0] args 0 ['--flag', '-n', '5']", "[1] args 1 ['--flag', '-n', '5']"]


def test_the_command_line_refuses_a_missing_script(capsys):
    with pytest.raises(SystemExit):
        main(["-n", "2", "no_such_script.py"])
    assert "no script 'no_such_script.py'; give a Python file, or -m MODULE" in capsys.readouterr().err
