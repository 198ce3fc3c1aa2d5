"""enzpy.autodiff called inside @njit code: the same derivatives as from Python, no Python on the path."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import enzpy
from enzpy import Active, Const, Duplicated


@numba.njit
def loss(x, alpha, weights):
    total = 0.0
    for i in range(x.shape[0]):
        total += weights[i] * (alpha * x[i] ** 2 + np.sin(x[i] * alpha))
    return total


@numba.njit
def descend(x, dx, alpha, weights, steps):
    alphas = 0.0
    for _ in range(steps):
        dx[:] = 0.0
        (d_alpha,) = enzpy.autodiff(loss, Duplicated(x, dx), Active(alpha), Const(weights))
        x -= 0.1 * dx
        alphas += d_alpha
    return alphas


def test_reverse_mode_inside_njit_matches_python_calls():
    rng = np.random.default_rng(0)
    x, weights = rng.uniform(-1, 1, 12), rng.uniform(0.5, 1.5, 12)
    expected_x, expected_alphas = x.copy(), 0.0
    gradient = enzpy.differentiate(loss)
    for _ in range(5):
        dx = np.zeros(12)
        (d_alpha,) = gradient.autodiff(Duplicated(expected_x, dx), Active(0.7), Const(weights))
        expected_x -= 0.1 * dx
        expected_alphas += d_alpha
    alphas = descend(x, np.zeros(12), 0.7, weights, 5)
    np.testing.assert_allclose(x, expected_x, rtol=1e-14)
    assert alphas == pytest.approx(expected_alphas, rel=1e-14)


@numba.njit
def directional(x, tx, alpha, t_alpha, weights):
    return enzpy.autodiff(loss, Duplicated(x, tx), Duplicated(alpha, t_alpha), Const(weights), mode="forward")


def test_forward_mode_inside_njit_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, tx, weights = rng.uniform(-1, 1, 9), rng.uniform(-1, 1, 9), rng.uniform(0.5, 1.5, 9)
    h = 1e-3
    f = lambda s: loss(x + s * tx, 0.4 + s * 0.3, weights)  # noqa: E731
    expected = (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)
    assert directional(x, tx.copy(), 0.4, 0.3, weights) == pytest.approx(expected, rel=1e-9)


wrapped = enzpy.differentiate(loss)


@numba.njit
def through_differentiable_object(x, dx, weights):
    return enzpy.autodiff(wrapped, Duplicated(x, dx), Const(0.5), Const(weights))


def test_a_differentiate_object_and_const_arguments_work_in_njit():
    x, weights = np.linspace(-1, 1, 7), np.ones(7)
    dx = np.zeros(7)
    assert through_differentiable_object(x, dx, weights) == ()
    expected = np.zeros(7)
    wrapped.autodiff(Duplicated(x, expected), Const(0.5), Const(weights))
    np.testing.assert_allclose(dx, expected, rtol=1e-15)


@numba.njit
def with_wrong_shadow(x, dx):
    return enzpy.autodiff(loss, Duplicated(x, dx), Active(1.0), Const(x))


def test_a_shadow_of_another_shape_raises():
    with pytest.raises(ValueError, match="shadow of argument 0"):
        with_wrong_shadow(np.ones(5), np.zeros(4))


@numba.njit
def checked_root(x):
    if x[0] < 0.0:
        raise ValueError("negative")
    return np.sqrt(x[0])


@numba.njit
def differentiate_checked_root(x, dx):
    return enzpy.autodiff(checked_root, Duplicated(x, dx))


def test_a_raising_kernel_raises_in_the_caller():
    dx = np.zeros(1)
    differentiate_checked_root(np.array([4.0]), dx)
    assert dx[0] == pytest.approx(0.25)
    with pytest.raises(RuntimeError, match="checked_root"):
        differentiate_checked_root(np.array([-4.0]), np.zeros(1))


def test_enzpy_autodiff_in_python_is_differentiate_autodiff():
    x, dx = np.linspace(0, 1, 5), np.zeros(5)
    (d_alpha,) = enzpy.autodiff(loss, Duplicated(x, dx), Active(0.3), Const(np.ones(5)))
    expected = np.zeros(5)
    (expected_alpha,) = enzpy.differentiate(loss).autodiff(Duplicated(x, expected), Active(0.3), Const(np.ones(5)))
    assert d_alpha == expected_alpha and np.array_equal(dx, expected)
