"""Mutation check: plant each hand-picked bug of tools/mutants.py, one at a time, in a COPY of the project
(never the checkout), run the tests meant to catch it, and report which bugs survive.

    .venv/bin/python tools/mutate.py                   # every mutant (slow: minutes each on 2 cores)
    .venv/bin/python tools/mutate.py --only select-negative-index,xla-iota-float32
    .venv/bin/python tools/mutate.py --list

The copy (git's tracked and untracked-but-not-ignored files) is made once in a temporary directory; a
mutant edits one file there and the file is restored afterwards. The copy imports its own code: it runs
with PYTHONPATH set to the copy, whose nir/ has links to its backends/, frontends/ and bench/ (what the
editable install maps). The unmutated copy runs every mutant's tests first: a mutant is only judged
against tests that pass without it. Not in CI; docs/testing.md holds the latest result.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mutants import MUTANTS, Mutant  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
LINKED = {"backends": "backends", "frontends": "frontends", "bench": "bench"}  # nir.<name> -> <dir>


def make_copy() -> pathlib.Path:
    """A copy of the working tree (tracked and untracked, not ignored) that imports its own code."""
    dest = pathlib.Path(tempfile.mkdtemp(prefix="nir-mutants-"))
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    for name, target in LINKED.items():
        (dest / "nir" / name).symlink_to(pathlib.Path("..") / target)
    return dest


def env_for(copy: pathlib.Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")


def check_isolation(copy: pathlib.Path) -> None:
    """The copy must import its own nir (not the checkout's editable install)."""
    code = "import nir, nir.backends, nir.frontends; print(nir.__file__); print(nir.backends.__path__[0])"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env_for(copy), capture_output=True,
                         text=True, check=True).stdout.split()
    for path in out:
        if not pathlib.Path(path).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"mutate: the copy imports {path}, not its own code; refusing to run")


def run_tests(copy: pathlib.Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str, float]:
    """(pytest's exit status, its last lines, seconds) for ``tests`` in the copy."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    try:
        run = subprocess.run(cmd, cwd=copy, env=env_for(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timed out", time.monotonic() - t0
    tail = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))][:1]
    return run.returncode, (tail[0] if tail else run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""), \
        time.monotonic() - t0


def plant(copy: pathlib.Path, m: Mutant) -> str | None:
    """Apply ``m`` in the copy; returns the original text of the file, or None if the mutant is stale."""
    path = copy / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        return None
    path.write_text(text.replace(m.old, m.new))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    if args.list or not chosen:
        for m in MUTANTS:
            print(f"{m.id:28} {m.what}  [{' '.join(m.tests)}]")
        return 0 if chosen else 2
    copy = make_copy()
    print(f"copy: {copy}", flush=True)
    results = []
    try:
        check_isolation(copy)
        for tests in dict.fromkeys(m.tests for m in chosen):  # the baseline: each test set passes unmutated
            status, tail, secs = run_tests(copy, tests, args.timeout)
            if status != 0:
                raise SystemExit(f"mutate: {' '.join(tests)} fails without any mutant ({tail}); fix that first")
        for m in chosen:
            original = plant(copy, m)
            if original is None:
                results.append((m, "STALE", "the text to replace is not (once) in the file", 0.0))
                print(f"{m.id}: STALE", flush=True)
                continue
            try:
                status, tail, secs = run_tests(copy, m.tests, args.timeout)
            finally:
                (copy / m.path).write_text(original)
            verdict = "killed" if status not in (0, -1) else "SURVIVED" if status == 0 else "TIMEOUT"
            results.append((m, verdict, tail, secs))
            print(f"{m.id}: {verdict} in {secs:.0f} s ({tail})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)
    print("\n| mutant | bug | tests | result |\n|---|---|---|---|")
    for m, verdict, tail, secs in results:
        print(f"| `{m.id}` | {m.what} | `{' '.join(m.tests)}` | {verdict} |")
    survived = [m.id for m, v, _, _ in results if v != "killed"]
    print(f"\n{len(results) - len(survived)} of {len(results)} killed"
          + (f"; not killed: {survived}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
