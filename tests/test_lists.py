"""Lists beyond the corpus (tests/kernels/lists.py): what is refused, and what stays untouched."""

import numba
import numpy as np
import pytest

from enzpy import DifferentiationError, Duplicated, differentiate


def typed_list_of_arrays(x):
    parts = numba.typed.List()
    for i in range(3):
        parts.append(x * (i + 1.0))
    total = 0.0
    for part in parts:
        total += np.sum(part * part)
    return total


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_a_typed_list_of_arrays_is_refused_by_name(mode):
    # Its items are array structs: without a rule the derivative would silently be 0.
    kernel = differentiate(typed_list_of_arrays)
    with pytest.raises(DifferentiationError, match=r"l\.append\(v\) \(numba\.typed\.List\)"):
        if mode == "reverse":
            kernel.value_and_grad(np.ones(3))
        else:
            kernel.jvp([np.ones(3)], [np.ones(3)])


def reflected_list_growing_and_shrinking(x):
    stack = []
    for round_ in range(3):
        for v in x:
            stack.append(v * (round_ + 1.0))
        while len(stack) > 2:
            top = stack.pop()
            stack[-1] += np.sin(top)
    return stack[0] * stack[1]


def test_lists_that_grow_and_shrink_repeatedly_match_finite_differences_and_keep_the_input():
    x = np.array([0.3, -0.7, 1.1, 0.5])
    kept = x.copy()
    kernel = differentiate(reflected_list_growing_and_shrinking)
    value, (gradient,) = kernel.value_and_grad(x)
    np.testing.assert_array_equal(x, kept)
    primal = numba.njit(reflected_list_growing_and_shrinking)
    step = 1e-4
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = step
        values = [primal(x + s * e) for s in (-2, -1, 1, 2)]
        finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
        assert gradient[i] == pytest.approx(finite_difference, rel=1e-7, abs=1e-9)
    tangent = kernel.autodiff(Duplicated(x.copy(), np.eye(4)[1]), mode="forward")
    assert tangent == pytest.approx(gradient[1], rel=1e-12)
