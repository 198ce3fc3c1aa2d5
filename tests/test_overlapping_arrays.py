"""Arguments that share memory (`y[1:]` and `y[:-1]`): the derivative is with respect to
the memory, and every API gives shadows that overlap as the arrays do (enzpy/aliasing.py)."""

import numba
import numpy as np
import pytest

from enzpy import DifferentiationError, Duplicated, differentiate
from enzpy.aliasing import copies_keeping_overlaps, overlap_groups, shadows_like


def weighted_product(a, b):
    total = 0.0
    for i in range(a.size):
        total += a[i] * b[i] * b[i]
    return total


def smooth_then_score(a, b):
    # Writes a, then reads b: where they overlap, b sees the new values.
    for i in range(a.size):
        a[i] = np.sin(a[i]) + 0.5 * a[i]
    total = 0.0
    for i in range(b.size):
        total += b[i] * b[i] * (i + 1.0)
    return total


def neighbours_result(a, b):
    return a * b + np.cos(a)


KERNELS = [weighted_product, smooth_then_score]


def memory_gradient(kernel, y, step=1e-4):
    """The gradient of the kernel as a function of the buffer both views look into."""
    compiled = numba.njit(kernel)

    def value(e, s):
        z = y + s * step * e
        return compiled(z[1:], z[:-1])
    return np.array([(value(e, -2) - 8 * value(e, -1) + 8 * value(e, 1) - value(e, 2)) / (12 * step)
                     for e in np.eye(y.size)])


def neighbours_weighted(a, b, weights):
    return np.sum(weights * (a * b + np.cos(a)))


Y = np.linspace(0.15, 1.2, 7)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.__name__)
def test_value_and_grad_of_overlapping_views_is_the_gradient_of_the_memory(kernel):
    y = Y.copy()
    _, (gradient_a, gradient_b) = differentiate(kernel).value_and_grad(y[1:], y[:-1])
    expected = memory_gradient(kernel, Y)
    np.testing.assert_allclose(gradient_a, expected[1:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gradient_b, expected[:-1], rtol=1e-8, atol=1e-10)
    assert np.shares_memory(gradient_a, gradient_b)       # one derivative per byte


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.__name__)
def test_vjp_reruns_on_copies_that_still_overlap(kernel):
    y = Y.copy()
    _, pullback = differentiate(kernel).vjp(y[1:], y[:-1])
    expected = memory_gradient(kernel, Y)
    for _ in range(2):                                     # the saved copies are not consumed
        gradient_a, gradient_b = pullback(1.0)
        np.testing.assert_allclose(gradient_a, expected[1:], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gradient_b, expected[:-1], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.__name__)
def test_forward_against_reverse_with_overlapping_views(kernel):
    tangent = np.random.default_rng(3).standard_normal(Y.size)
    expected = memory_gradient(kernel, Y) @ tangent
    y = Y.copy()
    _, along = differentiate(kernel).jvp((y[1:], y[:-1]), (tangent[1:], tangent[:-1]))
    assert along == pytest.approx(expected, rel=1e-8)
    y, shadow = Y.copy(), tangent.copy()
    by_autodiff = differentiate(kernel).autodiff(Duplicated(y[1:], shadow[1:]), Duplicated(y[:-1], shadow[:-1]),
                                                  mode="forward")
    assert by_autodiff == pytest.approx(expected, rel=1e-8)
    y, adjoint = Y.copy(), np.zeros(Y.size)
    differentiate(kernel).autodiff(Duplicated(y[1:], adjoint[1:]), Duplicated(y[:-1], adjoint[:-1]))
    assert adjoint @ tangent == pytest.approx(expected, rel=1e-8)


def test_an_array_result_of_overlapping_views():
    cotangent = np.random.default_rng(4).standard_normal(Y.size - 1)
    y = Y.copy()
    _, pullback = differentiate(neighbours_result).vjp(y[1:], y[:-1])
    gradient_a, gradient_b = pullback(cotangent)
    compiled = numba.njit(neighbours_weighted)
    step = 1e-4

    def value(z):
        return compiled(z[1:], z[:-1], cotangent)
    expected = np.array([(value(Y - 2 * step * e) - 8 * value(Y - step * e) + 8 * value(Y + step * e)
                          - value(Y + 2 * step * e)) / (12 * step) for e in np.eye(Y.size)])
    np.testing.assert_allclose(gradient_a, expected[1:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gradient_b, expected[:-1], rtol=1e-8, atol=1e-10)


def test_tangents_that_disagree_on_shared_memory_are_refused():
    y = Y.copy()
    with pytest.raises(ValueError, match=r"argument 0 \('a'\).*shares memory"):
        differentiate(weighted_product).jvp((y[1:], y[:-1]), (np.ones(6), np.zeros(6)))


def test_shadows_that_do_not_overlap_like_the_arrays_are_refused():
    y = Y.copy()
    with pytest.raises(DifferentiationError, match=r"'a'.*'b'.*share memory.*shadows_like"):
        differentiate(weighted_product).autodiff(Duplicated(y[1:], np.zeros(6)), Duplicated(y[:-1], np.zeros(6)))
    np.testing.assert_array_equal(y, Y)


def test_shadows_and_copies_overlap_as_the_arrays_do():
    base = np.arange(12.0).reshape(3, 4)
    arrays = [base[:, 1:], base[:, :-1], base.T[::-1], np.ones(3)]
    assert sorted(map(sorted, overlap_groups(arrays))) == [[0, 1, 2], [3]]
    shadows = shadows_like(arrays)
    shadows[0][...] = 1.0                   # seen through the other views where they overlap
    assert shadows[1][0, 1] == 1.0 and shadows[1][0, 0] == 0.0 and shadows[2][0, 0] == 1.0
    copies = copies_keeping_overlaps(arrays)
    for copy, original in zip(copies, arrays):
        np.testing.assert_array_equal(copy, original)
        assert not np.shares_memory(copy, base)
    copies[0][0, 0] = -5.0
    assert copies[1][0, 1] == -5.0
