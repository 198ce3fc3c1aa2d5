"""Cache minimization on real kernels: what the tape holds, measured by `explain`.

The expectations are issue 5's: a read-only reduction caches nothing,
recomputable math caches nothing, an in-place overwrite caches at most one
double per element, a scalar recurrence at most one double per step, and a
loop-invariant value is kept once (in a stack slot), not per iteration.
"""

import math

import numba
import numpy as np
import pytest

from enzpy import Const, DifferentiationError, Duplicated, differentiate
from enzpy.explain import explain

N = 200


@numba.njit
def sum_of_squares(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


@numba.njit
def sine_weighted_sum(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += math.sin(x[i]) * y[i]
    return s


@numba.njit
def square_in_place(x):
    for i in range(x.shape[0]):
        x[i] = x[i] ** 2


@numba.njit
def recurrence(x, a):
    s = 1.0
    for i in range(x.shape[0]):
        s = s * a + math.sin(s) * x[i]
    return s


@numba.njit
def invariant_scale(x, a):
    scale = math.exp(a) / (1.0 + a * a)
    s = 0.0
    for i in range(x.shape[0]):
        s += scale * x[i] * x[i]
    return s


def test_read_only_sum_of_squares_caches_nothing():
    report = explain(differentiate(sum_of_squares), np.linspace(0.0, 1.0, N))
    assert report.cache_bytes == 0, str(report)
    assert report.reloaded and not report.cached_values


def test_sine_times_array_caches_nothing():
    x, y = np.linspace(0.0, 1.0, N), np.linspace(1.0, 2.0, N)
    report = explain(differentiate(sine_weighted_sum), x, y)
    assert report.cache_bytes == 0, str(report)
    assert any("llvm.sin" in text for text in report.recomputed)


def test_in_place_overwrite_caches_at_most_one_double_per_element():
    report = explain(differentiate(square_in_place), np.linspace(0.5, 1.5, N))
    assert 0 < report.cache_bytes <= 8 * N, str(report)


def test_scalar_recurrence_caches_at_most_one_double_per_step():
    report = explain(differentiate(recurrence), np.linspace(0.0, 0.1, N), 0.9)
    assert 0 < report.cache_bytes <= 8 * N, str(report)


def test_loop_invariant_value_is_kept_once_not_per_iteration():
    report = explain(differentiate(invariant_scale), np.linspace(0.0, 1.0, N), 0.3)
    assert report.cache_bytes == 0, str(report)


@numba.njit
def log_sum_exp_per_row(x):
    # The row is copied into a scratch buffer each time: its values cannot be re-loaded.
    scratch = np.empty(x.shape[1])
    total = 0.0
    for row in range(x.shape[0]):
        for column in range(x.shape[1]):
            scratch[column] = 2.0 * x[row, column]
        row_sum = 0.0
        for column in range(x.shape[1]):
            row_sum += math.exp(scratch[column] - 1.0)
        total += math.log(row_sum)
    return total


def test_an_exp_of_overwritten_memory_is_cached_not_recomputed():
    # Taping exp(v) costs the slot that taping v would, and saves the second exp.
    x = np.linspace(-1.0, 1.0, 3 * N).reshape(3, N)
    report = explain(differentiate(log_sum_exp_per_row), x)
    assert any("llvm.exp" in text for text in report.cached_values), str(report)
    assert not any("llvm.exp" in text for text in report.recomputed), str(report)
    assert report.cache_bytes <= 8 * x.size + 64, str(report)
    (dx,) = differentiate(log_sum_exp_per_row).grad(x)
    weights = np.exp(2.0 * x - 1.0)
    assert np.allclose(dx, 2.0 * weights / weights.sum(axis=1, keepdims=True), rtol=1e-13)


@numba.njit
def pair_products(x):
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):     # skipped in the last row: the row's end is a join
            total += x[i] * x[j]
    return total


def test_a_join_decided_by_a_recomputable_branch_tapes_nothing():
    # Whether row i ran its inner loop is `i + 1 < n`, recomputed from the counter:
    # nothing on the tape (taping the predecessor would cost 8 bytes per row).
    x = np.linspace(0.0, 1.0, 50)
    report = explain(differentiate(pair_products), x)
    assert report.cache_bytes == 0, str(report)
    (dx,) = differentiate(pair_products).grad(x)
    assert np.allclose(dx, x.sum() - x, rtol=1e-13)


def test_the_tape_buffer_is_kept_for_the_next_call_when_the_kernel_allocates():
    # A kernel that allocates also gets an allocation log (a second, small tape); the
    # spare kept for the next call must still be the big tape's buffer, or every call
    # would fault its tape in page by page again.
    import ctypes

    from enzpy.ad.reverse import tape_slots_global_name
    from tests.kernels.time_steppers import heat_equation_swapping_buffers

    differentiable = differentiate(heat_equation_swapping_buffers)
    arguments = (np.sin(np.linspace(0.0, 3.0, 64)), 0.2, 50)
    differentiable.value_and_grad(*arguments)
    (gradient,) = differentiable._gradients.values()
    compiled, name = gradient.entry.compiled, gradient.entry.convention.entry
    used = ctypes.c_int64.from_address(compiled.global_address(tape_slots_global_name(name))).value
    spare = ctypes.c_void_p.from_address(compiled.global_address("enzpy.tape.spare")).value
    assert used > 1024 and spare                          # more than a fresh tape's first 1024 slots
    assert ctypes.c_int64.from_address(spare).value >= used   # the spare's capacity, stored in it


def test_cache_does_not_grow_with_const_inputs():
    # y is Const: its values are re-loaded, never cached, and get no derivative code.
    x, y = np.linspace(0.0, 1.0, N), np.linspace(1.0, 2.0, N)
    report = explain(differentiate(sine_weighted_sum), x, Const(y))
    assert report.cache_bytes == 0
    assert report.active_instructions and report.inactive_instructions


def test_explain_leaves_arguments_alone_and_prints_readably():
    x = np.linspace(0.5, 1.5, 10)
    dx = np.zeros_like(x)
    report = explain(differentiate(square_in_place), Duplicated(x, dx))
    np.testing.assert_array_equal(x, np.linspace(0.5, 1.5, 10))
    np.testing.assert_array_equal(dx, 0.0)
    text = str(report)
    assert "square_in_place" in text and "tape" in text and f"{report.cache_bytes} bytes" in text
    assert "; active" in report.annotated_ir and "reverse: cache" in report.annotated_ir


def five_point(function, x, h):
    return (-function(x + 2 * h) + 8 * function(x + h) - 8 * function(x - h) + function(x - 2 * h)) / (12 * h)


@pytest.mark.parametrize("kernel", [recurrence, invariant_scale])
def test_minimized_gradients_match_finite_differences(kernel):
    # The corpus checks every kernel; this makes sure the cases above are right too.
    x, a = np.linspace(0.0, 0.1, 7), 0.9
    dx, da = differentiate(kernel).grad(x, a)
    for i in range(x.shape[0]):
        def along(t, i=i):
            moved = x.copy()
            moved[i] = t
            return kernel(moved, a)
        assert dx[i] == pytest.approx(five_point(along, x[i], 1e-3), rel=1e-8, abs=1e-10)
    assert da == pytest.approx(five_point(lambda t: kernel(x, t), a, 1e-3), rel=1e-8)


@numba.njit
def scale_into(x, y, out):
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = x[i] * 2.0
        s += y[i] * x[i]
    return s


def test_overlapping_arrays_are_not_assumed_unchanged():
    x, y = np.linspace(0.1, 1.0, 5), np.linspace(1.0, 2.0, 5)
    assert explain(differentiate(scale_into), x, y, np.zeros(5)).cache_bytes == 0
    assert explain(differentiate(scale_into), x, y, x).cache_bytes > 0


def test_gradient_with_the_same_array_twice_matches_finite_differences():
    # out is x: the loop doubles x[i] and then reads the doubled value.
    y = np.linspace(1.0, 2.0, 5)

    def value(x):
        copy = x.copy()
        return scale_into(copy, y, copy)

    x = np.linspace(0.1, 1.0, 5)
    dx = differentiate(scale_into).grad(x.copy(), y, x.copy())[0]
    shared = x.copy()
    grads = differentiate(scale_into).grad(shared, y, shared)
    assert grads[0] is grads[2]                    # one array, one shadow
    for i in range(5):
        def along(t, i=i):
            moved = x.copy()
            moved[i] = t
            return value(moved)
        # d/dx_i of sum(y * 2x) plus the adjoint of the final contents (zero here).
        assert grads[0][i] == pytest.approx(five_point(along, x[i], 1e-3), rel=1e-8)
    assert not np.allclose(dx, grads[0])


def test_partly_overlapping_duplicated_arrays_are_refused():
    x = np.linspace(0.1, 1.0, 6)
    with pytest.raises(DifferentiationError, match="share memory"):
        differentiate(scale_into).autodiff(Duplicated(x[:5], np.zeros(5)), Const(np.ones(5)),
                                           Duplicated(x[1:], np.zeros(5)))
