"""Views that change shape: `reshape`, `ravel`, `.T`, `np.outer`.

numba computes a reshaped view's strides in C (`numba_attempt_nocopy_reshape`,
integers only); the view shares the array's data, so derivatives flow through
the same memory. Every kernel returns a float."""

import numba
import numpy as np

from .case import Case


@numba.njit
def reshaped_sum_of_squares(x):
    matrix = x.reshape((2, -1))
    return np.sum(matrix * matrix)


@numba.njit
def reshaped_weighted_rows(x, weights):
    # Row i of the reshaped view, weighted by weights[i], with explicit loops.
    matrix = np.reshape(x, (weights.shape[0], -1))
    total = 0.0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            total += weights[i] * matrix[i, j] * matrix[i, j] * (j + 1)
    return total


@numba.njit
def raveled_cubic(matrix):
    flat = matrix.ravel()
    total = 0.0
    for i in range(flat.shape[0]):
        total += flat[i] * flat[i] * flat[i] * (i + 1)
    return total


@numba.njit
def reshaped_3d_to_2d(volume):
    matrix = volume.reshape((volume.shape[0] * volume.shape[1], volume.shape[2]))
    total = 0.0
    for i in range(matrix.shape[0]):
        row = 0.0
        for j in range(matrix.shape[1]):
            row += matrix[i, j]
        total += row * row
    return total


@numba.njit
def transposed_row_weights(matrix, weights):
    transposed = matrix.T
    total = 0.0
    for i in range(transposed.shape[0]):
        for j in range(transposed.shape[1]):
            total += weights[i] * np.sin(transposed[i, j])
    return total


@numba.njit
def outer_product_energy(a, b):
    product = np.outer(a, b)
    return np.sum(product * product) + np.sum(np.tanh(product))


@numba.njit
def reshape_then_write_through_view(x, out):
    # Writes through a reshaped view of `out`: the derivative of out's final contents.
    view = out.reshape((2, -1))
    source = x.reshape((2, -1))
    for i in range(view.shape[0]):
        for j in range(view.shape[1]):
            view[i, j] = source[i, j] * source[1 - i, j]
    return np.sum(out)


CASES = [
    Case(
        name="reshape_sum_of_squares",
        func=reshaped_sum_of_squares,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 12),),
        tags=frozenset({"reshape", "arrayexpr", "alloc"}),
    ),
    Case(
        name="reshape_weighted_rows",
        func=reshaped_weighted_rows,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 12), rng.uniform(0.5, 1.5, 3)),
        tags=frozenset({"reshape", "loop", "2d"}),
    ),
    Case(
        name="reshape_ravel_cubic",
        func=raveled_cubic,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (3, 4)),),
        tags=frozenset({"reshape", "loop", "2d"}),
    ),
    Case(
        name="reshape_3d_to_2d",
        func=reshaped_3d_to_2d,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (2, 3, 4)),),
        tags=frozenset({"reshape", "loop", "3d"}),
    ),
    Case(
        name="reshape_transposed_row_weights",
        func=transposed_row_weights,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (4, 3)), rng.uniform(0.5, 1.5, 3)),
        tags=frozenset({"reshape", "loop", "2d", "math"}),
    ),
    Case(
        name="reshape_outer_product_energy",
        func=outer_product_energy,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 5), rng.uniform(-1.0, 1.0, 4)),
        tags=frozenset({"reshape", "arrayexpr", "alloc", "math"}),
    ),
    Case(
        name="reshape_write_through_view",
        func=reshape_then_write_through_view,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 8), np.zeros(8)),
        tags=frozenset({"reshape", "loop", "inplace"}),
    ),
]
