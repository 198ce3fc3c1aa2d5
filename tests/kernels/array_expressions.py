"""Whole-array NumPy expressions and reductions (`np.sum`, `.sum()`,
`np.mean`, ufuncs). `np.dot` is left out because it needs BLAS."""

import numba
import numpy as np

from .case import Case


@numba.njit
def sum_of_sine_times_weights(x, y):
    return np.sum(np.sin(x) * y)


@numba.njit
def fused_multiply_add_sum(x, y, z):
    return np.sum(x * y + z)


@numba.njit
def exponential_method_sum(x):
    return np.exp(x).sum()


@numba.njit
def method_sum(x):
    return x.sum()


@numba.njit
def mean_squared_error(prediction, target):
    difference = prediction - target
    return np.mean(difference * difference)


def vector_lengths_sum(x, y):
    return np.sum(np.sqrt(x * x + y * y))


@numba.njit
def frobenius_norm_squared_2d(matrix):
    return np.sum(matrix * matrix)


@numba.njit
def mean_of_log_3d(volume):
    return np.mean(np.log(volume))


@numba.njit
def product_of_growth_factors(rates):
    return np.prod(1.0 + 0.1 * rates)


@numba.njit
def axpy_slice_assignment(alpha, x, y, out):
    out[:] = alpha * x + y


@numba.njit
def in_place_array_update(x, y, step):
    x += step * np.tanh(y)


@numba.njit
def softplus_total(x):
    return np.sum(np.log1p(np.exp(x)))


CASES = [
    Case(
        name="arrayexpr_sum_sine_times_weights",
        func=sum_of_sine_times_weights,
        make_args=lambda rng: (rng.uniform(0.1, 1.5, 32), rng.uniform(0.5, 2.0, 32)),
        tags=frozenset({"arrayexpr", "math"}),
    ),
    Case(
        name="arrayexpr_fused_multiply_add_sum",
        func=fused_multiply_add_sum,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 24), rng.uniform(0.0, 1.0, 24), rng.uniform(0.0, 1.0, 24)),
        tags=frozenset({"arrayexpr"}),
    ),
    Case(
        name="arrayexpr_exp_method_sum",
        func=exponential_method_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 20),),
        tags=frozenset({"arrayexpr", "math"}),
    ),
    Case(
        name="arrayexpr_method_sum",
        func=method_sum,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 40),),
        tags=frozenset({"arrayexpr"}),
    ),
    Case(
        name="arrayexpr_mean_squared_error",
        func=mean_squared_error,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 32), rng.uniform(0.0, 1.0, 32)),
        tags=frozenset({"arrayexpr"}),
    ),
    Case(
        name="arrayexpr_vector_lengths_sum",
        func=vector_lengths_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 16), rng.uniform(0.5, 1.0, 16)),
        tags=frozenset({"arrayexpr", "math"}),
    ),
    Case(
        name="arrayexpr_frobenius_norm_squared_2d",
        func=frobenius_norm_squared_2d,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (5, 6)),),
        tags=frozenset({"arrayexpr", "2d"}),
    ),
    Case(
        name="arrayexpr_mean_of_log_3d",
        func=mean_of_log_3d,
        make_args=lambda rng: (rng.uniform(1.5, 3.0, (3, 4, 2)),),
        tags=frozenset({"arrayexpr", "3d", "math"}),
    ),
    Case(
        name="arrayexpr_product_of_growth_factors",
        func=product_of_growth_factors,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 16),),
        tags=frozenset({"arrayexpr"}),
    ),
    Case(
        name="arrayexpr_axpy_slice_assignment",
        func=axpy_slice_assignment,
        make_args=lambda rng: (0.75, rng.uniform(-1.0, 1.0, 12), rng.uniform(-1.0, 1.0, 12), np.zeros(12)),
        sig="void(float64, float64[::1], float64[::1], float64[::1])",
        tags=frozenset({"arrayexpr", "inplace"}),
    ),
    Case(
        name="arrayexpr_in_place_update",
        func=in_place_array_update,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 12), rng.uniform(-1.0, 1.0, 12), 0.1),
        tags=frozenset({"arrayexpr", "inplace", "math"}),
    ),
    Case(
        name="arrayexpr_softplus_total",
        func=softplus_total,
        make_args=lambda rng: (rng.uniform(-2.0, 2.0, 20),),
        tags=frozenset({"arrayexpr", "math"}),
    ),
]
