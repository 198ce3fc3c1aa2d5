"""Integer arithmetic (int64 and int32, `//`, `%`, bit operations), boolean
mask inputs and gather/scatter through int64 index arrays."""

import numba
import numpy as np

from .case import Case


@numba.njit
def floor_division_and_modulo(a, b):
    total = 0
    for i in range(a.shape[0]):
        total += (a[i] // 3) * (b[i] % 5) - a[i] % 7
    return total


@numba.njit
def bit_operations_int32(a, b):
    total = 0
    for i in range(a.shape[0]):
        total += (a[i] & 0xF) ^ (b[i] | 1)
        total += (a[i] << 2) - (b[i] >> 1)
    return total


@numba.njit
def polynomial_hash(values, base):
    modulus = 1_000_003
    hash_value = 0
    for i in range(values.shape[0]):
        hash_value = (hash_value * base + values[i]) % modulus
    return hash_value


@numba.njit
def collatz_total_steps(starts):
    total_steps = 0
    for i in range(starts.shape[0]):
        n = starts[i]
        while n != 1:
            if n % 2 == 0:
                n = n // 2
            else:
                n = 3 * n + 1
            total_steps += 1
    return total_steps


@numba.njit
def count_positive(x):
    count = 0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            count += 1
    return count


@numba.njit
def masked_sum_of_squares(x, mask):
    total = 0.0
    for i in range(x.shape[0]):
        if mask[i]:
            total += x[i] * x[i]
    return total


@numba.njit
def gather_weighted_sum(x, indices, weights):
    total = 0.0
    for i in range(indices.shape[0]):
        total += weights[i] * x[indices[i]] * x[indices[i]]
    return total


@numba.njit
def scatter_add(values, indices, out):
    for i in range(indices.shape[0]):
        out[indices[i]] += values[i] * values[i]


def periodic_weights_by_index(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * (i % 4) + x[i] * x[i] * (i // 4)
    return total


@numba.njit
def integer_counts_times_floats(counts, x):
    total = 0.0
    for i in range(x.shape[0]):
        total += counts[i] * x[i] * x[i]
    return total


CASES = [
    Case(
        name="int64_floor_division_and_modulo",
        func=floor_division_and_modulo,
        make_args=lambda rng: (rng.integers(-50, 50, 24), rng.integers(-50, 50, 24)),
        tags=frozenset({"loop", "int"}),
    ),
    Case(
        name="int32_bit_operations",
        func=bit_operations_int32,
        make_args=lambda rng: (
            rng.integers(0, 1000, 16).astype(np.int32),
            rng.integers(0, 1000, 16).astype(np.int32),
        ),
        tags=frozenset({"loop", "int", "int32"}),
    ),
    Case(
        name="int64_polynomial_hash",
        func=polynomial_hash,
        make_args=lambda rng: (rng.integers(0, 256, 32), 257),
        sig="int64(int64[::1], int64)",
        tags=frozenset({"loop", "int"}),
    ),
    Case(
        name="int64_collatz_while",
        func=collatz_total_steps,
        make_args=lambda rng: (rng.integers(1, 100, 8),),
        tags=frozenset({"loop", "while", "int", "branch"}),
    ),
    Case(
        name="int64_count_positive",
        func=count_positive,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 32),),
        tags=frozenset({"loop", "branch", "int_result"}),
    ),
    Case(
        name="bool_mask_sum_of_squares",
        func=masked_sum_of_squares,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 24), rng.uniform(0.0, 1.0, 24) > 0.5),
        tags=frozenset({"loop", "branch", "mask"}),
    ),
    Case(
        name="gather_weighted_sum",
        func=gather_weighted_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 10), rng.integers(0, 10, 24), rng.uniform(0.0, 1.0, 24)),
        tags=frozenset({"loop", "gather"}),
    ),
    Case(
        name="scatter_add_into_output",
        func=scatter_add,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 24), rng.integers(0, 8, 24), np.zeros(8)),
        sig="void(float64[::1], int64[::1], float64[::1])",
        tags=frozenset({"loop", "scatter", "inplace"}),
    ),
    Case(
        name="int_index_arithmetic_weights",
        func=periodic_weights_by_index,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 16),),
        tags=frozenset({"loop", "int"}),
    ),
    Case(
        name="int32_counts_times_floats",
        func=integer_counts_times_floats,
        make_args=lambda rng: (rng.integers(1, 5, 12).astype(np.int32), rng.uniform(-1.0, 1.0, 12)),
        tags=frozenset({"loop", "int", "int32"}),
    ),
]
