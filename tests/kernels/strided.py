"""Kernels fed with non-contiguous views (`a[::2]`, `b[:, 1]`, `c.T`,
`x[::-1]`, 3-D slices). Signatures are left to numba so that it infers the
'A' or 'F' layout from the view."""

import numba
import numpy as np

from .case import Case


@numba.njit
def sum_of_squares(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * x[i]
    return total


@numba.njit
def weighted_dot(x, y, weight):
    total = 0.0
    for i in range(x.shape[0]):
        total += weight * x[i] * y[i]
    return total


@numba.njit
def matrix_vector_sum(matrix, vector):
    total = 0.0
    for i in range(matrix.shape[0]):
        row_total = 0.0
        for j in range(matrix.shape[1]):
            row_total += matrix[i, j] * vector[j]
        total += row_total * row_total
    return total


@numba.njit
def scale_in_place(x, factor):
    for i in range(x.shape[0]):
        x[i] *= factor


def smooth_interior_in_place(grid):
    # Reads the neighbours before overwriting so the update is Jacobi-like per row.
    for i in range(grid.shape[0]):
        previous = grid[i, 0]
        for j in range(1, grid.shape[1] - 1):
            current = grid[i, j]
            grid[i, j] = 0.25 * previous + 0.5 * current + 0.25 * grid[i, j + 1]
            previous = current


@numba.njit
def array_expression_on_view(x, y):
    return np.sum(np.exp(x) * y)


@numba.njit
def volume_slice_energy(volume_slice):
    energy = 0.0
    for i in range(volume_slice.shape[0]):
        for j in range(volume_slice.shape[1]):
            energy += volume_slice[i, j] * volume_slice[i, j]
    return energy


CASES = [
    Case(
        name="strided_every_other_element",
        func=sum_of_squares,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 40)[::2],),
        tags=frozenset({"loop", "strided"}),
    ),
    Case(
        name="strided_column_of_matrix",
        func=weighted_dot,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (8, 3))[:, 1], rng.uniform(0.0, 1.0, 8), 2.0),
        tags=frozenset({"loop", "strided", "2d"}),
    ),
    Case(
        name="strided_reversed_view",
        func=weighted_dot,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 12)[::-1], rng.uniform(0.0, 1.0, 12), 0.5),
        tags=frozenset({"loop", "strided"}),
    ),
    Case(
        name="strided_transposed_fortran_matrix",
        func=matrix_vector_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (5, 6)).T, rng.uniform(-1.0, 1.0, 5)),
        tags=frozenset({"loop", "nested", "strided", "2d"}),
    ),
    Case(
        name="strided_sub_block_matrix",
        func=matrix_vector_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (8, 8))[1:-1, ::2], rng.uniform(-1.0, 1.0, 4)),
        tags=frozenset({"loop", "nested", "strided", "2d"}),
    ),
    Case(
        name="strided_scale_view_in_place",
        func=scale_in_place,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 30)[1::3], 1.5),
        tags=frozenset({"loop", "strided", "inplace"}),
    ),
    Case(
        name="strided_smooth_interior_in_place",
        func=smooth_interior_in_place,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (6, 10))[::2, 1:],),
        tags=frozenset({"loop", "nested", "strided", "2d", "inplace"}),
    ),
    Case(
        name="strided_array_expression_on_view",
        func=array_expression_on_view,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (6, 4))[:, 2], rng.uniform(0.5, 1.0, 18)[::3]),
        tags=frozenset({"arrayexpr", "strided", "math"}),
    ),
    Case(
        name="strided_3d_volume_slice",
        func=volume_slice_energy,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (4, 6, 3))[:, ::2, 1],),
        tags=frozenset({"loop", "nested", "strided", "3d"}),
    ),
]
