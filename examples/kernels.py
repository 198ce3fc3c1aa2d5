"""Example numba kernels for the README and the `enzpy` command."""

import math

import numba
import numpy as np


@numba.njit
def logistic(z):
    return 1.0 / (1.0 + math.exp(-z))


@numba.njit
def logistic_loss(weights, features, labels):
    """Mean logistic-regression loss: a scalar from arrays, with a call and a loop nest."""
    n, d = features.shape
    total = 0.0
    for i in range(n):
        z = 0.0
        for j in range(d):
            z += features[i, j] * weights[j]
        p = logistic(z)
        total -= labels[i] * math.log(p) + (1.0 - labels[i]) * math.log(1.0 - p)
    return total / n


@numba.njit
def heat_steps(u, alpha, steps):
    """Explicit 1-D heat equation, updating `u` in place; returns the final energy."""
    n = u.shape[0]
    scratch = np.empty(n)
    for _ in range(steps):
        for i in range(1, n - 1):
            scratch[i] = u[i] + alpha * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = scratch[i]
    energy = 0.0
    for i in range(n):
        energy += u[i] * u[i]
    return energy
