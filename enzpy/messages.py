"""Differentiation errors in the user's terms.

The passes report problems with the IR's names: a mangled symbol
(`@_ZN8__main__6energyB2v1...`), a block (`'B78.if'`), and the Python line
when the kernel's debug info gives one. A user reads the first line of the
message: what went wrong, in which Python function, at which file and line
(with the line's text), and what to do instead. The IR details follow on a
line of their own, unchanged, for whoever debugs enzpy.
"""

from __future__ import annotations

import linecache
import re

_FUNCTION = re.compile(r"(?:in )?function @?'?(?P<symbol>[\w.$]+)'?")
_SOURCE = re.compile(r"(?:Python )?source (?P<file>[^\s,;)]+?):(?P<line>\d+)")
_DETAILS = re.compile(r" \((?P<details>(?:in )?function [^()]*(?:\([^()]*\)[^()]*)*)\)")

HINTS = (
    ("merges differentiable memory with memory enzpy has no shadow",
     "a variable holds either an array enzpy differentiates or one without a derivative (a Const "
     "argument, a global array); pass both as Duplicated, or copy the constant one (`c.copy()`) "
     "before it meets the other"),
    ("receives differentiable memory and has no differentiation rule",
     "this operation has no derivative in enzpy yet: keep its inputs constant (Const), or write it "
     "as a loop"),
    ("stored into memory enzpy cannot track",
     "the derivative would be lost there: write into an array the kernel creates, or one passed as "
     "Duplicated, not into a Const argument or a global"),
    ("moves a derivative through an aggregate",
     "forward mode does not carry derivatives through tuples and structs of unoptimized IR: "
     "use optimize=True (the default)"),
    ("not implemented",
     "this operation has no derivative rule in enzpy yet: keep its inputs constant (Const), or "
     "rewrite it with operations that have one"),
)


def python_name(symbol: str) -> str:
    """`tests.kernels.lists.states` from numba's `_ZN5tests7kernels5lists6statesB3v57...E...`."""
    if not symbol.startswith("_ZN"):
        return symbol
    parts, position = [], 3
    while position < len(symbol) and symbol[position].isdigit():
        digits = re.match(r"\d+", symbol[position:]).group()
        start = position + len(digits)
        parts.append(symbol[start:start + int(digits)])
        position = start + int(digits)
    # numba writes characters that are not identifier characters as _xx (hex).
    name = ".".join(re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), p) for p in parts)
    return name or symbol


def for_user(message: str, kernel: str) -> str:
    """The message, led by a line in the user's terms; `kernel` names the kernel and its `def`."""
    details = _DETAILS.search(message)
    what = (message[:details.start()] + message[details.end():]) if details else message
    what = what.strip().rstrip(".")
    function = _FUNCTION.search(details.group("details")) if details else None
    source = _SOURCE.search(message)
    place = f"in {python_name(function.group('symbol'))!r}" if function else f"in kernel {kernel}"
    lines = [f"{what}: {place}" + (f", Python source {source.group('file')}:{source.group('line')}" if source else "")]
    if source:
        text = linecache.getline(source.group("file"), int(source.group("line"))).strip()
        if text:
            lines.append(f"    {text}")
    hint = next((hint for key, hint in HINTS if key in what), None)
    if hint:
        lines.append(f"  what to do: {hint}")
    lines.append(f"  details: {details.group('details') if details else 'none'}; kernel {kernel}")
    return "\n".join(lines)
