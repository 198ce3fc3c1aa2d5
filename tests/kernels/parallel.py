"""prange kernels (`@njit(parallel=True)`), as numba users parallelize: reductions, maps that
read a shared input, stencils (neighbouring iterations read the same element, so their
adjoints meet there), a row-parallel matrix loop, prange loops inside a serial time loop,
numba's own parfors from array expressions, and an array reduction.

Sizes stay within the corpus's 64 elements per axis; at two threads each thread still gets
its own schedule entries.
"""

import math

import numba
import numpy as np
from numba import prange

from .case import Case


@numba.njit(parallel=True)
def prange_sum_of_squares(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i] * x[i]
    return s


@numba.njit(parallel=True)
def prange_map_shared_weight(x, w, y):
    # Every iteration reads w[0] and w[1]: their adjoints gather from all iterations.
    for i in prange(x.shape[0]):
        y[i] = w[0] * math.sin(x[i]) + w[1] * x[i] * x[i]


@numba.njit(parallel=True)
def prange_stencil(u, out):
    for i in prange(1, u.shape[0] - 1):
        out[i] = u[i - 1] - 2.0 * u[i] + u[i + 1] + 0.1 * u[i] * u[i]


@numba.njit(parallel=True)
def prange_rows(a, b):
    out = np.empty(a.shape[0])
    for i in prange(a.shape[0]):
        s = 0.0
        for j in range(a.shape[1]):
            s += a[i, j] * b[j]
        out[i] = math.tanh(s)
    return np.sum(out * out)


@numba.njit(parallel=True)
def prange_heat_steps(u, nu, steps):
    un = np.empty_like(u)
    for t in range(steps):
        for i in prange(1, u.shape[0] - 1):
            un[i] = u[i] + nu * (u[i + 1] - 2.0 * u[i] + u[i - 1]) - 0.05 * u[i] ** 3
        for i in prange(1, u.shape[0] - 1):
            u[i] = un[i]
    return np.sum(u * u)


@numba.njit(parallel=True)
def prange_variance(x):
    s = 0.0
    q = 0.0
    for i in prange(x.shape[0]):
        s += x[i]
        q += x[i] * x[i]
    n = x.shape[0]
    return q / n - (s / n) ** 2


@numba.njit(parallel=True)
def prange_product(x):
    p = 1.0
    for i in prange(x.shape[0]):
        p *= 1.0 + 0.1 * x[i]
    return p


@numba.njit(parallel=True)
def prange_max(x):
    m = -np.inf
    for i in prange(x.shape[0]):
        m = max(m, math.sin(3.0 * x[i]) + x[i])
    return m


@numba.njit(parallel=True)
def prange_branches(x, y):
    for i in prange(x.shape[0]):
        if x[i] > 0.0:
            y[i] = math.sqrt(x[i]) * x[i]
        else:
            y[i] = x[i] * x[i] - x[i]


@numba.njit(parallel=True)
def parallel_array_expression(x, y):
    # parallel=True turns array expressions and np.sum into parfors of their own.
    return np.sum(np.exp(-x * x) * y) + np.sum(x * y)


@numba.njit(parallel=True)
def prange_array_reduction(x, basis):
    # An array reduction: every iteration adds into the whole of h.
    h = np.zeros(basis.shape[1])
    for i in prange(x.shape[0]):
        h += x[i] * basis[i]
    return np.sum(h * h)


@numba.njit(parallel=True)
def prange_2d_stencil(a, out):
    for i in prange(1, a.shape[0] - 1):
        for j in range(1, a.shape[1] - 1):
            out[i, j] = 0.25 * (a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1]) * a[i, j]


@numba.njit(parallel=True)
def prange_gather(x, index, w, y):
    # Iterations read x at shared indices: the adjoint scatters into x's shadow from every thread.
    for i in prange(index.shape[0]):
        y[i] = w[i] * x[index[i]] * x[index[i]]


def _uniform(rng, low, high, size):
    return rng.uniform(low, high, size)


CASES = [
    Case(name="prange_sum_of_squares", func=prange_sum_of_squares,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64),), tags=frozenset({"parallel", "reduction"})),
    Case(name="prange_map_shared_weight", func=prange_map_shared_weight,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64), _uniform(rng, 0.5, 1.5, 2), np.zeros(64)),
         tags=frozenset({"parallel", "inplace"})),
    Case(name="prange_stencil", func=prange_stencil,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 60), np.zeros(60)),
         tags=frozenset({"parallel", "inplace"})),
    Case(name="prange_rows", func=prange_rows,
         make_args=lambda rng: (_uniform(rng, -0.5, 0.5, (40, 12)), _uniform(rng, -1.0, 1.0, 12)),
         tags=frozenset({"parallel", "2d", "alloc"})),
    Case(name="prange_heat_steps", func=prange_heat_steps,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64), 0.2, 5),
         tags=frozenset({"parallel", "inplace", "stepper", "alloc"})),
    Case(name="prange_variance", func=prange_variance,
         make_args=lambda rng: (_uniform(rng, -1.0, 2.0, 64),), tags=frozenset({"parallel", "reduction"})),
    Case(name="prange_product", func=prange_product,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64),), tags=frozenset({"parallel", "reduction"})),
    Case(name="prange_max", func=prange_max,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64),), tags=frozenset({"parallel", "reduction", "minmax"})),
    Case(name="prange_branches", func=prange_branches,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64), np.zeros(64)),
         tags=frozenset({"parallel", "inplace", "branch"})),
    Case(name="parallel_array_expression", func=parallel_array_expression,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 64), _uniform(rng, -1.0, 1.0, 64)),
         tags=frozenset({"parallel", "arrayexpr", "alloc"})),
    Case(name="prange_array_reduction", func=prange_array_reduction,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 50), _uniform(rng, -1.0, 1.0, (50, 6))),
         tags=frozenset({"parallel", "reduction", "alloc"})),
    Case(name="prange_gather", func=prange_gather,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 8), rng.integers(0, 8, 64), _uniform(rng, 0.5, 1.5, 64),
                                np.zeros(64)),
         tags=frozenset({"parallel", "inplace", "gather"})),
    Case(name="prange_2d_stencil", func=prange_2d_stencil,
         make_args=lambda rng: (_uniform(rng, 0.5, 1.5, (24, 20)), np.zeros((24, 20))),
         tags=frozenset({"parallel", "inplace", "2d"})),
]
