"""A CUDA-style explicit heat equation run on CPU threads, and its gradient by launches in reverse.

    .venv/bin/python examples/cuda_heat.py            (after pip install -e ".[cuda]"; no GPU needed)

The kernel is written as for a GPU: one thread per point, the block's points and one neighbour on
each side in shared memory, a barrier, then the update. `enzpy.cuda.on_cpu` runs STEPS launches
(blocks in parallel on CPU threads). The objective is a weighted sum of the final state; its
gradient with respect to the initial state and the diffusion number comes from the reverse-mode
kernel `enzpy.cuda.differentiate`, launched once per step in reverse order on the saved states
(each launch turns the adjoint of a step's output into the adjoint of its input). The script
checks it against 5-point finite differences of the whole time loop.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float64

import enzpy.cuda
from enzpy import Active, Duplicated

THREADS = 64
TILE = THREADS + 2
POINTS, STEPS = 1000, 50


@cuda.jit
def heat_step(u, u_next, nu):
    tile = cuda.shared.array(TILE, float64)
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
        u_next[i] = tile[t + 1] + nu * (tile[t] - 2.0 * tile[t + 1] + tile[t + 2])


BLOCKS = (POINTS + THREADS - 1) // THREADS
run = enzpy.cuda.on_cpu(heat_step)[BLOCKS, THREADS]
gradient = enzpy.cuda.differentiate(heat_step)[BLOCKS, THREADS]


def states(u0, nu):
    """u0 and the state after each step."""
    history = [u0.copy()]
    for _ in range(STEPS):
        following = np.empty_like(u0)
        run(history[-1], following, nu)
        history.append(following)
    return history


def objective(u0, nu, weights):
    return float(weights @ states(u0, nu)[-1])


def objective_gradient(u0, nu, weights):
    """(d objective / d u0, d objective / d nu): one reverse launch per step, last step first."""
    history = states(u0, nu)
    adjoint, d_nu = weights.copy(), 0.0
    for k in range(STEPS, 0, -1):
        previous = np.zeros_like(u0)
        (step_d_nu,) = gradient(Duplicated(history[k - 1], previous), Duplicated(history[k].copy(), adjoint),
                                Active(nu))
        adjoint, d_nu = previous, d_nu + step_d_nu
    return adjoint, d_nu


def main() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, POINTS)
    u0 = np.exp(-100.0 * (x - 0.5) ** 2) + 0.05 * rng.standard_normal(POINTS)
    nu, weights = 0.2, rng.uniform(0.0, 1.0, POINTS)
    du0, d_nu = objective_gradient(u0, nu, weights)
    direction, h = rng.uniform(-1.0, 1.0, POINTS), 1e-4
    moved = lambda s: objective(u0 + s * direction, nu + 0.5 * s, weights)  # noqa: E731
    expected = (-moved(2 * h) + 8 * moved(h) - 8 * moved(-h) + moved(-2 * h)) / (12 * h)
    got = du0 @ direction + 0.5 * d_nu
    print(f"objective {objective(u0, nu, weights):.6f}; directional derivative {got:.12f}, "
          f"finite differences {expected:.12f}, relative difference {abs(got - expected) / abs(expected):.1e}")
    assert abs(got - expected) <= 1e-7 * abs(expected), "the gradient disagrees with finite differences"


if __name__ == "__main__":
    main()
