"""Kernels with if/else branches, ternaries, builtin `min`/`max`,
`np.maximum`/`np.minimum` on scalars and boolean results."""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def leaky_relu_sum(x, slope):
    total = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            total += x[i]
        else:
            total += slope * x[i]
    return total


@numba.njit
def huber_loss(prediction, target, delta):
    loss = 0.0
    for i in range(prediction.shape[0]):
        residual = prediction[i] - target[i]
        if residual > delta:
            loss += delta * (residual - 0.5 * delta)
        elif residual < -delta:
            loss += delta * (-residual - 0.5 * delta)
        else:
            loss += 0.5 * residual * residual
    return loss


@numba.njit
def ternary_pointwise_max_sum(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] if x[i] > y[i] else y[i]
    return total


@numba.njit
def clamped_square_sum(x, low, high):
    total = 0.0
    for i in range(x.shape[0]):
        clamped = min(max(x[i], low), high)
        total += clamped * clamped
    return total


@numba.njit
def numpy_scalar_maximum_minimum(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += np.maximum(x[i], 0.0) * y[i] + np.minimum(x[i], y[i])
    return total


def mode_selected_energy(x, mode):
    total = 0.0
    for i in range(x.shape[0]):
        if mode == 0:
            total += x[i] * x[i]
        elif mode == 1:
            total += x[i] * x[i] * x[i]
        else:
            total += 2.0 * x[i]
    return total


@numba.njit
def all_within_bound(x, bound):
    for i in range(x.shape[0]):
        if abs(x[i]) > bound:
            return False
    return True


@numba.njit
def first_sign_change_index(x):
    for i in range(1, x.shape[0]):
        if x[i - 1] * x[i] < 0.0:
            return i
    return -1


@numba.njit
def soft_threshold_in_place(x, threshold):
    for i in range(x.shape[0]):
        if x[i] > threshold:
            x[i] -= threshold
        elif x[i] < -threshold:
            x[i] += threshold
        else:
            x[i] = 0.0


@numba.njit
def branch_on_scalar_argument(a, b):
    # A branch with no loop around it: the taken side depends on the inputs.
    if a > b:
        result = a * a - b
    else:
        result = b * b + a
    return result


@numba.njit
def running_maximum_and_pairs(x):
    # max() and a tuple: numba's raw IR carries these floats in aggregates.
    largest = -1e9
    total = 0.0
    for i in range(x.shape[0]):
        largest = max(largest, x[i] * x[i])
        pair = (x[i], math.sin(x[i]))
        total += pair[0] * pair[1]
    return largest + total


CASES = [
    Case(
        name="branch_running_maximum_and_pairs",
        func=running_maximum_and_pairs,
        make_args=lambda rng: (rng.uniform(-1.5, 1.5, 12),),
        tags=frozenset({"loop", "minmax", "tuple"}),
    ),
    Case(
        name="branch_leaky_relu_sum",
        func=leaky_relu_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 32), 0.01),
        tags=frozenset({"loop", "branch"}),
    ),
    Case(
        name="branch_huber_loss",
        func=huber_loss,
        make_args=lambda rng: (rng.uniform(-2.0, 2.0, 24), rng.uniform(-2.0, 2.0, 24), 1.0),
        tags=frozenset({"loop", "branch"}),
    ),
    Case(
        name="branch_ternary_pointwise_max_sum",
        func=ternary_pointwise_max_sum,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 20), rng.uniform(0.0, 1.0, 20)),
        tags=frozenset({"loop", "branch", "select"}),
    ),
    Case(
        name="branch_builtin_min_max_clamp",
        func=clamped_square_sum,
        make_args=lambda rng: (rng.uniform(-2.0, 2.0, 32), -1.0, 1.5),
        tags=frozenset({"loop", "minmax"}),
    ),
    Case(
        name="branch_numpy_scalar_maximum_minimum",
        func=numpy_scalar_maximum_minimum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 20), rng.uniform(0.5, 1.0, 20)),
        tags=frozenset({"loop", "minmax"}),
    ),
    Case(
        name="branch_mode_selected_energy",
        func=mode_selected_energy,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 16), 1),
        tags=frozenset({"loop", "branch"}),
    ),
    Case(
        name="branch_all_within_bound_returns_bool",
        func=all_within_bound,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 16), 0.95),
        sig="boolean(float64[::1], float64)",
        tags=frozenset({"loop", "branch", "early_return", "bool_result"}),
    ),
    Case(
        name="branch_first_sign_change_index",
        func=first_sign_change_index,
        make_args=lambda rng: (np.concatenate((rng.uniform(0.1, 1.0, 6), rng.uniform(-1.0, -0.1, 6))),),
        tags=frozenset({"loop", "branch", "early_return", "int_result"}),
    ),
    Case(
        name="branch_soft_threshold_in_place",
        func=soft_threshold_in_place,
        make_args=lambda rng: (rng.uniform(-2.0, 2.0, 24), 0.5),
        tags=frozenset({"loop", "branch", "inplace"}),
    ),
    Case(
        name="branch_on_scalar_argument",
        func=branch_on_scalar_argument,
        make_args=lambda rng: (float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0))),
        sig="float64(float64, float64)",
        tags=frozenset({"branch"}),
    ),
]
