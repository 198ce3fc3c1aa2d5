"""What the pre-AD pipeline inlines: `InlineCallees` (and `KeepCalls`, for tests).

AD is simplest and its result fastest on one function, so every callee is
inlined into the kernel, except:

- what numba marked `noinline` (exception-raising paths; every function of a
  debug build) and recursion (LLVM cannot inline a function into itself);
- *error formatters*: a numba function that never returns normally (every
  `ret` of its status is an error code, or passes on the error of a call it
  made), does no floating-point work itself (what it calls may: numba's
  `str(int)` counts digits with `log10`) and is, with everything it calls,
  larger than `ERROR_FORMATTER_INLINE_LIMIT` instructions. numba's array
  expressions call one (`ol_raise_with_shape_context`, which builds the
  "cannot broadcast" message through numba's unicode functions) at every
  broadcast: inlined at each call, it made a 26,000-line 3-D stencil module
  280,000 lines before O2, and most of enzpy's compile time. It moves no
  derivative; as a call it is differentiated across like any call that stays
  a call (`ad/calls.py`), which for code without floats means it is called.
  (Functions that return normally stay inlined whatever they contain: numba's
  `np.zeros` is float-free too, but the array it returns is better seen by
  the analyses than hidden behind a call.)

Those stay calls; `ad/calls.py` differentiates across them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir.reader import instruction_lines

ERROR_FORMATTER_INLINE_LIMIT = 400
"""Instructions (the function and everything it calls) above which an error formatter stays a call."""

_CALLED = re.compile(r'@("(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)')
_STATUS_RETURN = re.compile(r"^  ret i32 (-?\d+|%[-a-zA-Z$._0-9]+|%\"[^\"]*\")")
_CALL_RESULT = re.compile(r'^  (%[-a-zA-Z$._0-9]+|%"[^"]*") = (?:tail |musttail |notail )?call ')
_SUCCESS_STATUSES = ("0", "-2")          # numba: returned a value, returned None
_FLOAT_TYPE = re.compile(r"\b(?:half|bfloat|float|double|x86_fp80|fp128|ppc_fp128)\b")


@dataclass(frozen=True)
class InlineCallees:
    """Mark defined functions `alwaysinline` so the inliner folds calls into the kernel
    (all but the exceptions in the module docstring)."""

    name: str = "inline_callees"
    """Stage name."""

    def run(self, module, target):
        kept_calls = error_formatters(str(module))
        for function in module.functions:
            attributes = b" ".join(function.attributes).split()
            if function.is_declaration or b"noinline" in attributes or b"alwaysinline" in attributes:
                continue        # decided already (numba's noinline, or an earlier run: pre_read)
            if function.name in kept_calls:
                function.add_function_attribute("noinline")
            else:
                function.add_function_attribute("alwaysinline")


@dataclass(frozen=True)
class KeepCalls:
    """Mark the program's own functions `noinline`, so that calls to them stay calls.

    For testing interprocedural AD (enzpy/ad/calls.py) on kernels whose callees
    the pre-AD pipeline would inline: numba's own implementations (`_ZN5numba...`),
    the NRT and functions already `alwaysinline` are left alone. Not in any
    named pipeline (inlining is faster); see tests/pipelines/keep_calls.pipeline.
    """

    name: str = "keep_calls"
    """Stage name."""

    def run(self, module, target):
        for function in module.functions:
            attributes = b" ".join(function.attributes).split()
            if not function.is_declaration and b"alwaysinline" not in attributes \
                    and not function.name.startswith(("_ZN5numba", "_ZN05numba", "NRT_", "nrt_")):
                function.add_function_attribute("noinline")


@dataclass
class _Body:
    instructions: int
    """Instruction lines of the body."""
    has_floats: bool
    """Whether a floating-point type appears in the body."""
    callees: set[str]
    """Names of the globals the body mentions (callees among them)."""
    raises: bool = False
    """Whether some `ret i32` returns an error code."""
    may_succeed: bool = False
    """Whether some `ret i32` may return success (0, -2, or a value not from a call)."""
    call_results: set[str] = field(default_factory=set)
    """Local names that hold a call's result."""
    returned: list[str] = field(default_factory=list)
    """Local names returned as the status."""

    @property
    def never_returns_normally(self) -> bool:
        return self.raises and not self.may_succeed and all(name in self.call_results for name in self.returned)


def error_formatters(text: str, limit: int = ERROR_FORMATTER_INLINE_LIMIT) -> set[str]:
    """Names of the defined functions that never return normally, mention no float type and,
    with everything they reach, hold more than `limit` instructions (module docstring)."""
    bodies = _bodies(text)

    totals: dict[str, int] = {}

    def total(name: str, active: set[str]) -> int:
        # Instructions reached; a function on a cycle is counted once.
        if name not in totals:
            active.add(name)
            totals[name] = bodies[name].instructions + sum(
                total(callee, active) for callee in bodies[name].callees if callee in bodies and callee not in active)
            active.discard(name)
        return totals[name]

    return {name for name, body in bodies.items()
            if body.never_returns_normally and not body.has_floats and total(name, set()) > limit}


def _bodies(text: str) -> dict[str, _Body]:
    bodies: dict[str, _Body] = {}
    for name, lines in instruction_lines(text).items():
        body = bodies[name] = _Body(len(lines), False, set())
        for line in lines:
            if not body.has_floats and _FLOAT_TYPE.search(line):
                body.has_floats = True      # a float parameter shows where the body uses it
            if "@" in line:
                body.callees.update(match.strip('"') for match in _CALLED.findall(line))
            if (call := _CALL_RESULT.match(line)) is not None:
                body.call_results.add(call.group(1))
            elif (status := _STATUS_RETURN.match(line)) is not None:
                value = status.group(1)
                if value.startswith("%"):
                    body.returned.append(value)
                elif value in _SUCCESS_STATUSES:
                    body.may_succeed = True
                else:
                    body.raises = True
    return bodies
