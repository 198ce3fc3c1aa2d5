"""CUDA-style kernels (numba.cuda API) with NumPy references, for tests/test_cuda.py and the benchmarks.

Each case gives the kernel, its launch (grid, block, dynamic shared bytes), fresh
arguments and a NumPy reference that applies the kernel's effect to copies of
them. The kernels are written as one writes them for a GPU: thread indices,
shared tiles with halos, tree reductions between barriers, atomics.
Importing this module needs numba-cuda (the `cuda` extra), not a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import cuda, float32, float64

TPB = 32
"""Threads per block of the 1-D kernels."""
HALO_TILE = TPB + 2
"""The stencil's shared tile: a block's elements and one neighbour on each side."""
TILE = 8
"""Tile width of the matrix multiply (TILE x TILE threads per block)."""


@dataclass(frozen=True)
class CudaCase:
    name: str
    kernel: object
    grid: tuple
    block: tuple
    arguments: Callable[[np.random.Generator], list]
    """Fresh arguments (arrays, scalars)."""
    reference: Callable[[list], None]
    """Applies the kernel's effect to the arguments in place (NumPy)."""
    dynamic_shared: int = 0
    """Bytes of dynamic shared memory (`cuda.shared.array(0, ...)`)."""
    tolerance: float = 1e-12


# -- 1. saxpy: one thread per element, a scalar coefficient

@cuda.jit
def saxpy(a, x, y, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + y[i]


def _saxpy_reference(args):
    a, x, y, out = args
    out[:] = a * x + y


# -- 2. shared-memory tree reduction, one atomic add per block

@cuda.jit
def sum_of_squares(x, out):
    partial = cuda.shared.array(TPB, float64)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    partial[t] = x[i] * x[i] if i < x.shape[0] else 0.0
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            partial[t] += partial[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        cuda.atomic.add(out, 0, partial[0])


def _sum_of_squares_reference(args):
    x, out = args
    out[0] += np.sum(x * x)


# -- 3. a stencil with its halo in shared memory

@cuda.jit
def shared_stencil(u, out):
    tile = cuda.shared.array(HALO_TILE, float64)
    n = u.shape[0]
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    if i < n:
        tile[t + 1] = u[i]
    if t == 0:
        tile[0] = u[i - 1] if 0 < i < n + 1 else 0.0
    if t == cuda.blockDim.x - 1 or i == n - 1:
        tile[t + 2] = u[i + 1] if i + 1 < n else 0.0
    cuda.syncthreads()
    if i < n:
        left, centre, right = tile[t], tile[t + 1], tile[t + 2]
        out[i] = left * right - math.sin(centre) + 0.5 * centre * centre


def _shared_stencil_reference(args):
    u, out = args
    padded = np.concatenate([[0.0], u, [0.0]])
    out[:] = padded[:-2] * padded[2:] - np.sin(u) + 0.5 * u * u


# -- 4. a histogram-like scatter with atomics

@cuda.jit
def weighted_histogram(bins, weights, x, histogram):
    i = cuda.grid(1)
    if i < x.shape[0]:
        cuda.atomic.add(histogram, bins[i], weights[i] * math.exp(-x[i] * x[i]))


def _weighted_histogram_reference(args):
    bins, weights, x, histogram = args
    np.add.at(histogram, bins, weights * np.exp(-x * x))


# -- 5. a tiled matrix multiply (two barriers per tile)

@cuda.jit
def tiled_matmul(a, b, c):
    tile_a = cuda.shared.array((TILE, TILE), float64)
    tile_b = cuda.shared.array((TILE, TILE), float64)
    row, column = cuda.grid(2)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    total = 0.0
    for start in range(0, a.shape[1], TILE):
        tile_a[tx, ty] = a[row, start + ty] if row < a.shape[0] and start + ty < a.shape[1] else 0.0
        tile_b[tx, ty] = b[start + tx, column] if column < b.shape[1] and start + tx < b.shape[0] else 0.0
        cuda.syncthreads()
        for k in range(TILE):
            total += tile_a[tx, k] * tile_b[k, ty]
        cuda.syncthreads()
    if row < c.shape[0] and column < c.shape[1]:
        c[row, column] = total


def _tiled_matmul_reference(args):
    a, b, c = args
    c[:] = a @ b


# -- 6. an explicit time step (launched repeatedly by tests and benchmarks)

@cuda.jit
def heat_step(u, u_next, nu):
    i = cuda.grid(1)
    n = u.shape[0]
    if 0 < i < n - 1:
        u_next[i] = u[i] + nu * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - 0.1 * u[i] ** 3
    elif i == 0 or i == n - 1:
        u_next[i] = u[i]


def _heat_step_reference(args):
    u, u_next, nu = args
    u_next[1:-1] = u[1:-1] + nu * (u[:-2] - 2.0 * u[1:-1] + u[2:]) - 0.1 * u[1:-1] ** 3
    u_next[0], u_next[-1] = u[0], u[-1]


# -- 7. elementwise math on a 2-D grid

@cuda.jit
def elementwise_2d(x, y, out):
    i, j = cuda.grid(2)
    if i < x.shape[0] and j < x.shape[1]:
        out[i, j] = math.exp(-x[i, j] * x[i, j]) * math.cos(y[i, j]) + math.sqrt(1.0 + x[i, j] ** 2) \
            + math.tanh(x[i, j] * y[i, j])


def _elementwise_2d_reference(args):
    x, y, out = args
    out[:] = np.exp(-x * x) * np.cos(y) + np.sqrt(1.0 + x * x) + np.tanh(x * y)


# -- 8. per-thread local arrays

@cuda.jit
def local_polynomial(x, coefficients, out):
    powers = cuda.local.array(6, float64)
    i = cuda.grid(1)
    if i < x.shape[0]:
        powers[0] = 1.0
        for k in range(1, 6):
            powers[k] = powers[k - 1] * x[i]
        total = 0.0
        for k in range(6):
            total += coefficients[k] * powers[k]
        out[i] = total


def _local_polynomial_reference(args):
    x, coefficients, out = args
    out[:] = sum(coefficients[k] * x ** k for k in range(6))


# -- 9. a row-wise softmax, one block per row: a max and a sum reduction between barriers

@cuda.jit
def row_softmax(x, out):
    scratch = cuda.shared.array(TPB, float64)
    row = cuda.blockIdx.x
    t = cuda.threadIdx.x
    columns = x.shape[1]
    largest = -1e300
    for j in range(t, columns, cuda.blockDim.x):
        largest = max(largest, x[row, j])
    scratch[t] = largest
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            scratch[t] = max(scratch[t], scratch[t + step])
        cuda.syncthreads()
        step //= 2
    shift = scratch[0]
    cuda.syncthreads()
    total = 0.0
    for j in range(t, columns, cuda.blockDim.x):
        total += math.exp(x[row, j] - shift)
    scratch[t] = total
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if t < step:
            scratch[t] += scratch[t + step]
        cuda.syncthreads()
        step //= 2
    norm = scratch[0]
    for j in range(t, columns, cuda.blockDim.x):
        out[row, j] = math.exp(x[row, j] - shift) / norm


def _row_softmax_reference(args):
    x, out = args
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out[:] = e / e.sum(axis=1, keepdims=True)


# -- 10. a 3-D launch (block and grid indices in y and z)

@cuda.jit
def volume_map(u, out):
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    z = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    if x < u.shape[0] and y < u.shape[1] and z < u.shape[2]:
        out[x, y, z] = u[x, y, z] * (1.0 + x) - u[x, y, z] ** 2 * (y + 2 * z)


def _volume_map_reference(args):
    u, out = args
    x, y, z = np.meshgrid(*(np.arange(n) for n in u.shape), indexing="ij")
    out[:] = u * (1.0 + x) - u ** 2 * (y + 2 * z)


# -- 11. float32 with a device function

@cuda.jit(device=True)
def _smooth(v):
    return v / (float32(1.0) + abs(v))


@cuda.jit
def soft_sign32(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = _smooth(x[i]) * x[i]


def _soft_sign32_reference(args):
    x, out = args
    out[:] = (x / (np.float32(1.0) + np.abs(x)) * x).astype(np.float32)


# -- 12. dynamic shared memory (its size given at launch)

@cuda.jit
def block_reverse_dynamic(x, out):
    buffer = cuda.shared.array(0, float64)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    buffer[t] = x[i] * x[i]
    cuda.syncthreads()
    out[i] = buffer[cuda.blockDim.x - 1 - t] * x[i]


def _block_reverse_dynamic_reference(args):
    x, out = args
    blocks = x.reshape(-1, TPB)
    out[:] = ((blocks * blocks)[:, ::-1] * blocks).ravel()


def _uniform(shape, low=-1.0, high=1.0, dtype=np.float64):
    return lambda rng: rng.uniform(low, high, shape).astype(dtype)


CASES = [
    CudaCase("saxpy", saxpy, (4,), (TPB,), lambda rng: [1.7, *(rng.uniform(-1, 1, 100) for _ in range(2)),
                                                         np.zeros(100)], _saxpy_reference),
    CudaCase("sum_of_squares", sum_of_squares, (4,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 120), np.zeros(1)], _sum_of_squares_reference),
    CudaCase("shared_stencil", shared_stencil, (4,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 110), np.zeros(110)], _shared_stencil_reference),
    CudaCase("weighted_histogram", weighted_histogram, (4,), (TPB,),
             lambda rng: [rng.integers(0, 7, 128), rng.uniform(0.5, 1.5, 128), rng.uniform(-1, 1, 128),
                          np.zeros(7)], _weighted_histogram_reference),
    CudaCase("tiled_matmul", tiled_matmul, (3, 2), (TILE, TILE),
             lambda rng: [rng.uniform(-1, 1, (20, 13)), rng.uniform(-1, 1, (13, 11)), np.zeros((20, 11))],
             _tiled_matmul_reference),
    CudaCase("heat_step", heat_step, (3,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 90), np.zeros(90), 0.2], _heat_step_reference),
    CudaCase("elementwise_2d", elementwise_2d, (2, 3), (8, 4),
             lambda rng: [rng.uniform(-1, 1, (13, 10)), rng.uniform(-1, 1, (13, 10)), np.zeros((13, 10))],
             _elementwise_2d_reference),
    CudaCase("local_polynomial", local_polynomial, (3,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 80), rng.uniform(-1, 1, 6), np.zeros(80)],
             _local_polynomial_reference),
    CudaCase("row_softmax", row_softmax, (5,), (TPB,),
             lambda rng: [rng.uniform(-2, 2, (5, 45)), np.zeros((5, 45))], _row_softmax_reference),
    CudaCase("volume_map", volume_map, (2, 2, 3), (4, 3, 2),
             lambda rng: [rng.uniform(-1, 1, (7, 5, 6)), np.zeros((7, 5, 6))], _volume_map_reference),
    CudaCase("soft_sign32", soft_sign32, (2,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 50).astype(np.float32), np.zeros(50, np.float32)],
             _soft_sign32_reference, tolerance=1e-5),
    CudaCase("block_reverse_dynamic", block_reverse_dynamic, (3,), (TPB,),
             lambda rng: [rng.uniform(-1, 1, 3 * TPB), np.zeros(3 * TPB)], _block_reverse_dynamic_reference,
             dynamic_shared=TPB * 8),
]
