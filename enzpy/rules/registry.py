"""The scalar rule registry: one place that states each operation's local partials.

A scalar rule answers one question: given the operands and the primal result
of an instruction, what is d result / d operand for each operand? The AD
drivers turn that into both modes (forward: sum of partial * tangent; reverse:
operand adjoint += partial * result adjoint), so rules never look at the mode.

    @partials("fmul")
    def fmul(builder, result, x, y):
        return (y, x)

An entry of None means "identically zero, or the operand carries no
derivative" (the condition of a select, an integer exponent); the drivers skip
it instead of multiplying by a known zero.

Operations that return one of their operands unchanged (select, min, max) are
registered with `@choices` instead: the rule gives, per operand, an i1 that is
true where that operand is the result. The drivers then *pick* the chosen
operand's tangent and hand the adjoint to the chosen operand whole. Writing
such a choice as partials 1 and 0 would be wrong in floating point: 0 times
the infinite or NaN derivative of the operand not chosen (`fmax(sqrt(r), eps)`
at r = 0) is NaN, where the derivative is finite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import constant_float
from .numba_helpers import describe_helper


@dataclass(frozen=True)
class ScalarRule:
    """The local partial derivatives of one operation, under every name it is called by."""

    name: str
    """Canonical name: the first key it was registered under (`llvm.sin`, `fmul`, ...)."""
    partials: Callable
    """`partials(builder, result, *operands)` -> one entry per operand: a Value of the
    result's type holding d result / d operand, or None when that partial is identically
    zero or the operand cannot carry a derivative. Instructions go in at `builder`'s
    insertion point; `result` is the primal value, there to be reused (exp, sqrt, tanh)."""
    keys: tuple[str, ...]
    """Every name the rule is registered under: intrinsic, libm double and float names."""
    chooses: bool = False
    """True for operations that return one operand unchanged (`@choices`): `partials` then
    gives per operand an i1 value, true where that operand is the result, or None."""

    def float_partials(self, builder, result, *operands) -> tuple:
        """The partials as floats: a choice becomes select(chosen, 1, 0). For reading a rule
        (tests, explanations); the drivers use `partials` and `chooses` themselves."""
        entries = self.partials(builder, result, *operands)
        if not self.chooses:
            return entries
        one, zero = constant_float(result.type, 1.0), constant_float(result.type, 0.0)
        return tuple(None if chosen is None else builder.select(chosen, one, zero) for chosen in entries)


_RULES: dict[str, ScalarRule] = {}


def partials(*keys: str):
    """Decorator: register the decorated function as the ScalarRule for every key."""
    return _registration(keys, chooses=False, decorator="@partials")


def choices(*keys: str):
    """Decorator: register a rule for an operation that returns one of its operands unchanged.

    The decorated function returns, per operand, an i1 that is true where that
    operand is the result (None for operands never returned, such as a select's
    condition).
    """
    return _registration(keys, chooses=True, decorator="@choices")


def _registration(keys: tuple[str, ...], chooses: bool, decorator: str):
    if not keys:
        raise ValueError(f"{decorator} needs at least one key")

    def register(function: Callable) -> Callable:
        rule = ScalarRule(name=keys[0], partials=function, keys=tuple(keys), chooses=chooses)
        for key in keys:
            if key in _RULES:
                # Two rules for one name would make the winner depend on import order.
                raise ValueError(f"a differentiation rule for {key!r} is already registered "
                                 f"({_RULES[key].partials.__module__}.{_RULES[key].partials.__qualname__})")
        for key in keys:
            _RULES[key] = rule
        return function

    return register


def registered_rules() -> dict[str, ScalarRule]:
    """Every registered key and its rule (a copy: registering goes through @partials)."""
    return dict(_RULES)


# One dot-separated component of an overloaded intrinsic's type mangling:
# f64, f32, bf16, ppcf128, i32, p0, v4f64, nxv2f64.
_TYPE_SUFFIX = re.compile(r"f\d+|bf16|ppcf128|i\d+|p\d+|(nx)?v\d+(f|i|bf)\d+")


def rule_key(instruction: core.Instruction) -> str:
    """The name a rule for `instruction` is registered under.

    The opcode for everything but calls; for calls the callee's name, with the
    type suffixes of an overloaded LLVM intrinsic removed (`llvm.powi.f64.i32`
    -> `llvm.powi`). Other callees (libm, numba helpers) keep their name as is:
    `sinhf` is a different function from `sinh`.
    """
    if not isinstance(instruction, core.Call):
        return instruction.opcode
    callee = instruction.callee
    if not isinstance(callee, core.Function):
        return "call"                            # indirect: no name to key on
    name = callee.name
    if not name.startswith("llvm."):
        return name
    parts = name.split(".")
    # Keep at least `llvm.<base>`: `llvm.exp2` must not lose its `exp2`.
    while len(parts) > 2 and _TYPE_SUFFIX.fullmatch(parts[-1]):
        parts.pop()
    return ".".join(parts)


def scalar_rule(instruction: core.Instruction) -> ScalarRule | None:
    """The rule registered for `instruction`, or None."""
    return _RULES.get(rule_key(instruction))


def missing_rule_error(instruction: core.Instruction, function_name: str) -> DifferentiationError:
    """The error to raise when `instruction` needs a derivative and has no rule."""
    key = rule_key(instruction)
    where = [f"in function '{function_name}'", f"block {_block_description(instruction)}"]
    if instruction.location is not None:
        where.append(f"Python source {instruction.location}")
    # A numba C helper is named by the numpy / Python operation that called it.
    helper = describe_helper(key) if isinstance(instruction, core.Call) else None
    what = f"'{key}' = {helper}" if helper else f"'{key}'"
    return DifferentiationError(
        f"Differentiation rule for {what} not implemented ({', '.join(where)}). "
        f"Register one with @partials(\"{key}\") in enzpy/rules/.")


def _block_description(instruction: core.Instruction) -> str:
    block = instruction.parent
    if block is None:
        return "'<detached>'"
    # Unnamed blocks get numbers from the writer; the position is what a reader can find.
    position = block.parent.blocks.index(block) if block.parent is not None else None
    label = f"'{block.name}'" if block.name else "<unnamed>"
    return label if position is None else f"{label} (#{position})"
