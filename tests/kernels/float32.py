"""Single-precision kernels: float32 arrays, and float32 scalars passed
through an explicit signature."""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def sum_of_squares_float32(x):
    total = np.float32(0.0)
    for i in range(x.shape[0]):
        total += x[i] * x[i]
    return total


@numba.njit
def scaled_sum_float32(x, scale):
    total = np.float32(0.0)
    for i in range(x.shape[0]):
        total += scale * x[i]
    return total


@numba.njit
def axpy_in_place_float32(alpha, x, y):
    for i in range(x.shape[0]):
        y[i] += alpha * x[i]


@numba.njit
def damped_oscillation_energy_float32(x, damping):
    total = np.float32(0.0)
    for i in range(x.shape[0]):
        total += math.exp(-damping * x[i]) * math.cos(x[i]) + math.sqrt(x[i])
    return total


def laplacian_energy_float32(field):
    energy = np.float32(0.0)
    for i in range(1, field.shape[0] - 1):
        for j in range(1, field.shape[1] - 1):
            laplacian = field[i - 1, j] + field[i + 1, j] + field[i, j - 1] + field[i, j + 1] - 4 * field[i, j]
            energy += laplacian * laplacian
    return energy


@numba.njit
def mixed_precision_dot(x32, y64):
    # Accumulating float32 data in float64 is common for accuracy.
    total = 0.0
    for i in range(x32.shape[0]):
        total += x32[i] * y64[i]
    return total


def _float32_uniform(rng, low, high, size):
    return rng.uniform(low, high, size).astype(np.float32)


CASES = [
    Case(
        name="float32_sum_of_squares",
        func=sum_of_squares_float32,
        make_args=lambda rng: (_float32_uniform(rng, -1.0, 1.0, 32),),
        tags=frozenset({"loop", "float32"}),
    ),
    Case(
        name="float32_scaled_sum_explicit_sig",
        func=scaled_sum_float32,
        make_args=lambda rng: (_float32_uniform(rng, 0.0, 1.0, 24), np.float32(1.25)),
        sig="float32(float32[::1], float32)",
        tags=frozenset({"loop", "float32"}),
    ),
    Case(
        name="float32_axpy_in_place",
        func=axpy_in_place_float32,
        make_args=lambda rng: (
            np.float32(0.5),
            _float32_uniform(rng, -1.0, 1.0, 16),
            _float32_uniform(rng, -1.0, 1.0, 16),
        ),
        sig="void(float32, float32[::1], float32[::1])",
        tags=frozenset({"loop", "float32", "inplace"}),
    ),
    Case(
        name="float32_math_functions",
        func=damped_oscillation_energy_float32,
        make_args=lambda rng: (_float32_uniform(rng, 0.1, 2.0, 20), np.float32(0.3)),
        sig="float32(float32[::1], float32)",
        tags=frozenset({"loop", "float32", "math"}),
    ),
    Case(
        name="float32_laplacian_energy_2d",
        func=laplacian_energy_float32,
        make_args=lambda rng: (_float32_uniform(rng, 0.0, 1.0, (6, 6)),),
        tags=frozenset({"loop", "nested", "2d", "float32", "stencil"}),
    ),
    Case(
        name="float32_mixed_precision_dot",
        func=mixed_precision_dot,
        make_args=lambda rng: (_float32_uniform(rng, 0.0, 1.0, 16), rng.uniform(0.0, 1.0, 16)),
        tags=frozenset({"loop", "float32"}),
    ),
]
