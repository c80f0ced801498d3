"""The `nir` command: `nir demo`, `nir show`, `nir backends`, and the subcommands other modules add
(`nir bench`, `nir tune`, `nir fuzz`, `nir soak`), each registered in SUBCOMMANDS as "module:function"."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from nir.extras import MissingDependencyError

# name -> (help, "module:main") ; main(argv: list[str]) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("run the named-tensor examples eagerly and on every installed backend", "nir.demo:main"),
    "backends": ("list backends, whether they are installed, and the targets they serve", "nir.cli:backends_main"),
    "bench": ("cross-backend benchmark suite", "nir.bench.main:main"),
    "tune": ("tune a program per target: layouts, options, schedules, backend; writes a tuning database",
             "nir.tune.cli:main"),
    "fuzz": ("differential fuzzing of every installed backend against the reference", "nir.fuzz:main"),
    "launch": ("start N local processes of a script joined into one multi-process run (nir.distributed)",
               "nir.launch:main"),
    "soak": ("serve a compiled model from N threads for M minutes: calls/s, latency, errors, memory",
             "nir.soak:main"),
    "train-digits": ("train a named MLP and CNN on scikit-learn's digits with a compiled train step",
                     "nir.examples.digits:main"),
}


def backends_main(argv: Sequence[str]) -> int:
    """Print each backend, whether it is installed, and the target kinds it serves."""
    from nir import backends
    from nir.target import KINDS
    argparse.ArgumentParser(prog="nir backends").parse_args(list(argv))
    for name in backends.REGISTRY:
        kinds = [k for k, names in KINDS.items() if name in names]
        state = "installed" if backends.installed(name) else f"not installed ({backends.INSTALL_HINT[name]})"
        print(f"{name:<10} {state:<40} targets: {', '.join(kinds)}")
    return 0


def _load(spec: str) -> Callable[[list[str]], int]:
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nir` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="nir", description="named-tensor compiler frontend")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, _) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}")
    try:
        return int(_load(SUBCOMMANDS[argv[0]][1])(argv[1:]) or 0)
    except MissingDependencyError as e:  # an optional package a command needs: one line, not a traceback
        print(f"nir {argv[0]}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nir demo | head`: the reader left; Python's own recipe for a quiet exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
