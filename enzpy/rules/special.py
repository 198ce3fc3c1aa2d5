"""Partials of the special functions: erf, erfc, gamma, lgamma, and the digamma they need.

Neither LLVM nor libm has a digamma, so `digamma` emits one into the module
being differentiated, once, as an internal function (`enzpy.digamma.f64`;
the float version widens to double, calls it and narrows).
"""

from __future__ import annotations

import math

from ..ir import core
from ..ir.builder import Builder
from ..ir.types import DOUBLE, FunctionType
from .common import constant
from .registry import partials

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

# psi(z) ~ log z - 1/(2z) - sum_k B_2k / (2k z^2k): the coefficients B_2k / 2k
# for k = 1..7. From z >= 6 on, the first omitted term (B_16 / 16 z^16) is
# below 2e-13, i.e. within a few ulps of psi(6) = 1.7.
_ASYMPTOTIC_COEFFICIENTS = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)
_ASYMPTOTIC_THRESHOLD = 6.0


@partials("erf", "erff")
def erf(builder, result, x):
    """d erf x = 2/sqrt(pi) exp(-x^2)"""
    return (_gaussian(builder, x, _TWO_OVER_SQRT_PI),)


@partials("erfc", "erfcf")
def erfc(builder, result, x):
    """d erfc x = -2/sqrt(pi) exp(-x^2)"""
    return (_gaussian(builder, x, -_TWO_OVER_SQRT_PI),)


def _gaussian(builder, x, scale: float):
    exponential = builder.call_intrinsic("llvm.exp", builder.fneg(builder.fmul(x, x)))
    return builder.fmul(constant(builder, x, scale), exponential)


@partials("tgamma", "tgammaf", "numba_gamma", "numba_gammaf")
def gamma(builder, result, x):
    """d Gamma(x) = Gamma(x) psi(x). numba's math.gamma calls its helper `numba_gamma(f)`."""
    return (builder.fmul(result, digamma(builder, x)),)


@partials("lgamma", "lgammaf")
def lgamma(builder, result, x):
    """d log|Gamma(x)| = psi(x), on both sides of zero."""
    return (digamma(builder, x),)


# ---------------------------------------------------------------- digamma

def digamma(builder: Builder, x: core.Value) -> core.Value:
    """psi(x) at the builder's insertion point, via `enzpy.digamma.<f64|f32>`."""
    return builder.call(digamma_function(builder.module, x.type), [x])


def digamma_function(module: core.Module, float_type) -> core.Function:
    """The module's digamma for `float_type`, defined on first request."""
    suffix = {"double": "f64", "float": "f32"}.get(float_type.kind)
    if suffix is None:
        raise NotImplementedError(f"digamma is only emitted for double and float, not {float_type}")
    name = f"enzpy.digamma.{suffix}"
    existing = module.functions.get(name)
    if existing is not None:
        return existing
    function = _new_internal_function(module, name, float_type)
    builder = Builder(module).at_end(function.append_block("entry"))
    if float_type == DOUBLE:
        builder.ret(_digamma_body(builder, function))
    else:
        # Narrow types get the double computation: one algorithm, full float accuracy.
        wide = builder.call(digamma_function(module, DOUBLE),
                            [builder.cast("fpext", function.arguments[0], DOUBLE)])
        builder.ret(builder.cast("fptrunc", wide, float_type))
    return function


def _new_internal_function(module, name, float_type) -> core.Function:
    function = core.Function(name, FunctionType(float_type, (float_type,)), ["x"])
    function.linkage = "internal"
    # Pure, so unused partials (of inactive operands) are deleted by the optimizer.
    function.attributes = ("nounwind", "willreturn", "memory(none)")
    return module.add_function(function)


def _digamma_body(builder: Builder, function: core.Function) -> core.Value:
    """Reflection for x < 0, recurrence up to z >= 6, asymptotic series; NaN at the poles."""
    x = function.arguments[0]

    def number(value):
        return builder.float_constant(DOUBLE, value)

    entry = builder.block
    reflect = function.append_block("reflect")
    join = function.append_block("join")
    loop = function.append_block("loop")
    step = function.append_block("step")
    series = function.append_block("series")

    # psi(x) = psi(1 - x) - pi cot(pi x) moves negative x to 1 - x > 1.
    negative = builder.fcmp("olt", x, number(0.0))
    start = builder.select(negative, builder.fsub(number(1.0), x), x)
    builder.cond_br(negative, reflect, join)

    builder.at_end(reflect)
    angle = builder.fmul(number(math.pi), x)
    cotangent = builder.fdiv(builder.call_intrinsic("llvm.cos", angle), builder.call_intrinsic("llvm.sin", angle))
    reflection_term = builder.fmul(number(math.pi), cotangent)
    builder.br(join)

    builder.at_end(join)
    correction = _phi(builder, [(number(0.0), entry), (reflection_term, reflect)])
    builder.br(loop)

    # psi(z) = psi(z + 1) - 1/z until z is large enough for the series.
    builder.at_end(loop)
    z = _phi(builder, [(start, join)])
    recurrence_sum = _phi(builder, [(number(0.0), join)])
    small = builder.fcmp("olt", z, number(_ASYMPTOTIC_THRESHOLD))
    builder.cond_br(small, step, series)

    builder.at_end(step)
    _add_incoming(recurrence_sum, builder.fadd(recurrence_sum, builder.fdiv(number(1.0), z)), step)
    _add_incoming(z, builder.fadd(z, number(1.0)), step)
    builder.br(loop)

    builder.at_end(series)
    inverse_square = builder.fdiv(number(1.0), builder.fmul(z, z))
    tail = number(0.0)
    for coefficient in reversed(_ASYMPTOTIC_COEFFICIENTS):       # Horner in 1/z^2
        tail = builder.fmul(builder.fadd(tail, number(coefficient)), inverse_square)
    psi = builder.fsub(builder.call_intrinsic("llvm.log", z), builder.fdiv(number(0.5), z))
    psi = builder.fsub(builder.fsub(builder.fsub(psi, tail), recurrence_sum), correction)

    # Poles at 0, -1, -2, ...: the reflection would give a huge finite number there.
    non_positive = builder.fcmp("ole", x, number(0.0))
    integral = builder.fcmp("oeq", builder.call_intrinsic("llvm.floor", x), x)
    at_pole = builder.binary("and", non_positive, integral)
    return builder.select(at_pole, number(math.nan), psi)


def _phi(builder: Builder, incoming) -> core.Phi:
    phi = builder.phi(incoming[0][0].type)
    for value, block in incoming:
        _add_incoming(phi, value, block)
    return phi


def _add_incoming(phi: core.Phi, value: core.Value, block: core.Block) -> None:
    phi.operands.append(value)
    phi.incoming_blocks.append(block)
