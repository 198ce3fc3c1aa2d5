"""Kernels exercising the `math` module, powers and `abs`, each fed with
arguments inside the domain of every function it calls."""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def trigonometric_sum(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.sin(x[i]) * math.cos(x[i]) + math.tan(0.5 * x[i])
    return total


@numba.njit
def inverse_trigonometric_sum(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.asin(x[i]) + math.acos(x[i]) * math.atan(y[i]) + math.atan2(y[i], x[i] + 2.0)
    return total


@numba.njit
def hyperbolic_sum(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.sinh(x[i]) + math.cosh(x[i]) * math.tanh(x[i])
    return total


@numba.njit
def inverse_hyperbolic_sum(x, y):
    # x lies in (-0.9, 0.9) for atanh, y in (1.1, 3) for acosh.
    total = 0.0
    for i in range(x.shape[0]):
        total += math.asinh(x[i]) + math.acosh(y[i]) + math.atanh(x[i])
    return total


@numba.njit
def exponential_and_logarithm_sum(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.exp(x[i]) + math.expm1(0.1 * x[i]) + math.log(x[i])
        total += math.log1p(x[i]) + math.log2(x[i]) * math.log10(x[i] + 1.0)
    return total


@numba.njit
def roots_and_powers(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.sqrt(x[i]) + math.pow(x[i], 1.5) + math.pow(x[i], y[i])
        total += x[i] ** 2 + x[i] ** 0.5 + x[i] ** y[i]
    return total


@numba.njit
def integer_power_sum(x, exponent):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] ** exponent
    return total


@numba.njit
def constant_integer_powers(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] ** 3 - 0.5 * x[i] ** 4 + x[i] ** -2
    return total


@numba.njit
def hypotenuse_and_absolute(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.hypot(x[i], y[i]) + abs(x[i]) * math.fabs(y[i])
        total += math.copysign(x[i], y[i])
    return total


@numba.njit
def error_and_gamma_functions(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += math.erf(x[i]) + math.erfc(0.5 * x[i]) + math.gamma(x[i]) + math.lgamma(x[i] + 1.0)
    return total


@numba.njit
def fractional_parts(x, period):
    # The rounding functions are piecewise constant: arguments avoid integers.
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] - math.floor(x[i])
        total += math.ceil(x[i]) - x[i]
        total += x[i] - math.trunc(x[i])
        # numba has no math.fmod; np.fmod on scalars is the supported spelling.
        total += np.fmod(x[i], period) + x[i] % period
    return total


@numba.njit
def scalar_polar_angle_and_radius(x, y):
    return math.atan2(y, x) * math.hypot(x, y) + math.exp(-x * x)


@numba.njit
def logistic_log_likelihood(x, labels):
    total = 0.0
    for i in range(x.shape[0]):
        probability = 1.0 / (1.0 + math.exp(-x[i]))
        total += labels[i] * math.log(probability) + (1.0 - labels[i]) * math.log1p(-probability)
    return total


@numba.njit
def cube_roots_of_both_signs(x):
    # np.cbrt evaluates pow for both signs and selects one: the discarded
    # branch is NaN, and its derivative must not leak into the gradient.
    total = 0.0
    for i in range(x.shape[0]):
        total += np.cbrt(x[i]) * x[i]
    return total


def _signed_away_from_zero(rng, size):
    # abs, fabs and copysign have kinks at zero; keep the samples clear of it.
    return rng.uniform(0.1, 1.0, size) * rng.choice([-1.0, 1.0], size)


CASES = [
    Case(
        name="math_trigonometric",
        func=trigonometric_sum,
        make_args=lambda rng: (rng.uniform(-1.2, 1.2, 24),),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_inverse_trigonometric",
        func=inverse_trigonometric_sum,
        make_args=lambda rng: (rng.uniform(-0.9, 0.9, 20), rng.uniform(-2.0, 2.0, 20)),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_hyperbolic",
        func=hyperbolic_sum,
        make_args=lambda rng: (rng.uniform(-2.0, 2.0, 20),),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_inverse_hyperbolic",
        func=inverse_hyperbolic_sum,
        make_args=lambda rng: (rng.uniform(-0.9, 0.9, 16), rng.uniform(1.1, 3.0, 16)),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_exponential_and_logarithm",
        func=exponential_and_logarithm_sum,
        make_args=lambda rng: (rng.uniform(0.1, 3.0, 20),),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_roots_and_powers",
        func=roots_and_powers,
        make_args=lambda rng: (rng.uniform(0.2, 2.0, 16), rng.uniform(-1.5, 1.5, 16)),
        tags=frozenset({"loop", "math", "pow"}),
    ),
    Case(
        name="math_integer_power_argument",
        func=integer_power_sum,
        make_args=lambda rng: (rng.uniform(-1.5, 1.5, 16), 3),
        sig="float64(float64[::1], int64)",
        tags=frozenset({"loop", "math", "pow"}),
    ),
    Case(
        name="math_constant_integer_powers",
        func=constant_integer_powers,
        make_args=lambda rng: (rng.uniform(0.5, 1.5, 16),),
        tags=frozenset({"loop", "math", "pow"}),
    ),
    Case(
        name="math_hypot_abs_fabs_copysign",
        func=hypotenuse_and_absolute,
        make_args=lambda rng: (_signed_away_from_zero(rng, 16), _signed_away_from_zero(rng, 16)),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_error_and_gamma_functions",
        func=error_and_gamma_functions,
        make_args=lambda rng: (rng.uniform(0.5, 4.0, 16),),
        tags=frozenset({"loop", "math"}),
    ),
    Case(
        name="math_floor_ceil_trunc_fmod",
        func=fractional_parts,
        make_args=lambda rng: (rng.uniform(0.1, 0.9, 16) + rng.integers(-3, 4, 16), 0.75),
        tags=frozenset({"loop", "math", "rounding"}),
    ),
    Case(
        name="math_scalar_polar",
        func=scalar_polar_angle_and_radius,
        make_args=lambda rng: (float(rng.uniform(0.5, 2.0)), float(rng.uniform(-2.0, 2.0))),
        sig="float64(float64, float64)",
        tags=frozenset({"math"}),
    ),
    Case(
        name="math_cbrt_both_signs",
        func=cube_roots_of_both_signs,
        make_args=lambda rng: (_signed_away_from_zero(rng, 16),),
        tags=frozenset({"loop", "math", "select"}),
    ),
    Case(
        name="math_logistic_log_likelihood",
        func=logistic_log_likelihood,
        make_args=lambda rng: (rng.uniform(-3.0, 3.0, 32), rng.integers(0, 2, 32).astype(float)),
        tags=frozenset({"loop", "math"}),
    ),
]
