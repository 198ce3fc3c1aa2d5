"""Kernels built from simple and nested `for` loops, `while` loops, `break`
and early `return` inside a loop."""

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
def dot_product(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * y[i]
    return total


@numba.njit
def axpy_into_output(alpha, x, y, out):
    for i in range(x.shape[0]):
        out[i] = alpha * x[i] + y[i]


def prefix_sum_in_place(x):
    for i in range(1, x.shape[0]):
        x[i] += x[i - 1]


@numba.njit
def horner_polynomial(coefficients, x):
    # Coefficients are stored lowest degree first, so Horner runs backwards.
    result = 0.0
    for i in range(coefficients.shape[0] - 1, -1, -1):
        result = result * x + coefficients[i]
    return result


@numba.njit
def exponential_moving_average(x, smoothing):
    average = x[0]
    for i in range(1, x.shape[0]):
        average = smoothing * x[i] + (1.0 - smoothing) * average
    return average


@numba.njit
def running_product(x):
    product = 1.0
    for i in range(x.shape[0]):
        product *= 1.0 + 0.1 * x[i]
    return product


@numba.njit
def every_third_weighted_sum(x, weight):
    total = 0.0
    for i in range(0, x.shape[0], 3):
        total += weight * x[i] * x[i]
    return total


@numba.njit
def sum_until_threshold(x, threshold):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * x[i]
        if total > threshold:
            break
    return total


@numba.njit
def first_exceeding_scaled(x, limit, scale):
    for i in range(x.shape[0]):
        if x[i] > limit:
            return scale * x[i] * x[i]
    return 0.0


@numba.njit
def newton_cube_root(a, tolerance, max_iterations):
    x = a if a > 1.0 else 1.0
    step = 1.0
    iteration = 0
    while abs(step) > tolerance and iteration < max_iterations:
        step = (x * x * x - a) / (3.0 * x * x)
        x -= step
        iteration += 1
    return x


@numba.njit
def newton_cube_roots_sum(values, tolerance, max_iterations):
    total = 0.0
    for i in range(values.shape[0]):
        a = values[i]
        x = a if a > 1.0 else 1.0
        step = 1.0
        iteration = 0
        while abs(step) > tolerance and iteration < max_iterations:
            step = (x * x * x - a) / (3.0 * x * x)
            x -= step
            iteration += 1
        total += x
    return total


@numba.njit
def bisection_cube_root(c, low, high, tolerance):
    while high - low > tolerance:
        middle = 0.5 * (low + high)
        if middle * middle * middle - c > 0.0:
            high = middle
        else:
            low = middle
    return 0.5 * (low + high)


def taylor_exponential(x, tolerance):
    term = 1.0
    total = 1.0
    n = 1
    while abs(term) > tolerance:
        term *= x / n
        total += term
        n += 1
    return total


@numba.njit
def pairwise_interaction_energy(positions, strength):
    # Triangular nested loop: the inner trip count depends on the outer index.
    energy = 0.0
    n = positions.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            difference = positions[i] - positions[j]
            energy += strength / (1.0 + difference * difference)
    return energy


def _uniform(rng, low, high, size):
    return rng.uniform(low, high, size)


CASES = [
    Case(
        name="loop_sum_of_squares",
        func=sum_of_squares,
        make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 32),),
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_dot_product",
        func=dot_product,
        make_args=lambda rng: (_uniform(rng, 0.1, 1.0, 24), _uniform(rng, 0.1, 1.0, 24)),
        sig="float64(float64[::1], float64[::1])",
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_axpy_into_output",
        func=axpy_into_output,
        make_args=lambda rng: (
            1.5,
            _uniform(rng, -1.0, 1.0, 16),
            _uniform(rng, -1.0, 1.0, 16),
            np.zeros(16),
        ),
        tags=frozenset({"loop", "inplace"}),
    ),
    Case(
        name="loop_prefix_sum_in_place",
        func=prefix_sum_in_place,
        make_args=lambda rng: (_uniform(rng, 0.0, 1.0, 20),),
        tags=frozenset({"loop", "inplace"}),
    ),
    Case(
        name="loop_horner_polynomial",
        func=horner_polynomial,
        make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 8), 0.7),
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_exponential_moving_average",
        func=exponential_moving_average,
        make_args=lambda rng: (_uniform(rng, 0.0, 2.0, 40), 0.3),
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_running_product",
        func=running_product,
        make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 30),),
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_every_third_weighted_sum",
        func=every_third_weighted_sum,
        make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 31), 0.25),
        tags=frozenset({"loop"}),
    ),
    Case(
        name="loop_break_sum_until_threshold",
        func=sum_until_threshold,
        make_args=lambda rng: (_uniform(rng, 0.5, 1.0, 40), 6.0),
        tags=frozenset({"loop", "break", "branch"}),
    ),
    Case(
        name="loop_early_return_first_exceeding",
        func=first_exceeding_scaled,
        make_args=lambda rng: (_uniform(rng, 0.0, 1.0, 32), 0.9, 2.0),
        tags=frozenset({"loop", "early_return", "branch"}),
    ),
    Case(
        name="while_newton_cube_root",
        constant_arguments=(1,),
        func=newton_cube_root,
        make_args=lambda rng: (float(rng.uniform(0.5, 8.0)), 1e-12, 50),
        sig="float64(float64, float64, int64)",
        tags=frozenset({"while", "branch"}),
    ),
    Case(
        name="while_newton_cube_roots_sum",
        constant_arguments=(1,),
        func=newton_cube_roots_sum,
        make_args=lambda rng: (_uniform(rng, 0.5, 8.0, 12), 1e-12, 50),
        tags=frozenset({"loop", "while", "branch"}),
    ),
    Case(
        name="while_bisection_cube_root",
        constant_arguments=(0, 1, 2, 3),
        func=bisection_cube_root,
        make_args=lambda rng: (float(rng.uniform(1.0, 7.0)), 0.0, 2.0, 1e-10),
        tags=frozenset({"while", "branch"}),
    ),
    Case(
        name="while_taylor_exponential",
        constant_arguments=(1,),
        func=taylor_exponential,
        make_args=lambda rng: (float(rng.uniform(-2.0, 2.0)), 1e-15),
        tags=frozenset({"while"}),
    ),
    Case(
        name="loop_nested_pairwise_interaction",
        func=pairwise_interaction_energy,
        make_args=lambda rng: (_uniform(rng, -2.0, 2.0, 16), 0.5),
        tags=frozenset({"loop", "nested"}),
    ),
]
