"""`nir launch`: start N processes of one script on this machine, joined into one multi-process run.

    nir launch -n 2 train.py --epochs 3            # two processes, one host device each
    nir launch -n 2 --devices 2 -m mypkg.job       # two processes with 2 host devices each: 4 devices in all
    nir launch -n 2 --devices 2 nir tune mlp --mesh data:4 --db tuning/     # a nir command

Each process gets the coordinator's address (127.0.0.1 and a free port), the number of processes, its
id and its host-device count in the variables that `nir.distributed.initialize()` reads, so the script
calls ``nir.distributed.initialize()`` with no arguments (XLA_FLAGS also asks for the host devices, for
scripts that use jax directly). Output lines are prefixed with the process id (``[0] ...``). When a
process fails, the others are stopped and `nir launch` exits with the failed one's status; past
``--timeout`` seconds every process is stopped and it exits with 124. For trying a run on one machine:
on a cluster, start the processes the cluster's way (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Sequence

from .distributed import ENV_COORDINATOR, ENV_LOCAL_DEVICES, ENV_NUM_PROCESSES, ENV_PROCESS_ID

__all__ = ["launch", "free_port", "main", "TIMED_OUT"]

TIMED_OUT = 124     # the exit status after --timeout, as timeout(1)
GRACE_S = 5.0       # between asking a process to stop (SIGTERM) and killing it
DEFAULT_TIMEOUT_S = 3600.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _env(rank: int, n: int, address: str, devices: int) -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update({ENV_COORDINATOR: address, ENV_NUM_PROCESSES: str(n), ENV_PROCESS_ID: str(rank),
                ENV_LOCAL_DEVICES: str(devices), "PYTHONUNBUFFERED": "1",
                "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])})
    return env


def _pump(rank: int, stream: IO[bytes], out: IO[str], lock: threading.Lock) -> None:
    """Copy ``stream`` to ``out`` line by line, each line prefixed with the rank."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(f"[{rank}] {line}\n")
            out.flush()
    stream.close()


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """Stop every process still running (and what it started: each leads its own process group):
    SIGTERM, then SIGKILL after `GRACE_S`."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + GRACE_S
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal S: 128 + S, as a shell reports it


def launch(command: Sequence[str], processes: int, *, devices: int = 1, timeout_s: float | None = DEFAULT_TIMEOUT_S,
           port: int | None = None, out: IO[str] | None = None) -> int:
    """Run ``python *command`` in ``processes`` processes joined by a coordinator on 127.0.0.1; return 0 when
    all succeed, else the status of the first that failed (the others are stopped), or `TIMED_OUT`.

    devices: host devices per process. timeout_s: stop everything after this long (None: no limit).
    port: the coordinator's port (default: a free one). out: where the prefixed output goes (stdout).
    """
    if processes < 1:
        raise ValueError(f"processes={processes}; give at least 1")
    if devices < 1:
        raise ValueError(f"devices={devices}; give at least 1 host device per process")
    out = out or sys.stdout
    address = f"127.0.0.1:{port or free_port()}"
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    status, message = 0, ""
    try:
        for rank in range(processes):
            p = subprocess.Popen([sys.executable, *command], env=_env(rank, processes, address, devices),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            procs.append(p)
            t = threading.Thread(target=_pump, args=(rank, p.stdout, out, lock), daemon=True)
            t.start()
            pumps.append(t)
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            codes = [p.poll() for p in procs]
            running = ", ".join(str(r) for r, c in enumerate(codes) if c is None)
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                status = _status(failed[0][1])
                message = f"process {failed[0][0]} failed with status {status}" + (
                    f"; stopped process(es) {running}" if running else "")
                break
            if all(c == 0 for c in codes):
                break
            if end is not None and time.monotonic() > end:
                status, message = TIMED_OUT, f"timed out after {timeout_s:g} s; stopped process(es) {running}"
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        status, message = 130, "interrupted; stopped every process"
    finally:
        _stop(procs)
        for t in pumps:
            t.join(timeout=GRACE_S)
    if message:
        out.write(f"nir launch: {message}\n")
        out.flush()
    return status


_TAKES_VALUE = ("-n", "--processes", "--devices", "--timeout", "--port")


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """nir launch's own options, and the command (``script.py args`` or ``-m module args``) after them:
    everything from the first script or ``-m`` on belongs to the command, options included."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            return list(argv[:i]), list(argv[i:])
        if a == "--":
            return list(argv[:i]), list(argv[i + 1:])
        if a in _TAKES_VALUE:
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            break
    return list(argv[:i]), list(argv[i:])


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nir launch`."""
    own, command = _split(list(argv or []))
    p = argparse.ArgumentParser(prog="nir launch", description=__doc__,
                                usage="nir launch -n N [options] (script.py | -m module | nir COMMAND) [args]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--processes", type=int, required=True, help="how many processes to start")
    p.add_argument("--devices", type=int, default=1, help="host devices per process (default: 1)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"stop every process after this many seconds; 0: no limit (default: {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--port", type=int, default=None, help="the coordinator's port on 127.0.0.1 (default: a free one)")
    args = p.parse_args(own)
    if args.processes < 1 or args.devices < 1:
        p.error("-n and --devices take positive numbers")
    if not command:
        p.error("give a script (nir launch -n 2 train.py) or -m MODULE")
    if command[0] == "nir":  # a nir command, e.g. nir launch -n 2 nir tune mlp --mesh data:4 --db tuning/
        command = ["-m", "nir.cli", *command[1:]]
    if command[0] == "-m":
        if len(command) < 2:
            p.error("-m needs a module name")
    elif not os.path.isfile(command[0]):
        p.error(f"no script {command[0]!r}; give a Python file, or -m MODULE")
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM to the launcher stops its processes, as Ctrl-C does
    return launch(command, args.processes, devices=args.devices, timeout_s=args.timeout or None, port=args.port)
