"""Kernels written the way numpy users write them: array expressions that return arrays and tuples.

Checked by tests/test_array_results.py through `vjp`, `jvp` and `jacobian`
(not by the scalar-result corpus harnesses: these kernels return arrays).
"""

import math

import numpy as np
from numba import njit

from .case import Case


def _vector(rng, n=7, low=-1.0, high=1.0):
    return rng.uniform(low, high, n)


# ---------------------------------------------------------------- elementwise

def sine_times(x, y):
    return np.sin(x) * y


def gaussian_over(x, y):
    return np.exp(-x ** 2) / (1.0 + y * y)


def tanh_layer(x, w, b):
    return np.tanh(x * w + b)


def leaky_relu(x):
    return np.where(x > 0.0, x, 0.1 * x)


def clipped(x):
    return np.clip(x, -0.5, 0.5) * x


def absolute_times(x, y):
    return np.abs(x) * y


def elementwise_maximum(x, y):
    return np.maximum(x, y) + np.minimum(x, 2.0 * y)


def log_of_square(x):
    return np.log1p(x * x) + np.sqrt(np.abs(x) + 1.0)


def ones_plus(x, a):
    return np.ones_like(x) * a + x * x


def linspace_scaled(a, b):
    return np.linspace(0.0, 1.0, 9) * a + b


def float32_elementwise(x, y):
    return np.sin(x) * y + np.float32(0.5) * x


# ---------------------------------------------------------------- reductions inside array results

def softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def log_softmax(x):
    shifted = x - np.max(x)
    return shifted - np.log(np.sum(np.exp(shifted)))


def normalized(x):
    return x / np.sqrt(np.sum(x * x))


def standardized(A):
    return (A - A.mean()) / A.std()


def cumulative(x):
    return np.cumsum(x * x)


def column_sums(A):
    return A.sum(axis=0) * 2.0


def statistics(x):
    return np.mean(x), np.var(x), np.std(x), np.prod(1.0 + 0.1 * x)


def norms(x):
    return np.linalg.norm(x), np.max(np.abs(x)), np.min(x)


# ---------------------------------------------------------------- slicing and stencils

def differences(x):
    return x[1:] - x[:-1]


def numpy_diff(x):
    return np.diff(x * x)


def laplacian(u):
    return u[:-2] - 2.0 * u[1:-1] + u[2:]


def every_other(x):
    return x[::2] * 3.0


def view_of_input(x):
    return x[1:-1]


def identity(x):
    return x


def transposed(A):
    return A.T * 2.0


def hypotenuse(A, B):
    return np.sqrt(A ** 2 + B ** 2)


def broadcast_outer(x, y):
    return x[:, np.newaxis] * y[np.newaxis, :]


def row_broadcast(A, b):
    return A * b + b


# ---------------------------------------------------------------- building arrays

def concatenated(x, y):
    return np.concatenate((x, y * 2.0))


def stacked(x, y):
    return np.stack((x, y * y))


def filled_in_loop(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] * x[(i + 1) % x.shape[0]]
    return out


def zeros_2d(x, y):
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = math.sin(x[i] - y[j])
    return out


def gathered(x, index):
    return x[index] * 2.0


def scattered(x, y, index):
    out = x.copy()
    for k in range(index.shape[0]):
        out[index[k]] += y[k]
    return out


def sorted_values(x):
    return np.sort(x * 3.0)


def interpolated(query, fp):
    xp = np.linspace(-2.0, 2.0, fp.shape[0])
    return np.interp(query, xp, fp)


def convolved(x, kernel):
    return np.convolve(x, kernel)


# ---------------------------------------------------------------- tuples

def array_and_sum(x):
    return x * 2.0, np.sum(x)


def with_integer(x):
    return x * x, np.argmax(x)


def nested(x, y):
    return x, (y * 2.0, np.sum(x * y))


def polar(x, y):
    return np.sqrt(x * x + y * y), np.arctan2(y, x)


# ---------------------------------------------------------------- physics

def lotka_volterra(state, alpha, beta):
    prey, predator = state[0], state[1]
    return np.array([alpha * prey - beta * prey * predator, beta * prey * predator - 0.4 * predator])


def rk4_step(u, dt):
    def rhs(v):
        return -v + 0.1 * v * v
    k1 = rhs(u)
    k2 = rhs(u + 0.5 * dt * k1)
    k3 = rhs(u + 0.5 * dt * k2)
    k4 = rhs(u + dt * k3)
    return u + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def heat_steps(u0, nu):
    u = u0.copy()
    for _ in range(20):
        u[1:-1] = u[1:-1] + nu * (u[:-2] - 2.0 * u[1:-1] + u[2:])
    return u


@njit
def _flux(u):
    return 0.5 * u * u


def burgers_step(u, dt):
    f = _flux(u)
    out = u.copy()
    out[1:] = u[1:] - dt * (f[1:] - f[:-1])
    return out


def swapped_buffers(u, nu):
    a = u
    b = np.empty_like(u)
    for _ in range(6):
        b[0] = a[0]
        b[-1] = a[-1]
        for i in range(1, a.shape[0] - 1):
            b[i] = a[i] + nu * (a[i - 1] - 2.0 * a[i] + a[i + 1])
        a, b = b, a
    return a.copy()


CASES = [
    Case("result_sine_times", sine_times, lambda rng: (_vector(rng), _vector(rng)), tags=frozenset({"elementwise"})),
    Case("result_gaussian_over", gaussian_over, lambda rng: (_vector(rng), _vector(rng)),
         tags=frozenset({"elementwise"})),
    Case("result_tanh_layer", tanh_layer, lambda rng: (_vector(rng), _vector(rng), _vector(rng)),
         tags=frozenset({"elementwise"})),
    Case("result_leaky_relu", leaky_relu, lambda rng: (_vector(rng, 9) + 0.05,), tags=frozenset({"where"})),
    Case("result_clipped", clipped, lambda rng: (np.array([-0.9, -0.3, 0.1, 0.45, 0.8, 1.2]),),
         tags=frozenset({"clip"})),
    Case("result_absolute_times", absolute_times, lambda rng: (_vector(rng) + 0.05, _vector(rng)),
         tags=frozenset({"elementwise"})),
    Case("result_elementwise_maximum", elementwise_maximum,
         lambda rng: (np.array([0.3, -0.2, 0.9, -0.7]), np.array([0.1, 0.4, -0.3, -0.1])),
         tags=frozenset({"minmax"})),
    Case("result_log_of_square", log_of_square, lambda rng: (_vector(rng) + 0.05,), tags=frozenset({"elementwise"})),
    Case("result_ones_plus", ones_plus, lambda rng: (_vector(rng), 0.7), tags=frozenset({"scalar"})),
    Case("result_linspace_scaled", linspace_scaled, lambda rng: (1.3, -0.4), tags=frozenset({"scalar"})),
    Case("result_float32_elementwise", float32_elementwise,
         lambda rng: (_vector(rng).astype(np.float32), _vector(rng).astype(np.float32)),
         tags=frozenset({"float32"})),
    Case("result_softmax", softmax, lambda rng: (_vector(rng, 6),), tags=frozenset({"reduction"})),
    Case("result_log_softmax", log_softmax, lambda rng: (_vector(rng, 6),), tags=frozenset({"reduction"})),
    Case("result_normalized", normalized, lambda rng: (_vector(rng),), tags=frozenset({"reduction"})),
    Case("result_standardized", standardized, lambda rng: (rng.uniform(-1, 1, (3, 4)),),
         tags=frozenset({"reduction", "2d"})),
    Case("result_cumulative", cumulative, lambda rng: (_vector(rng),), tags=frozenset({"cumsum"})),
    Case("result_column_sums", column_sums, lambda rng: (rng.uniform(-1, 1, (3, 4)),),
         tags=frozenset({"reduction", "2d"})),
    Case("result_statistics", statistics, lambda rng: (_vector(rng),), tags=frozenset({"tuple", "reduction"})),
    Case("result_norms", norms, lambda rng: (np.array([0.3, -1.2, 0.7, 0.05]),),
         tags=frozenset({"tuple", "reduction"})),
    Case("result_differences", differences, lambda rng: (_vector(rng),), tags=frozenset({"slice"})),
    Case("result_numpy_diff", numpy_diff, lambda rng: (_vector(rng),), tags=frozenset({"slice"})),
    Case("result_laplacian", laplacian, lambda rng: (_vector(rng, 9),), tags=frozenset({"stencil"})),
    Case("result_every_other", every_other, lambda rng: (_vector(rng, 9),), tags=frozenset({"slice"})),
    Case("result_view_of_input", view_of_input, lambda rng: (_vector(rng),), tags=frozenset({"view"})),
    Case("result_identity", identity, lambda rng: (_vector(rng),), tags=frozenset({"view"})),
    Case("result_transposed", transposed, lambda rng: (rng.uniform(-1, 1, (3, 4)),), tags=frozenset({"2d"})),
    Case("result_hypotenuse", hypotenuse,
         lambda rng: (rng.uniform(0.2, 1, (3, 4)), rng.uniform(0.2, 1, (3, 4))), tags=frozenset({"2d"})),
    Case("result_broadcast_outer", broadcast_outer, lambda rng: (_vector(rng, 4), _vector(rng, 5)),
         tags=frozenset({"broadcast", "2d"})),
    Case("result_row_broadcast", row_broadcast, lambda rng: (rng.uniform(-1, 1, (3, 4)), _vector(rng, 4)),
         tags=frozenset({"broadcast", "2d"})),
    Case("result_concatenated", concatenated, lambda rng: (_vector(rng, 4), _vector(rng, 5)),
         tags=frozenset({"concatenate"})),
    Case("result_stacked", stacked, lambda rng: (_vector(rng, 4), _vector(rng, 4)), tags=frozenset({"stack"})),
    Case("result_filled_in_loop", filled_in_loop, lambda rng: (_vector(rng),), tags=frozenset({"loop"})),
    Case("result_zeros_2d", zeros_2d, lambda rng: (_vector(rng, 3), _vector(rng, 4)), tags=frozenset({"loop"})),
    Case("result_gathered", gathered, lambda rng: (_vector(rng), np.array([4, 0, 2, 2, 6])),
         tags=frozenset({"fancy"})),
    Case("result_scattered", scattered, lambda rng: (_vector(rng), _vector(rng, 4), np.array([1, 5, 1, 3])),
         tags=frozenset({"fancy"})),
    Case("result_sorted_values", sorted_values, lambda rng: (np.array([0.3, -1.2, 0.7, 0.05, 2.0, -0.4]),),
         tags=frozenset({"sort"})),
    Case("result_interpolated", interpolated,
         lambda rng: (np.array([-1.7, -0.3, 0.55, 1.0]), _vector(rng, 6)), tags=frozenset({"interp"})),
    Case("result_convolved", convolved, lambda rng: (_vector(rng, 8), _vector(rng, 3)),
         tags=frozenset({"convolve"})),
    Case("result_array_and_sum", array_and_sum, lambda rng: (_vector(rng),), tags=frozenset({"tuple"})),
    Case("result_with_integer", with_integer, lambda rng: (np.array([0.3, -1.2, 0.7, 0.05]),),
         tags=frozenset({"tuple"})),
    Case("result_nested", nested, lambda rng: (_vector(rng, 4), _vector(rng, 4)), tags=frozenset({"tuple"})),
    Case("result_polar", polar, lambda rng: (_vector(rng, 5) + 1.5, _vector(rng, 5)), tags=frozenset({"tuple"})),
    Case("result_lotka_volterra", lotka_volterra, lambda rng: (np.array([1.2, 0.8]), 0.9, 0.5),
         tags=frozenset({"physics"})),
    Case("result_rk4_step", rk4_step, lambda rng: (_vector(rng), 0.05), tags=frozenset({"physics"})),
    Case("result_heat_steps", heat_steps, lambda rng: (_vector(rng, 12), 0.2), tags=frozenset({"physics"})),
    Case("result_burgers_step", burgers_step, lambda rng: (_vector(rng, 10), 0.05), tags=frozenset({"physics"})),
    Case("result_swapped_buffers", swapped_buffers, lambda rng: (_vector(rng, 10), 0.2),
         tags=frozenset({"physics", "swap"})),
]
