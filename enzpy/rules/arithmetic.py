"""Partials of LLVM's floating-point instructions: arithmetic, casts, select.

Casts between float types (fpext, fptrunc) have partial 1 in the result's
type; the drivers convert tangents and adjoints between the operand's and the
result's type, so no rule here ever casts.
"""

from __future__ import annotations

from ..ir.builder import constant_int
from .common import constant
from .registry import choices, partials


@partials("fadd")
def fadd(builder, result, x, y):
    """d(x + y) = dx + dy"""
    return (constant(builder, result, 1.0), constant(builder, result, 1.0))


@partials("fsub")
def fsub(builder, result, x, y):
    """d(x - y) = dx - dy"""
    return (constant(builder, result, 1.0), constant(builder, result, -1.0))


@partials("fmul")
def fmul(builder, result, x, y):
    """d(x * y) = y dx + x dy"""
    return (y, x)


@partials("fdiv")
def fdiv(builder, result, x, y):
    """d(x / y) = dx / y - (x / y) dy / y; the result already holds x / y."""
    reciprocal = builder.fdiv(constant(builder, result, 1.0), y)
    return (reciprocal, builder.fneg(builder.fdiv(result, y)))


@partials("frem", "fmod", "fmodf")
def frem(builder, result, x, y):
    """x rem y = x - y * trunc(x / y): d/dx = 1, d/dy = -trunc(x / y) (away from the jumps).

    frem and C fmod are the same operation (numba lowers np.fmod and % to
    frem; LLVM may turn either into the other).
    """
    quotient = builder.call_intrinsic("llvm.trunc", builder.fdiv(x, y))
    return (constant(builder, result, 1.0), builder.fneg(quotient))


@partials("fneg")
def fneg(builder, result, x):
    """d(-x) = -dx"""
    return (constant(builder, result, -1.0),)


@partials("fpext")
def fpext(builder, result, x):
    """Widening is exact: partial 1 (the driver converts the types)."""
    return (constant(builder, result, 1.0),)


@partials("fptrunc")
def fptrunc(builder, result, x):
    """Narrowing rounds, which is locally the identity: partial 1."""
    return (constant(builder, result, 1.0),)


@partials("freeze")
def freeze(builder, result, x):
    """freeze only pins poison down; on ordinary values it is the identity."""
    return (constant(builder, result, 1.0),)


@partials("sitofp")
def sitofp(builder, result, integer):
    """An integer operand carries no derivative."""
    return (None,)


@partials("uitofp")
def uitofp(builder, result, integer):
    """An integer operand carries no derivative."""
    return (None,)


@choices("select")
def select(builder, result, condition, if_true, if_false):
    """The result is one of the two values; the i1 condition carries no derivative.

    numba lowers min, max, np.minimum, np.fmin, np.sign, ... to fcmp + select,
    so this rule covers them.
    """
    return (None, condition, builder.binary("xor", condition, constant_int(condition.type, 1)))
