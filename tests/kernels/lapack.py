"""Kernels built on np.linalg, as numpy users write them: solves in least-squares and
ridge objectives, log-determinants of covariances, Gaussian log-likelihoods through
a Cholesky factor, inverses, eigen-energies, nuclear norms, least-squares residuals.
numba lowers them to its LAPACK helpers (numba/_lapack.c), differentiated at the
LAPACK level (enzpy/rules/lapack.py).

CASES return a float (checked by tests/test_lapack.py like the scalar corpus);
ARRAY_CASES return arrays or tuples (checked through vjp / jvp, as
tests/test_array_results.py checks its kernels). Inputs are well conditioned and
away from the degeneracies where the derivatives do not exist (repeated
eigenvalues or singular values, rank deficiency); eigenvectors and singular
vectors enter only through sign-invariant expressions, as any objective of them
must.
"""

import math

import numba
import numpy as np

from .case import Case


# ---------------------------------------------------------------- solve (gesv)

@numba.njit
def solve_quadratic(A, b):
    x = np.linalg.solve(A, b)
    return x @ x


@numba.njit
def ridge_objective(X, y, penalty):
    # Ridge regression: the normal equations solved inside the loss.
    n = X.shape[1]
    w = np.linalg.solve(X.T @ X + penalty * np.eye(n), X.T @ y)
    r = X @ w - y
    return r @ r + penalty * (w @ w)


@numba.njit
def solve_matrix_right_side(A, B):
    X = np.linalg.solve(A, B)
    total = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            total += (i + 1.0) * X[i, j] * X[i, j] - j * X[i, j]
    return total


@numba.njit
def implicit_euler(A, x, steps):
    # (I + h A) x_{k+1} = x_k: a solve per step, the factors of each step kept for reverse mode.
    n = x.shape[0]
    step_matrix = np.eye(n) + 0.1 * A
    for _ in range(steps):
        x = np.linalg.solve(step_matrix, x)
    return x @ x


# ---------------------------------------------------------------- LU (getrf, getri)

@numba.njit
def determinant(A):
    return np.linalg.det(A)


@numba.njit
def log_det_covariance(X):
    m, n = X.shape
    covariance = X.T @ X / m + 0.1 * np.eye(n)
    sign, logdet = np.linalg.slogdet(covariance)
    return sign * logdet


@numba.njit
def inverse_weighted(A, W):
    return np.sum(W * np.linalg.inv(A))


@numba.njit
def inverse_quadratic_form(A, b):
    return b @ (np.linalg.inv(A) @ b)


# ---------------------------------------------------------------- Cholesky (potrf)

@numba.njit
def gaussian_log_likelihood(S, x, mu):
    # log N(x; mu, S) through S = L L^T: a triangular solve (np.linalg.solve of L) and log det S = 2 sum log L_ii.
    L = np.linalg.cholesky(S)
    z = np.linalg.solve(L, x - mu)
    n = x.shape[0]
    return -0.5 * (z @ z) - np.sum(np.log(np.diag(L))) - 0.5 * n * math.log(2.0 * math.pi)


@numba.njit
def cholesky_weighted(S, W):
    return np.sum(W * np.linalg.cholesky(S))


# ---------------------------------------------------------------- symmetric eigenproblem (syevd)

@numba.njit
def eigen_energy(S, u):
    w, V = np.linalg.eigh(S)
    top = V[:, -1] @ u                        # the sign of an eigenvector is arbitrary: use its square
    return np.sum(w * np.arange(1.0, w.shape[0] + 1.0)) + top * top


@numba.njit
def eigenvalue_spread(S):
    w = np.linalg.eigvalsh(S)
    return w[-1] - w[0] + np.sum(w * w)


# ---------------------------------------------------------------- SVD (gesdd)

@numba.njit
def nuclear_norm(A):
    u, s, vt = np.linalg.svd(A)               # full_matrices: U is m x m
    return np.sum(s)


@numba.njit
def rank_one_residual(A):
    u, s, vt = np.linalg.svd(A, full_matrices=False)
    residual = A - s[0] * np.outer(u[:, 0], vt[0])
    return np.sum(residual * residual)


@numba.njit
def largest_and_smallest_singular_values(A):
    return np.linalg.norm(A, 2) + 0.5 * np.linalg.norm(A, -2)


@numba.njit
def condition_number(A):
    return np.linalg.cond(A)


@numba.njit
def pseudo_inverse_applied(A, b):
    return np.sum(np.linalg.pinv(A) @ b)


# ---------------------------------------------------------------- least squares (gelsd)

@numba.njit
def least_squares_residual(A, b):
    x, residuals, rank, singular_values = np.linalg.lstsq(A, b)
    return residuals[0] + 0.1 * (x @ x)


@numba.njit
def least_norm_solution(A, b, w):
    # Fewer equations than unknowns: lstsq's minimum-norm solution.
    return w @ np.linalg.lstsq(A, b)[0]


@numba.njit
def least_squares_with_singular_values(A, B):
    X, residuals, rank, singular_values = np.linalg.lstsq(A, B)
    return np.sum(X * X) + np.sum(residuals) + np.sum(singular_values)


# ---------------------------------------------------------------- float32

@numba.njit
def solve_quadratic_float32(A, b):
    x = np.linalg.solve(A, b)
    return x @ x


@numba.njit
def log_det_float32(S):
    return np.linalg.slogdet(S)[1]


@numba.njit
def cholesky_log_det_float32(S):
    return np.float32(2.0) * np.sum(np.log(np.diag(np.linalg.cholesky(S))))


@numba.njit
def eigenvalues_float32(S):
    return np.sum(np.linalg.eigvalsh(S) * np.arange(1, S.shape[0] + 1).astype(np.float32))


# ---------------------------------------------------------------- array results

def solve_result(A, b):
    return np.linalg.solve(A, b)


def cholesky_result(S):
    return np.linalg.cholesky(S)


def inverse_result(A):
    return np.linalg.inv(A)


def eigen_result(S):
    w, V = np.linalg.eigh(S)
    return w, V * V


def singular_values_result(A):
    return np.linalg.svd(A)[1]


def least_squares_result(A, b):
    return np.linalg.lstsq(A, b)[0]


# ---------------------------------------------------------------- inputs

def _general(rng, n, shift=3.0):
    """A well-conditioned square matrix whose rows are shuffled, so that getrf pivots."""
    matrix = rng.standard_normal((n, n)) + shift * np.eye(n)
    return matrix[rng.permutation(n)].copy()


def _positive_definite(rng, n):
    """G G^T / n + I: eigenvalues spread apart and away from 0."""
    g = rng.standard_normal((n, n))
    return g @ g.T / n + np.eye(n) + np.diag(np.linspace(0.0, 1.0, n))


def _rectangular(rng, m, n):
    """Singular values well apart: U diag(s) V^T with s = 3, 2.2, 1.5, ..."""
    u = np.linalg.qr(rng.standard_normal((m, m)))[0]
    v = np.linalg.qr(rng.standard_normal((n, n)))[0]
    s = np.zeros((m, n))
    for i in range(min(m, n)):
        s[i, i] = 3.0 / (1.0 + 0.4 * i)
    return u @ s @ v.T


def _single(*arrays):
    return tuple(a.astype(np.float32) for a in arrays)


CASES = [
    Case("lapack_solve_quadratic", solve_quadratic, lambda rng: (_general(rng, 5), rng.standard_normal(5)),
         tags=frozenset({"lapack", "solve"})),
    Case("lapack_solve_fortran_matrix", solve_quadratic,
         lambda rng: (np.asfortranarray(_general(rng, 4)), rng.standard_normal(4)), tags=frozenset({"lapack", "solve"})),
    Case("lapack_ridge_objective", ridge_objective,
         lambda rng: (rng.standard_normal((8, 3)), rng.standard_normal(8), 0.7), tags=frozenset({"lapack", "solve"})),
    Case("lapack_solve_matrix_right_side", solve_matrix_right_side,
         lambda rng: (_general(rng, 4), rng.standard_normal((4, 3))), tags=frozenset({"lapack", "solve"})),
    Case("lapack_implicit_euler", implicit_euler,
         lambda rng: (_positive_definite(rng, 4), rng.standard_normal(4), 3), tags=frozenset({"lapack", "solve", "loop"})),
    Case("lapack_determinant", determinant, lambda rng: (_general(rng, 4, 2.0),), tags=frozenset({"lapack", "lu"})),
    Case("lapack_log_det_covariance", log_det_covariance, lambda rng: (rng.standard_normal((10, 4)),),
         tags=frozenset({"lapack", "lu"})),
    Case("lapack_inverse_weighted", inverse_weighted, lambda rng: (_general(rng, 4), rng.standard_normal((4, 4))),
         tags=frozenset({"lapack", "lu", "inv"})),
    Case("lapack_inverse_quadratic_form", inverse_quadratic_form,
         lambda rng: (_general(rng, 5), rng.standard_normal(5)), tags=frozenset({"lapack", "lu", "inv"})),
    Case("lapack_gaussian_log_likelihood", gaussian_log_likelihood,
         lambda rng: (_positive_definite(rng, 4), rng.standard_normal(4), 0.3 * rng.standard_normal(4)),
         tags=frozenset({"lapack", "cholesky", "solve"})),
    Case("lapack_cholesky_weighted", cholesky_weighted,
         lambda rng: (_positive_definite(rng, 5), rng.standard_normal((5, 5))), tags=frozenset({"lapack", "cholesky"})),
    Case("lapack_eigen_energy", eigen_energy, lambda rng: (_positive_definite(rng, 4), rng.standard_normal(4)),
         tags=frozenset({"lapack", "eigh"})),
    Case("lapack_eigenvalue_spread", eigenvalue_spread, lambda rng: (_positive_definite(rng, 5),),
         tags=frozenset({"lapack", "eigh"})),
    Case("lapack_nuclear_norm", nuclear_norm, lambda rng: (_rectangular(rng, 5, 3),), tags=frozenset({"lapack", "svd"})),
    Case("lapack_nuclear_norm_wide", nuclear_norm, lambda rng: (_rectangular(rng, 3, 5),),
         tags=frozenset({"lapack", "svd"})),
    Case("lapack_rank_one_residual", rank_one_residual, lambda rng: (_rectangular(rng, 4, 3),),
         tags=frozenset({"lapack", "svd"})),
    Case("lapack_largest_and_smallest_singular_values", largest_and_smallest_singular_values, lambda rng: (_rectangular(rng, 4, 4),),
         tags=frozenset({"lapack", "svd"})),
    Case("lapack_condition_number", condition_number, lambda rng: (_rectangular(rng, 3, 3),),
         tags=frozenset({"lapack", "svd"})),
    Case("lapack_pseudo_inverse_applied", pseudo_inverse_applied,
         lambda rng: (_rectangular(rng, 5, 3), rng.standard_normal(5)), tags=frozenset({"lapack", "svd"})),
    Case("lapack_least_squares_residual", least_squares_residual,
         lambda rng: (_rectangular(rng, 7, 3), rng.standard_normal(7)), tags=frozenset({"lapack", "lstsq"})),
    Case("lapack_least_norm_solution", least_norm_solution,
         lambda rng: (_rectangular(rng, 3, 5), rng.standard_normal(3), rng.standard_normal(5)),
         tags=frozenset({"lapack", "lstsq"})),
    Case("lapack_least_squares_with_singular_values", least_squares_with_singular_values,
         lambda rng: (_rectangular(rng, 6, 4), rng.standard_normal((6, 2))), tags=frozenset({"lapack", "lstsq"})),
    Case("lapack_solve_quadratic_float32", solve_quadratic_float32,
         lambda rng: _single(_general(rng, 4), rng.standard_normal(4)), tags=frozenset({"lapack", "float32"})),
    Case("lapack_log_det_float32", log_det_float32, lambda rng: _single(_positive_definite(rng, 4)),
         tags=frozenset({"lapack", "float32"})),
    Case("lapack_cholesky_log_det_float32", cholesky_log_det_float32, lambda rng: _single(_positive_definite(rng, 4)),
         tags=frozenset({"lapack", "float32"})),
    Case("lapack_eigenvalues_float32", eigenvalues_float32, lambda rng: _single(_positive_definite(rng, 4)),
         tags=frozenset({"lapack", "float32"})),
]

ARRAY_CASES = [
    Case("lapack_result_solve", solve_result, lambda rng: (_general(rng, 4), rng.standard_normal(4)),
         tags=frozenset({"lapack", "solve"})),
    Case("lapack_result_cholesky", cholesky_result, lambda rng: (_positive_definite(rng, 4),),
         tags=frozenset({"lapack", "cholesky"})),
    Case("lapack_result_inverse", inverse_result, lambda rng: (_general(rng, 4),), tags=frozenset({"lapack", "inv"})),
    Case("lapack_result_eigen", eigen_result, lambda rng: (_positive_definite(rng, 4),),
         tags=frozenset({"lapack", "eigh", "tuple"})),
    Case("lapack_result_singular_values", singular_values_result, lambda rng: (_rectangular(rng, 3, 4),),
         tags=frozenset({"lapack", "svd"})),
    Case("lapack_result_least_squares", least_squares_result,
         lambda rng: (_rectangular(rng, 6, 3), rng.standard_normal(6)), tags=frozenset({"lapack", "lstsq"})),
]
