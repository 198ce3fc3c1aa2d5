"""Kernels whose callees stay calls after the pre-AD pipeline: recursion.

LLVM cannot inline a recursive function into itself, so these calls are
differentiated interprocedurally (enzpy/ad/calls.py): a tangent function per
callee in forward mode, an augmented forward and a reverse function in
reverse mode. Self recursion on scalars and on array slices, mutual
recursion, recursion writing into an output array or allocating its own
arrays, a recursive callee called from a loop, recursion whose depth the data
decides, a callee returning a tuple.
"""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def power_sum(x, n):
    if n == 0:
        return 0.0
    return x ** n + power_sum(x, n - 1)


def recursive_power_sum(x, n):
    return power_sum(x, n)


@numba.njit
def tree_sum(x):
    # Divide and conquer over slices: two recursive calls per level.
    n = x.shape[0]
    if n <= 2:
        total = 0.0
        for i in range(n):
            total += math.sin(x[i]) * x[i]
        return total
    middle = n // 2
    return tree_sum(x[:middle]) + tree_sum(x[middle:]) * 1.5


def recursive_tree_sum(x):
    return tree_sum(x)


@numba.njit
def horner(coefficients, x, i):
    if i == coefficients.shape[0] - 1:
        return coefficients[i]
    return coefficients[i] + x * horner(coefficients, x, i + 1)


def recursive_horner(coefficients, x):
    return horner(coefficients, x, 0)


@numba.njit
def clenshaw(coefficients, x, k, b1, b2):
    # Chebyshev series by Clenshaw's recurrence, written as a tail recursion.
    if k == 0:
        return coefficients[0] + x * b1 - b2
    return clenshaw(coefficients, x, k - 1, coefficients[k] + 2.0 * x * b1 - b2, b1)


def recursive_clenshaw(coefficients, t):
    x = math.tanh(t)
    return clenshaw(coefficients, x, coefficients.shape[0] - 1, 0.0, 0.0)


@numba.njit
def ping(x, n):
    if n <= 0:
        return math.sin(x)
    return math.sin(x) + pong(1.1 * x, n - 1)


@numba.njit
def pong(x, n):
    if n <= 0:
        return math.cos(x)
    return math.cos(x) * ping(x - 0.3, n - 1)


def mutual_recursion(x, n):
    return ping(x, n)


@numba.njit
def prefix_products(x, out, i):
    # Writes out[0..i]: recursion first, then the entry that needs the one before it.
    if i == 0:
        out[0] = x[0]
        return
    prefix_products(x, out, i - 1)
    out[i] = out[i - 1] * x[i] + math.sin(x[i])


def recursion_writing_output(x, out):
    prefix_products(x, out, x.shape[0] - 1)


@numba.njit
def exp_series(x, k, term):
    # sum_{j >= k} of the exponential series, `term` = x^k / k!, to 12 terms.
    if k == 12:
        return term
    return term + exp_series(x, k + 1, term * x / (k + 1))


def recursive_callee_in_loop(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += exp_series(x[i], 0, 1.0) * x[i]
    return total


@numba.njit
def path_sum(values, parent, i):
    # The depth is how far node i is from a root: the data decides it.
    here = values[i] * values[i]
    if parent[i] < 0:
        return here
    return here + 0.5 * path_sum(values, parent, parent[i])


def data_driven_depth(values, parent):
    total = 0.0
    for i in range(values.shape[0]):
        total += path_sum(values, parent, i)
    return total


@numba.njit
def halvings(x):
    # How often x is halved depends on its value.
    if x < 1.0:
        return x * x
    return 1.0 + 0.5 * halvings(0.5 * x)


def value_driven_depth(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += halvings(x[i])
    return total


@numba.njit
def smooth_down(x):
    # Each level allocates the averaged array it recurses on.
    n = x.shape[0]
    if n == 1:
        return x[0] * x[0]
    averaged = np.empty(n - 1)
    for i in range(n - 1):
        averaged[i] = 0.5 * (x[i] + x[i + 1]) + 0.1 * x[i] * x[i + 1]
    return x[0] * x[n - 1] + smooth_down(averaged)


def recursion_allocating_arrays(x):
    return smooth_down(x)


@numba.njit
def lucas_pair(x, n):
    # A tuple result: (a_n, a_{n+1}) of a_{k+1} = a_k + x a_{k-1}.
    if n == 0:
        return 1.0, x
    a, b = lucas_pair(x, n - 1)
    return b, b + x * a


def recursive_tuple_result(x):
    a, b = lucas_pair(x[0], 6)
    c, d = lucas_pair(x[1], 4)
    return a * d - b * c


@numba.njit
def scale_tail(x, i, factor):
    # Scales x[i:] in place, each factor from the element scaled before it.
    if i == x.shape[0]:
        return
    x[i] *= factor
    scale_tail(x, i + 1, 0.5 * factor + 0.25 * x[i])


def recursion_in_place(x, factor):
    scale_tail(x, 0, factor)


def _forest(rng, n):
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        parent[i] = rng.integers(-1, i) if rng.random() < 0.85 else -1
    return parent


CASES = [
    Case(
        name="recursive_power_sum",
        func=recursive_power_sum,
        make_args=lambda rng: (float(rng.uniform(0.5, 1.2)), 6),
        tags=frozenset({"call", "recursion"}),
    ),
    Case(
        name="recursive_tree_sum",
        func=recursive_tree_sum,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 23),),
        tags=frozenset({"call", "recursion", "slice", "math"}),
    ),
    Case(
        name="recursive_horner",
        func=recursive_horner,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 9), float(rng.uniform(-0.9, 0.9))),
        tags=frozenset({"call", "recursion"}),
    ),
    Case(
        name="recursive_clenshaw",
        func=recursive_clenshaw,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 10), float(rng.uniform(-1.0, 1.0))),
        tags=frozenset({"call", "recursion", "math"}),
    ),
    Case(
        name="mutual_recursion",
        func=mutual_recursion,
        make_args=lambda rng: (float(rng.uniform(-1.0, 1.0)), 7),
        tags=frozenset({"call", "recursion", "mutual", "math"}),
    ),
    Case(
        name="recursion_writing_output",
        func=recursion_writing_output,
        make_args=lambda rng: (rng.uniform(0.5, 1.5, 12), np.zeros(12)),
        tags=frozenset({"call", "recursion", "inplace", "math"}),
    ),
    Case(
        name="recursive_callee_in_loop",
        func=recursive_callee_in_loop,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 15),),
        tags=frozenset({"call", "recursion", "loop"}),
    ),
    Case(
        name="data_driven_depth",
        func=data_driven_depth,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 30), _forest(rng, 30)),
        tags=frozenset({"call", "recursion", "loop", "integer"}),
    ),
    Case(
        name="value_driven_depth",
        func=value_driven_depth,
        # Away from the powers of two where the depth jumps.
        make_args=lambda rng: (rng.choice([0.3, 1.4, 2.6, 5.5, 11.0, 23.0, 0.7, 3.1], 8) * rng.uniform(0.95, 1.05, 8),),
        tags=frozenset({"call", "recursion", "loop", "branch"}),
    ),
    Case(
        name="recursion_allocating_arrays",
        func=recursion_allocating_arrays,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 9),),
        tags=frozenset({"call", "recursion", "alloc"}),
    ),
    Case(
        name="recursive_tuple_result",
        func=recursive_tuple_result,
        make_args=lambda rng: (rng.uniform(0.2, 0.9, 2),),
        tags=frozenset({"call", "recursion", "tuple"}),
    ),
    Case(
        name="recursion_in_place",
        func=recursion_in_place,
        make_args=lambda rng: (rng.uniform(0.5, 1.5, 10), float(rng.uniform(0.8, 1.2))),
        tags=frozenset({"call", "recursion", "inplace"}),
    ),
]
