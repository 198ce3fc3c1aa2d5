"""Custom derivative rules (enzpy.custom_vjp): a kernel calling the function uses the user's rule,
in reverse mode (defvjp) and forward mode (defjvp), checked against finite differences away from
where the rule differs from the function's own derivative on purpose."""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numba
import numpy as np
import pytest

import enzpy
from enzpy import Active, Const, Duplicated


def _finite_difference(f, x, direction, h=1e-5):
    return (-f(x + 2 * h * direction) + 8 * f(x + h * direction) - 8 * f(x - h * direction)
            + f(x - 2 * h * direction)) / (12 * h)


# -- a norm that is differentiable at zero (its own derivative there is NaN)

@enzpy.custom_vjp
@numba.njit
def safe_norm(x):
    return np.sqrt(np.sum(x * x))


def _norm_fwd(x):
    n = np.sqrt(np.sum(x * x))
    return n, (x, n)


def _norm_bwd(residuals, cotangent):
    x, n = residuals
    if n == 0.0:
        return (np.zeros_like(x),)
    return (cotangent * x / n,)


def _norm_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    n = np.sqrt(np.sum(x * x))
    return n, (np.sum(x * t) / n if n > 0.0 else 0.0)


safe_norm.defvjp(_norm_fwd, _norm_bwd).defjvp(_norm_jvp)


@numba.njit
def penalized(x, weight):
    return weight * safe_norm(x) + np.sum(x * x * x)


def test_a_rule_replaces_the_function_in_reverse_mode():
    kernel = enzpy.differentiate(penalized)
    x = np.array([0.3, -1.2, 2.0])
    dx = np.zeros(3)
    (d_weight,) = kernel.autodiff(Duplicated(x, dx), Active(0.7))
    direction = np.array([0.5, 1.0, -0.25])
    expected = _finite_difference(lambda y: penalized(y, 0.7), x, direction)
    assert dx @ direction == pytest.approx(expected, rel=1e-9)
    assert d_weight == pytest.approx(np.linalg.norm(x), rel=1e-14)
    zero, d_zero = np.zeros(3), np.zeros(3)
    kernel.autodiff(Duplicated(zero, d_zero), Active(0.7))
    assert np.array_equal(d_zero, np.zeros(3)), "the rule's value at zero, not NaN"


def test_a_rule_replaces_the_function_in_forward_mode_and_agrees_with_reverse():
    kernel = enzpy.differentiate(penalized)
    x, direction = np.array([1.0, 2.0, -0.5]), np.array([0.2, -0.4, 1.0])
    tangent = kernel.autodiff(Duplicated(x, direction.copy()), Const(0.7), mode="forward")
    dx = np.zeros(3)
    kernel.autodiff(Duplicated(x, dx), Const(0.7))
    assert tangent == pytest.approx(dx @ direction, rel=1e-13)
    assert kernel.autodiff(Duplicated(np.zeros(3), direction.copy()), Const(0.7), mode="forward") == 0.0


# -- a numerically stable log-sum-exp

@enzpy.custom_vjp
@numba.njit
def log_sum_exp(x):
    top = np.max(x)
    return top + np.log(np.sum(np.exp(x - top)))


def _lse_fwd(x):
    top = np.max(x)
    value = top + np.log(np.sum(np.exp(x - top)))
    return value, (x, value)


def _lse_bwd(residuals, cotangent):
    x, value = residuals
    return (cotangent * np.exp(x - value),)


log_sum_exp.defvjp(_lse_fwd, _lse_bwd)


@numba.njit
def soft_maximum(x, temperature):
    return temperature * log_sum_exp(x / temperature)


def test_a_stable_rule_at_values_where_exp_overflows():
    kernel = enzpy.differentiate(soft_maximum)
    x = np.array([800.0, 801.0, 799.5])                # exp(800) overflows
    dx = np.zeros(3)
    (d_temperature,) = kernel.autodiff(Duplicated(x, dx), Active(1.0))
    softmax = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    np.testing.assert_allclose(dx, softmax, rtol=1e-13)
    h = 1e-5
    f = lambda t: soft_maximum(x, t)  # noqa: E731
    expected = (-f(1 + 2 * h) + 8 * f(1 + h) - 8 * f(1 - h) + f(1 - 2 * h)) / (12 * h)
    assert d_temperature == pytest.approx(expected, rel=1e-7)


# -- a straight-through estimator

@enzpy.custom_vjp
@numba.njit
def quantize(x, step):
    return np.round(x / step) * step


quantize.defvjp(lambda x, step: (np.round(x / step) * step, 0.0),
                lambda residuals, cotangent: (cotangent, 0.0))


@numba.njit
def quantized_energy(x):
    total = 0.0
    for i in range(x.shape[0]):
        q = quantize(x[i], 0.25)
        total += q * q
    return total


def test_a_straight_through_rule_passes_the_cotangent_on():
    x = np.array([0.1, 0.6, -0.9])
    dx = np.zeros(3)
    enzpy.differentiate(quantized_energy).autodiff(Duplicated(x, dx))
    np.testing.assert_allclose(dx, 2 * np.round(x / 0.25) * 0.25, rtol=1e-15)


# -- a call into a C library (ctypes) made differentiable

_libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_c_erf = _libm.erf
_c_erf.restype, _c_erf.argtypes = ctypes.c_double, [ctypes.c_double]


@enzpy.custom_vjp
@numba.njit
def library_erf(x):
    return _c_erf(x)


library_erf.defvjp(lambda x: (_c_erf(x), x),
                   lambda x, cotangent: (cotangent * 2.0 / math.sqrt(math.pi) * math.exp(-x * x),))


@numba.njit
def erf_sum(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += library_erf(x[i] * 0.5)
    return total


def test_a_ctypes_call_made_differentiable():
    x = np.array([0.2, -1.0, 1.7])
    dx = np.zeros(3)
    enzpy.differentiate(erf_sum).autodiff(Duplicated(x, dx))
    expected = np.array([_finite_difference(lambda y: erf_sum(y), x, e) for e in np.eye(3)])
    np.testing.assert_allclose(dx, expected, rtol=1e-9)


# -- an implicit-function rule for an inner fixed-point solve

@enzpy.custom_vjp
@numba.njit
def fixed_point(a):
    """x = cos(a x), by iteration."""
    x = 1.0
    for _ in range(200):
        x = math.cos(a * x)
    return x


def _fixed_point_bwd(residuals, cotangent):
    x, a = residuals
    # F(x, a) = x - cos(a x) = 0: dx/da = -F_a / F_x
    return (cotangent * -x * math.sin(a * x) / (1.0 + a * math.sin(a * x)),)


fixed_point.defvjp(lambda a: (fixed_point(a), (fixed_point(a), a)), _fixed_point_bwd)


@numba.njit
def fixed_point_objective(a, weight):
    x = fixed_point(a)
    return weight * x * x


def test_an_implicit_function_rule_for_a_fixed_point_solve():
    d_a, d_weight = enzpy.differentiate(fixed_point_objective).autodiff(Active(0.8), Active(1.5))
    h = 1e-5
    f = lambda a: fixed_point_objective(a, 1.5)  # noqa: E731
    expected = (-f(0.8 + 2 * h) + 8 * f(0.8 + h) - 8 * f(0.8 - h) + f(0.8 - 2 * h)) / (12 * h)
    assert d_a == pytest.approx(expected, rel=1e-8)
    assert d_weight == pytest.approx(fixed_point(0.8) ** 2, rel=1e-14)


def test_a_rule_without_defvjp_is_named():
    @enzpy.custom_vjp
    @numba.njit
    def undefined_rule(x):
        return x * x

    @numba.njit
    def calls_it(x):
        return undefined_rule(x) + 1.0

    with pytest.raises(enzpy.DifferentiationError, match="defvjp"):
        enzpy.differentiate(calls_it).autodiff(Active(2.0))


@numba.njit
def norm_then_overwrite(x):
    n = safe_norm(x)
    for i in range(x.shape[0]):
        x[i] = 2.0 * x[i]          # after the call: the rule must see x as the call read it
    return n + np.sum(x)


def test_the_rule_sees_the_arguments_as_the_call_read_them():
    x = np.array([1.0, -2.0, 2.0])
    dx = np.zeros(3)
    enzpy.differentiate(norm_then_overwrite).autodiff(Duplicated(x.copy(), dx))
    np.testing.assert_allclose(dx, x / np.linalg.norm(x) + 2.0, rtol=1e-14)
