"""ADBench's Gaussian mixture objective with a Wishart prior (n = 1000 points).

The numba kernel is tests/adbench/objectives.py's `gmm_objective`, checked
there against ADBench's reference values. Gradients are with respect to
(alphas, means, icf); the points and the prior's hyper-parameters are constant.
"""

from __future__ import annotations

import math

import numpy as np

from tests.adbench.objectives import gmm_objective

from . import SEED, Contender, Instance, concatenate, fresh_kernel

POINTS = 1000
SIZES = {
    "tiny": [(2, 3, 10)],
    "quick": [(2, 5, POINTS), (10, 25, POINTS)],
    # A spread over ADBench's grid (d in 2..64, K in 5..200). enzpy's tape grows with n K d
    # (about 4d slots per point and component: 21 MB at d=64 K=10, n=1000).
    "full": [(2, 5, POINTS), (2, 200, POINTS), (10, 25, POINTS), (10, 200, POINTS), (20, 50, POINTS),
             (32, 25, POINTS), (64, 10, POINTS)],
}


def instances(scale: str) -> list[Instance]:
    return [GmmInstance(d, k, n) for d, k, n in SIZES[scale]]


def lower_triangle_indices(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of icf[:, d:] in ADBench's order: the strict lower triangle column by column."""
    rows, columns = [], []
    for column in range(d):
        for row in range(column + 1, d):
            rows.append(row)
            columns.append(column)
    return np.array(rows, dtype=np.int64), np.array(columns, dtype=np.int64)


def prior_constant(d: int, wishart_gamma: float, wishart_m: int) -> float:
    """The Wishart prior's parameter-free part, once per component (no derivative)."""
    prior_n = d + wishart_m + 1
    multigammaln = 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(0.5 * prior_n + 0.5 * (1 - j)) for j in range(1, d + 1))
    return prior_n * d * (math.log(wishart_gamma) - 0.5 * math.log(2.0)) - multigammaln


class GmmInstance(Instance):
    family = "GMM"
    adbench = True

    def __init__(self, d: int, k: int, n: int):
        self.d, self.k, self.n = d, k, n
        rng = np.random.default_rng([SEED, d, k, n])
        # As ADBench's generator: uniform parameters, normal points, gamma = 1, m = 0.
        self.alphas = rng.standard_normal(k)
        self.means = rng.random((k, d))
        self.icf = rng.random((k, d * (d + 1) // 2))
        self.x = rng.standard_normal((n, d))
        self.wishart_gamma, self.wishart_m = 1.0, 0
        self.rows, self.columns = lower_triangle_indices(d)

    @property
    def label(self) -> str:
        return f"d={self.d} K={self.k}" + ("" if self.n == POINTS else f" n={self.n}")

    def arguments(self, alphas=None, means=None, icf=None) -> tuple:
        return (self.alphas if alphas is None else alphas, self.means if means is None else means,
                self.icf if icf is None else icf, self.x, self.wishart_gamma, self.wishart_m)

    # -- references

    def numpy_objective(self) -> float:
        d, k, n = self.d, self.k, self.n
        q_diagonals = np.exp(self.icf[:, :d])
        sum_qs = self.icf[:, :d].sum(axis=1)
        lower = np.zeros((k, d, d))
        lower[:, self.rows, self.columns] = self.icf[:, d:]
        centered = self.x[:, None, :] - self.means[None, :, :]                  # (n, k, d)
        transformed = q_diagonals * centered + np.einsum("kij,nkj->nki", lower, centered)
        main_term = self.alphas + sum_qs - 0.5 * (transformed ** 2).sum(axis=2)  # (n, k)
        slse = log_sum_exp_rows(main_term).sum()
        err = -n * d * 0.5 * math.log(2.0 * math.pi) + slse - n * log_sum_exp_rows(self.alphas[None])[0]
        frobenius = (q_diagonals ** 2).sum(axis=1) + (self.icf[:, d:] ** 2).sum(axis=1)
        prior = (0.5 * self.wishart_gamma ** 2 * frobenius - self.wishart_m * sum_qs).sum()
        return err + prior - k * prior_constant(d, self.wishart_gamma, self.wishart_m)

    def parameters(self) -> np.ndarray:
        return np.concatenate([self.alphas, self.means.ravel(), self.icf.ravel()])

    def objective_at(self, flat: np.ndarray) -> float:
        alphas, means, icf = np.split(flat, [self.k, self.k + self.means.size])
        return gmm_objective(*self.arguments(alphas, means.reshape(self.means.shape), icf.reshape(self.icf.shape)))

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(gmm_objective) if fresh else gmm_objective
        arguments = self.arguments()
        return lambda: kernel(*arguments)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import differentiate

        differentiable = differentiate(fresh_kernel(gmm_objective), optimize=optimize)

        def call():
            # value_and_grad, as JAX's column: from the third call it runs through enzpy's compiled
            # trampoline (fast_calls), with x and the Wishart parameters Const (not in wrt).
            return differentiable.value_and_grad(self.alphas, self.means, self.icf, self.x, self.wishart_gamma,
                                                 self.wishart_m, wrt=(0, 1, 2))[1]

        return Contender(call, concatenate)

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy
        d, k, n = self.d, self.k, self.n
        rows, columns = self.rows, self.columns
        gamma, m = self.wishart_gamma, self.wishart_m
        constant = -n * d * 0.5 * math.log(2.0 * math.pi) - k * prior_constant(d, gamma, m)

        def objective(alphas, means, icf, x):
            q_diagonals = numpy.exp(icf[:, :d])
            sum_qs = icf[:, :d].sum(axis=1)
            lower = numpy.zeros((k, d, d)).at[:, rows, columns].set(icf[:, d:])
            centered = x[:, None, :] - means[None, :, :]
            transformed = q_diagonals * centered + numpy.einsum("kij,nkj->nki", lower, centered)
            main_term = alphas + sum_qs - 0.5 * (transformed ** 2).sum(axis=2)
            logsumexp = jax.scipy.special.logsumexp
            slse = logsumexp(main_term, axis=1).sum()
            frobenius = (q_diagonals ** 2).sum(axis=1) + (icf[:, d:] ** 2).sum(axis=1)
            prior = (0.5 * gamma ** 2 * frobenius - m * sum_qs).sum()
            return constant + slse - n * logsumexp(alphas) + prior

        value_and_grad = jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2)))
        arguments = tuple(numpy.asarray(a) for a in (self.alphas, self.means, self.icf, self.x))
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate(result[1]), lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        d, k, n = self.d, self.k, self.n
        rows, columns = torch.from_numpy(self.rows), torch.from_numpy(self.columns)
        gamma, m = self.wishart_gamma, self.wishart_m
        constant = -n * d * 0.5 * math.log(2.0 * math.pi) - k * prior_constant(d, gamma, m)
        x = torch.from_numpy(self.x)
        parameters = [torch.tensor(a, requires_grad=True) for a in (self.alphas, self.means, self.icf)]

        def call():
            alphas, means, icf = parameters
            q_diagonals = torch.exp(icf[:, :d])
            sum_qs = icf[:, :d].sum(dim=1)
            lower = torch.zeros((k, d, d), dtype=torch.float64)
            lower = lower.index_put((torch.arange(k)[:, None], rows[None, :], columns[None, :]), icf[:, d:])
            centered = x[:, None, :] - means[None, :, :]
            transformed = q_diagonals * centered + torch.einsum("kij,nkj->nki", lower, centered)
            main_term = alphas + sum_qs - 0.5 * (transformed ** 2).sum(dim=2)
            slse = torch.logsumexp(main_term, dim=1).sum()
            frobenius = (q_diagonals ** 2).sum(dim=1) + (icf[:, d:] ** 2).sum(dim=1)
            prior = (0.5 * gamma ** 2 * frobenius - m * sum_qs).sum()
            value = constant + slse - n * torch.logsumexp(alphas, dim=0) + prior
            return value.detach(), torch.autograd.grad(value, parameters)

        return Contender(call, lambda result: concatenate(result[1]), lambda result: float(result[0]))


def log_sum_exp_rows(values: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) per row, shifted by the row maximum as ADBench does."""
    largest = values.max(axis=1)
    return np.log(np.exp(values - largest[:, None]).sum(axis=1)) + largest
