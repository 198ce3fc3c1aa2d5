"""Kernels that call other `@numba.njit` helper functions: scalar helpers,
a helper that calls a helper, helpers taking or mutating arrays."""

import math

import numba

from .case import Case


@numba.njit
def squared_distance(a, b):
    difference = a - b
    return difference * difference


@numba.njit
def gaussian_kernel(a, b, width):
    return math.exp(-squared_distance(a, b) / (2.0 * width * width))


@numba.njit
def euclidean_norm(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * x[i]
    return math.sqrt(total)


@numba.njit
def scale_in_place(x, factor):
    for i in range(x.shape[0]):
        x[i] *= factor


@numba.njit
def smooth_absolute_value(x, epsilon):
    if x * x > epsilon:
        return abs(x)
    return 0.5 * (x * x / math.sqrt(epsilon) + math.sqrt(epsilon))


@numba.njit
def dot_from_index(x, y, start):
    total = 0.0
    for i in range(start, x.shape[0]):
        total += x[i] * y[i]
    return total


@numba.njit
def squared_distance_sum(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += squared_distance(x[i], y[i])
    return total


@numba.njit
def gaussian_kernel_density(samples, points, width):
    density = 0.0
    for i in range(points.shape[0]):
        for j in range(samples.shape[0]):
            density += gaussian_kernel(points[i], samples[j], width)
    return density


@numba.njit
def cosine_similarity(x, y):
    return dot_from_index(x, y, 0) / (euclidean_norm(x) * euclidean_norm(y))


def normalize_then_energy(x):
    # Plain Python kernel that calls jitted helpers, one of them mutating x.
    scale_in_place(x, 1.0 / euclidean_norm(x))
    total = 0.0
    for i in range(x.shape[0]):
        total += smooth_absolute_value(x[i], 1e-4)
    return total


@numba.njit
def tail_dot_product(x, y, start):
    return 2.0 * dot_from_index(x, y, start)


CASES = [
    Case(
        name="call_scalar_helper",
        func=squared_distance_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 20), rng.uniform(-1.0, 1.0, 20)),
        tags=frozenset({"loop", "call"}),
    ),
    Case(
        name="call_helper_calling_helper",
        func=gaussian_kernel_density,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 10), rng.uniform(-1.0, 1.0, 5), 0.5),
        tags=frozenset({"loop", "nested", "call", "math"}),
    ),
    Case(
        name="call_helpers_taking_arrays",
        func=cosine_similarity,
        make_args=lambda rng: (rng.uniform(0.1, 1.0, 16), rng.uniform(0.1, 1.0, 16)),
        sig="float64(float64[::1], float64[::1])",
        tags=frozenset({"loop", "call", "math"}),
    ),
    Case(
        name="call_helper_mutating_array",
        func=normalize_then_energy,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 12),),
        tags=frozenset({"loop", "call", "inplace", "branch", "math"}),
    ),
    Case(
        name="call_helper_with_integer_argument",
        func=tail_dot_product,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 16), rng.uniform(0.0, 1.0, 16), 4),
        tags=frozenset({"loop", "call"}),
    ),
]
