"""Kernels over 2-D and 3-D arrays: nested loops, stencils, matrix products
written into caller-provided outputs."""

import numba
import numpy as np

from .case import Case


@numba.njit
def matrix_vector_into_output(matrix, vector, out):
    rows, columns = matrix.shape
    for i in range(rows):
        total = 0.0
        for j in range(columns):
            total += matrix[i, j] * vector[j]
        out[i] = total


@numba.njit
def matrix_matrix_into_output(a, b, out):
    n, m = a.shape
    p = b.shape[1]
    for i in range(n):
        for j in range(p):
            total = 0.0
            for k in range(m):
                total += a[i, k] * b[k, j]
            out[i, j] = total


@numba.njit
def column_sums_into_output(matrix, out):
    for j in range(matrix.shape[1]):
        out[j] = 0.0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            out[j] += matrix[i, j]


def five_point_laplacian(field, out, spacing):
    inverse_spacing_squared = 1.0 / (spacing * spacing)
    for i in range(1, field.shape[0] - 1):
        for j in range(1, field.shape[1] - 1):
            out[i, j] = inverse_spacing_squared * (
                field[i - 1, j] + field[i + 1, j] + field[i, j - 1] + field[i, j + 1] - 4.0 * field[i, j]
            )


@numba.njit
def dirichlet_energy_2d(field):
    energy = 0.0
    for i in range(field.shape[0] - 1):
        for j in range(field.shape[1] - 1):
            dx = field[i + 1, j] - field[i, j]
            dy = field[i, j + 1] - field[i, j]
            energy += dx * dx + dy * dy
    return 0.5 * energy


@numba.njit
def normalize_rows_in_place(matrix):
    for i in range(matrix.shape[0]):
        norm_squared = 0.0
        for j in range(matrix.shape[1]):
            norm_squared += matrix[i, j] * matrix[i, j]
        inverse_norm = 1.0 / np.sqrt(norm_squared)
        for j in range(matrix.shape[1]):
            matrix[i, j] *= inverse_norm


@numba.njit
def trace_of_product(a, b):
    trace = 0.0
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            trace += a[i, k] * b[k, i]
    return trace


@numba.njit
def seven_point_energy_3d(volume, coupling):
    energy = 0.0
    nx, ny, nz = volume.shape
    for i in range(1, nx - 1):
        for j in range(1, ny - 1):
            for k in range(1, nz - 1):
                neighbours = (
                    volume[i - 1, j, k] + volume[i + 1, j, k]
                    + volume[i, j - 1, k] + volume[i, j + 1, k]
                    + volume[i, j, k - 1] + volume[i, j, k + 1]
                )
                energy += volume[i, j, k] * volume[i, j, k] - coupling * volume[i, j, k] * neighbours
    return energy


@numba.njit
def weighted_sum_3d(volume, weights):
    # weights has one entry per leading slice; broadcast by hand.
    total = 0.0
    for i in range(volume.shape[0]):
        for j in range(volume.shape[1]):
            for k in range(volume.shape[2]):
                total += weights[i] * volume[i, j, k] * volume[i, j, k]
    return total


CASES = [
    Case(
        name="nested_matrix_vector_into_output",
        func=matrix_vector_into_output,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (6, 5)), rng.uniform(-1.0, 1.0, 5), np.zeros(6)),
        sig="void(float64[:, ::1], float64[::1], float64[::1])",
        tags=frozenset({"loop", "nested", "2d", "inplace"}),
    ),
    Case(
        name="nested_matrix_matrix_into_output",
        func=matrix_matrix_into_output,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (4, 5)), rng.uniform(-1.0, 1.0, (5, 3)), np.zeros((4, 3))),
        tags=frozenset({"loop", "nested", "2d", "inplace"}),
    ),
    Case(
        name="nested_column_sums_into_output",
        func=column_sums_into_output,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (7, 4)), np.empty(4)),
        sig="void(float64[:, :], float64[:])",
        tags=frozenset({"loop", "nested", "2d", "inplace"}),
    ),
    Case(
        name="stencil_five_point_laplacian",
        func=five_point_laplacian,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (8, 8)), np.zeros((8, 8)), 0.125),
        tags=frozenset({"loop", "nested", "2d", "stencil", "inplace"}),
    ),
    Case(
        name="stencil_dirichlet_energy_2d",
        func=dirichlet_energy_2d,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (6, 7)),),
        tags=frozenset({"loop", "nested", "2d", "stencil"}),
    ),
    Case(
        name="nested_normalize_rows_in_place",
        func=normalize_rows_in_place,
        make_args=lambda rng: (rng.uniform(0.5, 1.5, (5, 4)),),
        tags=frozenset({"loop", "nested", "2d", "inplace", "math"}),
    ),
    Case(
        name="nested_trace_of_product",
        func=trace_of_product,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (4, 6)), rng.uniform(0.0, 1.0, (6, 4))),
        tags=frozenset({"loop", "nested", "2d"}),
    ),
    Case(
        name="stencil_seven_point_energy_3d",
        func=seven_point_energy_3d,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, (5, 4, 6)), 0.1),
        tags=frozenset({"loop", "nested", "3d", "stencil"}),
    ),
    Case(
        name="nested_weighted_sum_3d",
        func=weighted_sum_3d,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (3, 4, 5)), rng.uniform(0.5, 1.0, 3)),
        sig="float64(float64[:, :, ::1], float64[::1])",
        tags=frozenset({"loop", "nested", "3d"}),
    ),
]
