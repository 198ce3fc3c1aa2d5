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
