"""A linear solve inside a loss: gradient of 0.5 |A^-1 b - t|^2 with respect to A and b.

    x = np.linalg.solve(A, b),  loss = 0.5 sum((x - t)^2)

numba's np.linalg.solve copies A and b and calls LAPACK's gesv (numba_xgesv):
an LU factorization, 2/3 n^3 flops, which dominates the primal at n = 200.
enzpy differentiates it at the LAPACK level (enzpy/rules/lapack.py): the
reverse sweep reuses the saved LU factors for one more solve with the
transpose (getrs, n^2 flops), bbar = A^-T xbar, and Abar = -bbar x^T, so the
gradient costs little more than the primal (the issue's target: at most 4x).
"""

from __future__ import annotations

import numba
import numpy as np

from . import SEED, Contender, Instance, concatenate, fresh_kernel

SIZES = {"tiny": [8], "quick": [200], "full": [200, 400]}


def instances(scale: str) -> list[Instance]:
    return [SolveInstance(n) for n in SIZES[scale]]


@numba.njit
def linear_system_loss(A, b, target):
    x = np.linalg.solve(A, b)
    loss = 0.0
    for i in range(x.shape[0]):
        difference = x[i] - target[i]
        loss += difference * difference
    return 0.5 * loss


def linear_system_objective(numpy_like, A, b, target):
    """The same loss for NumPy, JAX and PyTorch arrays."""
    difference = numpy_like.linalg.solve(A, b) - target
    return 0.5 * (difference * difference).sum()


class SolveInstance(Instance):
    family = "Solve"

    def __init__(self, n: int):
        self.n = n
        rng = np.random.default_rng(SEED)
        # Well conditioned (eigenvalues near 1 +- 0.5), with row swaps for the pivoting.
        self.A = np.eye(n) + 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)
        self.b = rng.standard_normal(n)
        self.target = rng.standard_normal(n)

    @property
    def label(self) -> str:
        return f"n={self.n}"

    # -- references

    def numpy_objective(self) -> float:
        return float(linear_system_objective(np, self.A, self.b, self.target))

    def parameters(self) -> np.ndarray:
        return concatenate([self.A, self.b])

    def objective_at(self, flat: np.ndarray) -> float:
        n = self.n
        return linear_system_loss(flat[:n * n].reshape(n, n).copy(), flat[n * n:].copy(), self.target)

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(linear_system_loss) if fresh else linear_system_loss
        return lambda: kernel(self.A, self.b, self.target)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(linear_system_loss), optimize=optimize)

        def call():
            shadows = [np.zeros_like(self.A), np.zeros_like(self.b)]
            differentiable.autodiff(Duplicated(self.A, shadows[0]), Duplicated(self.b, shadows[1]),
                                    Const(self.target))
            return shadows

        return Contender(call, concatenate)

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy

        def loss(A, b, target):
            return linear_system_objective(numpy, A, b, target)

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        arguments = [numpy.asarray(self.A), numpy.asarray(self.b), numpy.asarray(self.target)]
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate(result[1]), lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        A, b = torch.tensor(self.A, requires_grad=True), torch.tensor(self.b, requires_grad=True)
        target = torch.tensor(self.target)

        def call():
            value = linear_system_objective(torch, A, b, target)
            return value.detach(), torch.autograd.grad(value, (A, b))

        return Contender(call, lambda result: concatenate(result[1]), lambda result: float(result[0]))
