"""Kernels that allocate scratch arrays inside the kernel with `np.empty`,
`np.zeros`, `np.empty_like` or `.copy()`."""

import numba
import numpy as np

from .case import Case


@numba.njit
def finite_difference_norm_with_empty(x, spacing):
    n = x.shape[0]
    differences = np.empty(n - 1)
    for i in range(n - 1):
        differences[i] = (x[i + 1] - x[i]) / spacing
    total = 0.0
    for i in range(n - 1):
        total += differences[i] * differences[i]
    return total


@numba.njit
def smoothed_energy_with_zeros(x, weight):
    n = x.shape[0]
    smoothed = np.zeros(n)
    for i in range(1, n - 1):
        smoothed[i] = 0.25 * x[i - 1] + 0.5 * x[i] + 0.25 * x[i + 1]
    total = 0.0
    for i in range(n):
        total += weight * smoothed[i] * smoothed[i]
    return total


@numba.njit
def prefix_sum_of_copy(x):
    # The copy is mutated, the argument must stay untouched.
    running = x.copy()
    for i in range(1, running.shape[0]):
        running[i] += running[i - 1]
    total = 0.0
    for i in range(running.shape[0]):
        total += running[i] * x[i]
    return total


def outer_product_sum_with_zeros_2d(x, y):
    outer = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            outer[i, j] = x[i] * y[j]
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            total += outer[i, j] * outer[i, j]
    return total


@numba.njit
def cumulative_buffer_with_empty_like(x):
    buffer = np.empty_like(x)
    buffer[0] = x[0]
    for i in range(1, x.shape[0]):
        buffer[i] = 0.5 * buffer[i - 1] + x[i]
    return buffer[x.shape[0] - 1]


@numba.njit
def scratch_reused_across_rows(matrix):
    rows, columns = matrix.shape
    scratch = np.empty(columns)
    total = 0.0
    for i in range(rows):
        for j in range(columns):
            scratch[j] = matrix[i, j] * matrix[i, j]
        for j in range(columns):
            total += scratch[j] * (j + 1)
    return total


CASES = [
    Case(
        name="alloc_empty_finite_difference_norm",
        func=finite_difference_norm_with_empty,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 24), 0.1),
        tags=frozenset({"loop", "alloc"}),
    ),
    Case(
        name="alloc_zeros_smoothed_energy",
        func=smoothed_energy_with_zeros,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 20), 0.5),
        sig="float64(float64[::1], float64)",
        tags=frozenset({"loop", "alloc"}),
    ),
    Case(
        name="alloc_copy_prefix_sum",
        func=prefix_sum_of_copy,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 16),),
        tags=frozenset({"loop", "alloc"}),
    ),
    Case(
        name="alloc_zeros_2d_outer_product",
        func=outer_product_sum_with_zeros_2d,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 6), rng.uniform(-1.0, 1.0, 5)),
        tags=frozenset({"loop", "nested", "alloc", "2d"}),
    ),
    Case(
        name="alloc_empty_like_recurrence",
        func=cumulative_buffer_with_empty_like,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 12),),
        tags=frozenset({"loop", "alloc"}),
    ),
    Case(
        name="alloc_scratch_reused_across_rows",
        func=scratch_reused_across_rows,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (5, 6)),),
        tags=frozenset({"loop", "nested", "alloc", "2d"}),
    ),
]
