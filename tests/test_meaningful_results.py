"""No meaningless results: a derivative that cannot mean anything raises, and activity is
"varied and useful" (nothing is active when no argument is)."""

import numpy as np
import pytest

from enzpy import Active, Const, DifferentiationError, Duplicated, differentiate


def _writes_squares(x, y):
    for i in range(x.shape[0]):
        y[i] = x[i] * x[i]


def _counts_positive(x):
    count = 0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            count += 1
    return count


def _weighted_sum(x, s):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * s
    return total


def test_value_and_grad_of_a_kernel_without_result_raises_and_points_to_autodiff():
    kernel = differentiate(_writes_squares)
    y = np.zeros(3)
    with pytest.raises(DifferentiationError, match="returns nothing.*autodiff with Duplicated"):
        kernel.value_and_grad(np.ones(3), y)
    with pytest.raises(DifferentiationError, match="returns nothing"):
        kernel.grad(np.ones(3), y)
    assert not y.any(), "the kernel must not run before the refusal"
    # What the message points to works: the shadow of x receives 2 x * (adjoint of y).
    x, dx = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    kernel.autodiff(Duplicated(x, dx), Duplicated(np.zeros(3), np.ones(3)))
    assert np.array_equal(dx, 2 * x)


def test_value_and_grad_of_an_integer_result_raises():
    with pytest.raises(DifferentiationError, match="returns int64"):
        differentiate(_counts_positive).value_and_grad(np.array([1.0, -1.0]))


def test_all_const_call_has_no_active_instruction():
    kernel = differentiate(_weighted_sum)
    constant = kernel.explain(Const(np.ones(3)), Const(2.0))
    assert constant.active_instructions == [], constant.active_instructions
    active = kernel.explain(Duplicated(np.ones(3), np.zeros(3)), Active(2.0))
    assert len(active.active_instructions) >= 3, active      # loads, the product, the sum, the store


# -- bad input to the array-result paths: a clear error naming the leaf or argument, arrays kept

def _bumps_and_returns_a_tuple(x, y):
    y[0] += 1.0
    return np.sin(x) * y[0], x.sum()


def test_a_refused_seed_leaves_the_arguments_as_they_were_and_names_both_shapes():
    kernel = differentiate(_bumps_and_returns_a_tuple)
    x, y = np.linspace(0.1, 1.0, 4), np.ones(3)
    x0, y0 = x.copy(), y.copy()
    with pytest.raises(ValueError, match=r"seed of result\[0\] has shape \(3,\), but the kernel's result\[0\] "
                                         r"has shape \(4,\)"):
        kernel.autodiff(Duplicated(x, np.zeros(4)), Duplicated(y, np.zeros(3)), seed=(np.ones(3), 1.0))
    assert np.array_equal(x, x0) and np.array_equal(y, y0), "the kernel's write into y must be undone"
    with pytest.raises(ValueError, match=r"the result is a tuple of 2, got a tuple of 1"):
        kernel.autodiff(Duplicated(x, np.zeros(4)), Duplicated(y, np.zeros(3)), seed=(np.ones(4),))
    with pytest.raises(ValueError, match=r"shadow of argument 0 \('x'\)"):
        kernel.autodiff(Duplicated(x, np.zeros(5)), Duplicated(y, np.zeros(3)), seed=(np.ones(4), 1.0))
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    # The right seed still works afterwards and gives the derivative.
    dx = np.zeros(4)
    kernel.autodiff(Duplicated(x, dx), Duplicated(y, np.zeros(3)), seed=(np.ones(4), 0.0))
    assert np.allclose(dx, np.cos(x0) * 2.0)


def test_a_bad_cotangent_names_its_leaf_and_the_pullback_still_works():
    kernel = differentiate(_bumps_and_returns_a_tuple)
    x, y = np.linspace(0.1, 1.0, 4), np.ones(3)
    _, pullback = kernel.vjp(x, y)
    with pytest.raises(ValueError, match=r"cotangent of result\[1\] must be a real number, got 'a'"):
        pullback((np.ones(4), "a"))
    with pytest.raises(ValueError, match=r"cotangent of result\[0\] must be a real array of shape \(4,\)"):
        pullback((np.ones(3), 1.0))
    gradient_x, _ = pullback((np.zeros(4), 1.0))
    assert np.allclose(gradient_x, 1.0)
