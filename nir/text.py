"""The text form of a Program: it prints, and it parses back to an equal program.

    program(%0: float32{N:2, C:3}, %1: float32{C:3}) {
      %2: float32{N:2, C:3} = sub(%0, %1)
      %3: float32{N:2} = reduce_sum[dims=('C',)](%2)
      return (%3)
    }

A value may carry a physical layout, printed as `@(C, N)` after its type. An equation with several
outputs lists them all; an equation whose parameters include sub-programs (scan, cond) prints them
after it, indented, one block per parameter (each sub-program numbers its own values):

      %4: float32{N:2, H:3}, %5: float32{T:5, N:2, H:3} = scan[num_carry=1, num_consts=1, over='T', reverse=False](%2, %1, %0) {
        body: program(%0: float32{H:3, G:3}, %1: float32{N:2, H:3}, %2: float32{N:2, H:3}) {
          ...
          return (%4, %4)
        }
      }
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from typing import Any

from .ir import Eqn, Program, Value, freeze_params
from .types import NamedShapeError, TensorType

__all__ = ["print_program", "parse_program", "ParseError"]


class ParseError(NamedShapeError):
    """The text is not a well-formed nir program; the message gives the line."""


_GENERATED = re.compile(r"^_\d+$")


def _fmt_value(v: Any, elide_bytes: int | None = None) -> str:
    if isinstance(v, float):
        return repr(v)  # repr round-trips; inf/nan parse back through the names below
    if isinstance(v, tuple):
        inner = ", ".join(_fmt_value(x, elide_bytes) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, bytes) and elide_bytes is not None and len(v) > elide_bytes:
        return f"<{len(v)} bytes sha256:{hashlib.sha256(v).hexdigest()[:12]}>"
    return repr(v)


def print_program(p: Program, canonical: bool = False, elide_bytes: int | None = None) -> str:
    """Print ``p``. ``canonical`` renumbers values and generated names and drops layouts (fingerprints);
    ``elide_bytes`` shows constants longer than that by size and hash (readable, but not parseable)."""
    return "\n".join(_print_lines(p, canonical, elide_bytes, {}, "program"))


def _print_lines(p: Program, canonical: bool, elide_bytes: int | None, gen: dict[str, str], head: str) -> list[str]:
    """The lines of ``p``, its first one starting with ``head``; ``gen`` renames generated dim names
    canonically and is shared with the sub-programs (they see the enclosing program's dims)."""
    ids: dict[int, int] = {}

    def vid(v: Value) -> str:
        return f"%{ids.setdefault(v.id, len(ids)) if canonical else v.id}"

    def name(n: str) -> str:
        if canonical and _GENERATED.match(n):
            return gen.setdefault(n, f"_{len(gen)}")
        return n

    def param(v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(param(x) for x in v)
        return name(v) if isinstance(v, str) else v

    def typ(v: Value) -> str:
        t = v.type
        s = f"{t.dtype}{{" + ", ".join(f"{name(n)}:{s}" for n, s in t.dims) + "}"
        if v.layout is not None and not canonical:
            s += " @(" + ", ".join(v.layout) + ")"
        return s

    lines = [f"{head}(" + ", ".join(f"{vid(v)}: {typ(v)}" for v in p.inputs) + ") {"]
    for e in p.eqns:
        params = ", ".join(f"{k}={_fmt_value(param(v), elide_bytes)}" for k, v in e.params
                           if not isinstance(v, Program))
        outs = ", ".join(f"{vid(v)}: {typ(v)}" for v in e.outputs) or "()"
        args = ", ".join(vid(v) for v in e.inputs)
        subs = e.subprograms
        lines.append(f"  {outs} = {e.prim}{f'[{params}]' if params else ''}({args}){' {' if subs else ''}")
        for k, sub in subs:
            lines.extend("    " + ln for ln in _print_lines(sub, canonical, elide_bytes, gen, f"{k}: program"))
        if subs:
            lines.append("  }")
    lines.append("  return (" + ", ".join(vid(v) for v in p.outputs) + ")")
    lines.append("}")
    return lines


_TYPE = re.compile(r"^(?P<dtype>\w+)\{(?P<dims>[^}]*)\}(?: @\((?P<layout>[^)]*)\))?$")
_EQN = re.compile(r"^(?P<outs>%\d+: .*?|\(\)) = (?P<prim>\w+)(?:\[(?P<params>.*)\])?\((?P<args>[%\d, ]*)\)"
                  r"(?P<open> \{)?$")
_SUB = re.compile(r"^(?P<name>\w+): program\(")
_DECL = re.compile(r"%(\d+): (\w+\{[^}]*\}(?: @\([^)]*\))?)")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return math.inf if node.id == "inf" else math.nan
    raise ValueError(f"not a literal: {ast.dump(node)}")


def _parse_type(text: str, lineno: int) -> tuple[TensorType, tuple[str, ...] | None]:
    m = _TYPE.match(text.strip())
    if not m:
        raise ParseError(f"line {lineno}: cannot parse type {text!r}")
    dims = []
    for part in filter(None, (s.strip() for s in m["dims"].split(","))):
        n, _, s = part.partition(":")
        dims.append((n.strip(), int(s)))
    layout = tuple(s.strip() for s in m["layout"].split(",")) if m["layout"] is not None else None
    return TensorType.of(dims, m["dtype"]), layout


def parse_program(text: str) -> Program:
    """Parse the text form back into a Program (the inverse of `print_program`)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("program(") or lines[-1] != "}":
        raise ParseError("a program starts with 'program(...) {' and ends with '}'")
    program, end = _parse_lines(lines, 0, len("program("))
    if end != len(lines):
        raise ParseError(f"line {end + 1}: text after the end of the program")
    return program


def _parse_lines(lines: list[str], start: int, skip: int) -> tuple[Program, int]:
    """Parse the program whose header is ``lines[start]`` (its inputs begin at column ``skip``);
    returns it and the index of the line after its closing brace."""
    values: dict[int, Value] = {}

    def decl(src: str, lineno: int) -> list[Value]:
        out = []
        for m in _DECL.finditer(src):
            t, layout = _parse_type(m.group(2), lineno)
            v = Value(int(m.group(1)), t, layout)
            values[v.id] = v
            out.append(v)
        return out

    def use(ref: str, lineno: int) -> Value:
        try:
            return values[int(ref.strip().lstrip("%"))]
        except (KeyError, ValueError):
            raise ParseError(f"line {lineno}: unknown value {ref.strip()!r}") from None

    inputs = decl(lines[start][skip:].rsplit(")", 1)[0], start + 1)
    eqns: list[Eqn] = []
    outputs: tuple[Value, ...] = ()
    i = start + 1
    while i < len(lines):
        line, lineno = lines[i], i + 1
        i += 1
        if line == "}":
            return Program(tuple(inputs), tuple(eqns), outputs), i
        if line.startswith("return"):
            inner = line[len("return"):].strip().strip("()")
            outputs = tuple(use(r, lineno) for r in inner.split(",") if r.strip())
            continue
        m = _EQN.match(line)
        if not m:
            raise ParseError(f"line {lineno}: cannot parse {line!r}")
        args = tuple(use(r, lineno) for r in m["args"].split(",") if r.strip())
        params = _parse_params(m["params"], lineno)
        if m["open"]:
            while i < len(lines) and lines[i] != "}":
                sub = _SUB.match(lines[i])
                if not sub:
                    raise ParseError(f"line {i + 1}: expected a sub-program 'name: program(...) {{', got {lines[i]!r}")
                params[sub["name"]], i = _parse_lines(lines, i, sub.end())
            i += 1  # the equation's closing brace
        outs = tuple(decl(m["outs"], lineno))
        eqns.append(Eqn(m["prim"], args, freeze_params(params), outs))
    raise ParseError(f"line {start + 1}: the program is not closed with '}}'")


def _parse_params(text: str | None, lineno: int) -> dict[str, Any]:
    if not text:
        return {}
    if "bytes sha256:" in text:
        raise ParseError(f"line {lineno}: constant data was elided when printing; parse `program.text`, "
                         "which keeps it, instead of `str(program)`")
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        return {kw.arg: _literal(kw.value) for kw in call.keywords}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError) as e:
        raise ParseError(f"line {lineno}: bad parameters {text!r}: {e}") from None
