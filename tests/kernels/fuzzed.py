"""Kernels the fuzzer (enzpy.fuzz) found wrong, shrunk and tidied: each stays in the corpus so
that the bug it found cannot come back. The comment above each says what was wrong."""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def hypot_at_the_origin(x, M):
    # fuzz seed 1065 (float32, overlapping arguments): math.hypot of two constants that are 0
    # on the first trip. Its partials were 0 / 0 = NaN, and forward mode multiplied them by the
    # zero tangents of a zeroed buffer: NaN, where reverse mode (the operands inactive) said 0.
    n = x.shape[0]
    zeros = np.zeros_like(x)
    work = x.copy()
    work, zeros = zeros, work
    total = 0.0
    for i in range(n):
        M[(i + 1) % n, n // 2] = math.hypot(work[(2 * i) % n], i * 0.25) + zeros[i] * x[i]
        total += M[i, n // 2] * M[i, 0]
    return total


CASES = [
    Case(
        name="fuzzed_hypot_at_the_origin",
        func=hypot_at_the_origin,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 4), rng.uniform(-1.0, 1.0, (4, 4))),
        tags=frozenset({"loop", "math", "2d", "inplace", "allocation"}),
    ),
]
