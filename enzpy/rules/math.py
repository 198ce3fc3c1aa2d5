"""Partials of the math functions numba lowers for floats.

Each function is registered under its LLVM intrinsic name (where LLVM has one)
and under the C library names for double and float (`sinh`, `sinhf`): numba
calls intrinsics for some functions (sin, cos, exp, log, pow, fabs, ...) and
libm for the rest, and LLVM's optimizer turns some libm calls into intrinsics
(`floor` -> `llvm.floor.f64`), so a kernel may contain either spelling.
numba's own helpers (`numba_ldexp`, `numba_nextafter`, `numba_frexp`) are keyed here too;
erf, erfc and the gamma family live in `special.py`.

Partials reuse the primal `result` where that saves a call (exp, sqrt, tanh).
"""

from __future__ import annotations

import math

from ..ir.builder import constant_int
from ..ir.types import I1
from .common import call_float_integer_intrinsic, constant
from .registry import choices, partials

_NATURAL_LOG_2 = math.log(2.0)
_NATURAL_LOG_10 = math.log(10.0)


def reciprocal(builder, value):
    return builder.fdiv(constant(builder, value, 1.0), value)


def square(builder, value):
    return builder.fmul(value, value)


# ---------------------------------------------------------------- trigonometric

@partials("llvm.sin", "sin", "sinf")
def sin(builder, result, x):
    """d sin x = cos x"""
    return (builder.call_intrinsic("llvm.cos", x),)


@partials("llvm.cos", "cos", "cosf")
def cos(builder, result, x):
    """d cos x = -sin x"""
    return (builder.fneg(builder.call_intrinsic("llvm.sin", x)),)


@partials("llvm.tan", "tan", "tanf")
def tan(builder, result, x):
    """d tan x = 1 + tan^2 x"""
    return (builder.fadd(constant(builder, x, 1.0), square(builder, result)),)


def _one_minus_square(builder, x):
    """1 - x^2 as (1 - x)(1 + x): no cancellation near |x| = 1, where these partials blow up."""
    one = constant(builder, x, 1.0)
    return builder.fmul(builder.fsub(one, x), builder.fadd(one, x))


@partials("llvm.asin", "asin", "asinf")
def asin(builder, result, x):
    """d asin x = 1 / sqrt(1 - x^2)"""
    return (reciprocal(builder, builder.call_intrinsic("llvm.sqrt", _one_minus_square(builder, x))),)


@partials("llvm.acos", "acos", "acosf")
def acos(builder, result, x):
    """d acos x = -1 / sqrt(1 - x^2)"""
    root = builder.call_intrinsic("llvm.sqrt", _one_minus_square(builder, x))
    return (builder.fdiv(constant(builder, x, -1.0), root),)


@partials("llvm.atan", "atan", "atanf")
def atan(builder, result, x):
    """d atan x = 1 / (1 + x^2)"""
    return (reciprocal(builder, builder.fadd(constant(builder, x, 1.0), square(builder, x))),)


@partials("llvm.atan2", "atan2", "atan2f")
def atan2(builder, result, y, x):
    """atan2(y, x): d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2)"""
    radius_squared = builder.fadd(square(builder, x), square(builder, y))
    return (builder.fdiv(x, radius_squared), builder.fdiv(builder.fneg(y), radius_squared))


# ---------------------------------------------------------------- hyperbolic

@partials("llvm.sinh", "sinh", "sinhf")
def sinh(builder, result, x):
    """d sinh x = cosh x"""
    return (builder.call_libm("cosh", x),)


@partials("llvm.cosh", "cosh", "coshf")
def cosh(builder, result, x):
    """d cosh x = sinh x"""
    return (builder.call_libm("sinh", x),)


@partials("llvm.tanh", "tanh", "tanhf")
def tanh(builder, result, x):
    """d tanh x = 1 - tanh^2 x"""
    return (_one_minus_square(builder, result),)


@partials("asinh", "asinhf")
def asinh(builder, result, x):
    """d asinh x = 1 / sqrt(x^2 + 1)"""
    radicand = builder.fadd(square(builder, x), constant(builder, x, 1.0))
    return (reciprocal(builder, builder.call_intrinsic("llvm.sqrt", radicand)),)


@partials("acosh", "acoshf")
def acosh(builder, result, x):
    """d acosh x = 1 / sqrt(x^2 - 1), with x^2 - 1 as (x - 1)(x + 1) for accuracy near 1"""
    one = constant(builder, x, 1.0)
    radicand = builder.fmul(builder.fsub(x, one), builder.fadd(x, one))
    return (reciprocal(builder, builder.call_intrinsic("llvm.sqrt", radicand)),)


@partials("atanh", "atanhf")
def atanh(builder, result, x):
    """d atanh x = 1 / (1 - x^2)"""
    return (reciprocal(builder, _one_minus_square(builder, x)),)


# ---------------------------------------------------------------- exponential and logarithm

@partials("llvm.exp", "exp", "expf")
def exp(builder, result, x):
    """d exp x = exp x"""
    return (result,)


@partials("expm1", "expm1f")
def expm1(builder, result, x):
    """d (exp x - 1) = exp x = result + 1"""
    return (builder.fadd(result, constant(builder, x, 1.0)),)


@partials("llvm.exp2", "exp2", "exp2f")
def exp2(builder, result, x):
    """d 2^x = 2^x ln 2"""
    return (builder.fmul(result, constant(builder, x, _NATURAL_LOG_2)),)


@partials("llvm.exp10", "exp10", "exp10f")
def exp10(builder, result, x):
    """d 10^x = 10^x ln 10"""
    return (builder.fmul(result, constant(builder, x, _NATURAL_LOG_10)),)


@partials("llvm.log", "log", "logf")
def log(builder, result, x):
    """d log x = 1 / x"""
    return (reciprocal(builder, x),)


@partials("log1p", "log1pf")
def log1p(builder, result, x):
    """d log(1 + x) = 1 / (1 + x)"""
    return (reciprocal(builder, builder.fadd(constant(builder, x, 1.0), x)),)


@partials("llvm.log2", "log2", "log2f")
def log2(builder, result, x):
    """d log2 x = 1 / (x ln 2)"""
    return (reciprocal(builder, builder.fmul(x, constant(builder, x, _NATURAL_LOG_2))),)


@partials("llvm.log10", "log10", "log10f")
def log10(builder, result, x):
    """d log10 x = 1 / (x ln 10)"""
    return (reciprocal(builder, builder.fmul(x, constant(builder, x, _NATURAL_LOG_10))),)


# ---------------------------------------------------------------- powers and roots

@partials("llvm.sqrt", "sqrt", "sqrtf")
def sqrt(builder, result, x):
    """d sqrt x = 1 / (2 sqrt x)"""
    return (builder.fdiv(constant(builder, x, 0.5), result),)


@partials("cbrt", "cbrtf")
def cbrt(builder, result, x):
    """d x^(1/3) = 1 / (3 cbrt(x)^2); written with the result so x = 0 gives inf, not nan"""
    return (reciprocal(builder, builder.fmul(constant(builder, x, 3.0), square(builder, result))),)


@partials("llvm.pow", "pow", "powf")
def power(builder, result, x, y):
    """d x^y = y x^(y-1) dx + x^y log(x) dy.

    At x = 0 the second term is 0 * -inf in floating point; its limit from
    the right (the only side where pow is real for non-integer y) is 0. At
    y = 0 the first is 0 * x^-1, NaN at x = 0, where x^0 = 1 is constant: 0.
    """
    zero = constant(builder, x, 0.0)
    y_minus_one = builder.fsub(y, constant(builder, y, 1.0))
    base_partial = builder.fmul(y, builder.call_intrinsic("llvm.pow", x, y_minus_one))
    exponent_is_zero = builder.fcmp("oeq", y, zero)
    exponent_partial = builder.fmul(result, builder.call_intrinsic("llvm.log", x))
    base_is_zero = builder.fcmp("oeq", x, zero)
    return (builder.select(exponent_is_zero, zero, base_partial), builder.select(base_is_zero, zero, exponent_partial))


@partials("llvm.powi")
def powi(builder, result, x, exponent):
    """d x^n = n x^(n-1); the integer exponent carries no derivative.

    x^(n-1) goes through llvm.pow, not llvm.powi: a powi with a variable
    exponent becomes a call to compiler-rt's `__powidf2`, which the JIT
    process does not have. pow is exact enough and defined for negative x at
    integral exponents. x^0 = 1 is constant: partial 0, also at x = 0 (where
    0 * 0^-1 would be NaN).
    """
    exponent_as_float = builder.cast("sitofp", exponent, x.type)
    exponent_minus_one = builder.fsub(exponent_as_float, constant(builder, x, 1.0))
    partial = builder.fmul(exponent_as_float, builder.call_intrinsic("llvm.pow", x, exponent_minus_one))
    exponent_is_zero = builder.icmp("eq", exponent, constant_int(exponent.type, 0))
    return (builder.select(exponent_is_zero, constant(builder, x, 0.0), partial), None)


@partials("hypot", "hypotf")
def hypot(builder, result, x, y):
    """d sqrt(x^2 + y^2) = (x dx + y dy) / hypot; 0 at the origin (the cone's tip has no
    derivative; 0 is its smallest subgradient, and 0 / 0 would make every derivative NaN that a
    zero tangent or adjoint passes through: forward and reverse mode would disagree there)"""
    zero = constant(builder, x, 0.0)
    at_origin = builder.fcmp("oeq", result, zero)
    return (builder.select(at_origin, zero, builder.fdiv(x, result)),
            builder.select(at_origin, zero, builder.fdiv(y, result)))


@partials("llvm.fma", "llvm.fmuladd", "fma", "fmaf")
def fma(builder, result, x, y, z):
    """d (x y + z) = y dx + x dy + dz"""
    return (y, x, constant(builder, z, 1.0))


# ---------------------------------------------------------------- sign and magnitude

@partials("llvm.fabs", "fabs", "fabsf")
def fabs(builder, result, x):
    """d |x| = sign(x), taken from the sign bit (+1 at +0, -1 at -0)"""
    return (builder.call_intrinsic("llvm.copysign", constant(builder, x, 1.0), x),)


@partials("llvm.copysign", "copysign", "copysignf")
def copysign(builder, result, magnitude, sign):
    """copysign(m, s) = |m| sign(s): d/dm = sign(m) sign(s); the sign operand only
    contributes its sign bit, so it has no derivative."""
    one = constant(builder, magnitude, 1.0)
    sign_of_magnitude = builder.call_intrinsic("llvm.copysign", one, magnitude)
    sign_of_sign = builder.call_intrinsic("llvm.copysign", one, sign)
    return (builder.fmul(sign_of_magnitude, sign_of_sign), None)


# ---------------------------------------------------------------- rounding: piecewise constant

@partials("llvm.floor", "floor", "floorf")
def floor(builder, result, x):
    return (None,)


@partials("llvm.ceil", "ceil", "ceilf")
def ceil(builder, result, x):
    return (None,)


@partials("llvm.trunc", "trunc", "truncf")
def trunc(builder, result, x):
    return (None,)


@partials("llvm.round", "round", "roundf")
def round_half_away(builder, result, x):
    return (None,)


@partials("llvm.roundeven", "roundeven", "roundevenf")
def roundeven(builder, result, x):
    return (None,)


@partials("llvm.rint", "rint", "rintf")
def rint(builder, result, x):
    return (None,)


@partials("llvm.nearbyint", "nearbyint", "nearbyintf")
def nearbyint(builder, result, x):
    return (None,)


# ---------------------------------------------------------------- minimum and maximum

@choices("llvm.minnum", "llvm.maxnum", "llvm.minimum", "llvm.maximum",
         "llvm.minimumnum", "llvm.maximumnum", "fmin", "fminf", "fmax", "fmaxf")
def minimum_maximum(builder, result, x, y):
    """The result is one of the operands: the derivative is the returned operand's.

    "y was returned" is `result == y`: that is right for every NaN convention
    of the six intrinsics (a NaN operand never compares equal). At a tie it
    credits y alone, a valid one-sided derivative, and the one the program
    meant in the common case: LLVM makes maxnum(x, y) / minnum(x, y) of the
    strict selects `x > y ? x : y` / `x < y ? x : y` (fast-math C), which
    return y at a tie. numba lowers Python's min/max and np.minimum/np.fmin
    to fcmp + select (see `select`); the pre-AD pipeline keeps such selects
    (`keep_select_choices`), so there a tie follows the program's own branch.
    """
    y_returned = builder.fcmp("oeq", result, y)
    return (builder.binary("xor", y_returned, constant_int(I1, 1)), y_returned)


# ---------------------------------------------------------------- exponent manipulation

@partials("llvm.ldexp", "ldexp", "ldexpf", "numba_ldexp", "numba_ldexpf")
def ldexp(builder, result, x, exponent):
    """d (x 2^n) = 2^n = ldexp(1, n); the integer exponent has no derivative.

    numba's math.ldexp calls its helper `numba_ldexp(f)`.
    """
    return (call_float_integer_intrinsic(builder, "llvm.ldexp", constant(builder, x, 1.0), exponent), None)


@partials("nextafter", "nextafterf", "numba_nextafter", "numba_nextafterf")
def nextafter(builder, result, x, toward):
    """nextafter(x, t) is x moved by one ulp: locally x plus a piecewise constant.

    numba's np.nextafter / np.spacing call its helper `numba_nextafter(f)`.
    """
    return (constant(builder, x, 1.0), None)


@partials("frexp", "frexpf", "numba_frexp", "numba_frexpf")
def frexp(builder, result, x, exponent_pointer):
    """frexp(x, &e) = x 2^-e with e piecewise constant: d/dx = 2^-e = result / x (exact: a power of two).

    The call also stores e through the pointer, but e is an integer: the store
    moves no derivative, so a scalar rule is enough. At x = 0 (e = 0) the
    partial is 2^0 = 1. numba's math.frexp calls its helper `numba_frexp(f)`.
    """
    zero = constant(builder, x, 0.0)
    scale = builder.fdiv(result, x)
    return (builder.select(builder.fcmp("oeq", x, zero), constant(builder, x, 1.0), scale), None)
