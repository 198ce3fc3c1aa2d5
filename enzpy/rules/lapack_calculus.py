"""The matrix calculus behind rules/lapack.py, compiled by numba.

Each LAPACK helper numba's np.linalg calls has a tangent and an adjoint entry
point here: a C function (`numba.cfunc`) the derivative code calls with the
call's sizes, the factors the call produced, and the shadows. The math is
written as numpy code on column-major arrays and runs on the same BLAS and
LAPACK numba's helpers call: products are numba's `@` (gemm), triangular
solves are scipy's `?trsm` and `?getrs` from `scipy.linalg.cython_blas` /
`cython_lapack` (the libraries numba's _lapack.c binds), bound here as
`enzpy_dtrsm` and friends so that the compiled code can be cached.

Conventions, for a factorization that works in place:
- tangent: the shadow of an in-place operand holds the input's tangent on entry
  and the output's tangent on return;
- adjoint: it holds the output's adjoint on entry and the input's adjoint on
  return (the call overwrote the input, so nothing is added to older adjoints);
  a shadow of a write-only output (eigenvalues, singular values) is zeroed.
Parts of an operand the routine neither reads nor writes (the other triangle
of a Cholesky factorization) keep their shadow.
"""

from __future__ import annotations

import warnings

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types
from numba.core.errors import NumbaPerformanceWarning
from numba.extending import get_cython_function_address
from numba.np.linalg import F_INT_nbtype, F_INT_nptype

_FORTRAN = {"dtrsm": "cython_blas", "strsm": "cython_blas", "dgetrs": "cython_lapack", "sgetrs": "cython_lapack"}
for _name, _library in _FORTRAN.items():
    llvm.add_symbol(f"enzpy_{_name}", get_cython_function_address(f"scipy.linalg.{_library}", _name))

_POINTER = types.voidptr
_dtrsm = types.ExternalFunction("enzpy_dtrsm", types.void(*[_POINTER] * 11))
_strsm = types.ExternalFunction("enzpy_strsm", types.void(*[_POINTER] * 11))
_dgetrs = types.ExternalFunction("enzpy_dgetrs", types.void(*[_POINTER] * 9))
_sgetrs = types.ExternalFunction("enzpy_sgetrs", types.void(*[_POINTER] * 9))

_LEFT, _RIGHT, _UPPER, _LOWER, _NO, _TRANSPOSED, _UNIT = 76, 82, 85, 76, 78, 84, 85   # 'L' 'R' 'U' 'L' 'N' 'T' 'U'

jit = numba.njit(cache=True, nogil=True)


# -- column-major blocks ----------------------------------------------------------------------------

@jit
def block(pointer, rows, columns, leading):
    """The column-major rows x columns block at `pointer`, columns `leading` apart, as a view."""
    if rows <= 0 or columns <= 0:
        return numba.carray(pointer, (0, 1)).T[:0, :]
    return numba.carray(pointer, (columns, max(leading, rows))).T[:rows, :]


@jit
def fortran_empty(rows, columns, dtype):
    return np.empty((columns, rows), dtype).T


@jit
def fortran_zeros(rows, columns, dtype):
    return np.zeros((columns, rows), dtype).T


@jit
def fortran_copy(matrix):
    """A column-major copy: what trsm and getrs take."""
    copy = fortran_empty(matrix.shape[0], matrix.shape[1], matrix.dtype)
    copy[:, :] = matrix
    return copy


@jit
def triangle(matrix, lower, diagonal):
    """A column-major copy of one triangle of `matrix` (the diagonal scaled by `diagonal`), zeros elsewhere."""
    rows, columns = matrix.shape
    part = fortran_zeros(rows, columns, matrix.dtype)
    for j in range(columns):
        for i in range(rows):
            if (i > j and lower) or (i < j and not lower):
                part[i, j] = matrix[i, j]
            elif i == j:
                part[i, j] = matrix[i, j] * diagonal
    return part


@jit
def symmetric_from(matrix, lower):
    """The symmetric matrix whose `lower` (or upper) triangle `matrix` holds."""
    n = matrix.shape[0]
    full = fortran_empty(n, n, matrix.dtype)
    for j in range(n):
        for i in range(n):
            full[i, j] = matrix[max(i, j), min(i, j)] if lower else matrix[min(i, j), max(i, j)]
    return full


@jit
def store_triangle(target, matrix, lower, off_diagonal):
    """target's `lower` (or upper) triangle, diagonal included, := matrix's, the off-diagonal
    entries scaled by `off_diagonal`; the other triangle is left alone."""
    n = matrix.shape[0]
    for j in range(n):
        for i in range(n):
            if i == j:
                target[i, j] = matrix[i, j]
            elif (i > j) == lower:
                target[i, j] = off_diagonal * matrix[i, j]


@jit
def nonzero(matrix):
    for j in range(matrix.shape[1]):
        for i in range(matrix.shape[0]):
            if matrix[i, j] != 0:
                return True
    return False


# -- BLAS and LAPACK kernels ------------------------------------------------------------------------

@jit
def triangular_solve(factor, right_side, left, upper, transposed, unit):
    """right_side := op(T)^-1 right_side (left) or right_side op(T)^-1, T the `upper` (or
    lower) triangle of `factor`; both column-major blocks (rows adjacent: a `block` view or
    a `fortran_*` array, of one kind), `right_side` in place."""
    rows, columns = right_side.shape
    if rows == 0 or columns == 0:
        return
    flags = np.empty(4, np.uint8)
    flags[0] = _LEFT if left else _RIGHT
    flags[1] = _UPPER if upper else _LOWER
    flags[2] = _TRANSPOSED if transposed else _NO
    flags[3] = _UNIT if unit else _NO
    sizes = np.empty(4, F_INT_nptype)
    sizes[0], sizes[1] = rows, columns
    sizes[2] = factor.strides[1] // factor.itemsize
    sizes[3] = right_side.strides[1] // right_side.itemsize
    alpha = np.ones(1, right_side.dtype)
    arguments = (flags[0:].ctypes, flags[1:].ctypes, flags[2:].ctypes, flags[3:].ctypes, sizes[0:].ctypes,
                 sizes[1:].ctypes, alpha.ctypes, factor.ctypes, sizes[2:].ctypes, right_side.ctypes, sizes[3:].ctypes)
    if right_side.itemsize == 8:
        _dtrsm(*arguments)
    else:
        _strsm(*arguments)


@jit
def lu_solve(factors, pivots, right_side, transposed):
    """right_side := A^-1 right_side (A^-T: `transposed`) from getrf's factors of A = P L U
    (column-major blocks, as for triangular_solve)."""
    rows, columns = right_side.shape
    if rows == 0 or columns == 0:
        return
    trans = np.empty(1, np.uint8)
    trans[0] = _TRANSPOSED if transposed else _NO
    sizes = np.empty(5, F_INT_nptype)
    sizes[0], sizes[1] = rows, columns
    sizes[2] = factors.strides[1] // factors.itemsize
    sizes[3] = right_side.strides[1] // right_side.itemsize
    sizes[4] = 0                                                  # info
    arguments = (trans.ctypes, sizes[0:].ctypes, sizes[1:].ctypes, factors.ctypes, sizes[2:].ctypes, pivots.ctypes,
                 right_side.ctypes, sizes[3:].ctypes, sizes[4:].ctypes)
    if right_side.itemsize == 8:
        _dgetrs(*arguments)
    else:
        _sgetrs(*arguments)


@jit
def permute_rows(pivots, matrix, forward):
    """matrix := P^T matrix (`forward`, the order getrf swapped rows in) or P matrix."""
    count = pivots.shape[0]
    for step in range(count):
        row = step if forward else count - 1 - step
        other = pivots[row] - 1
        if other != row:
            for j in range(matrix.shape[1]):
                matrix[row, j], matrix[other, j] = matrix[other, j], matrix[row, j]


@jit
def unit_lower_and_upper(factors):
    """L (unit lower) and U (upper) of getrf's packed factors, as full matrices."""
    lower = triangle(factors, True, 0.0)
    for i in range(factors.shape[0]):
        lower[i, i] = 1.0
    return lower, triangle(factors, False, 1.0)


# -- getrf: P^T A = L U, packed in place ------------------------------------------------------------

@jit
def lu_tangent(factors, pivots, tangent):
    """dL = L tril(F, -1), dU = triu(F) U with F = L^-1 P^T dA U^-1 (packed like the factors)."""
    f = fortran_copy(tangent)
    permute_rows(pivots, f, True)
    triangular_solve(factors, f, True, False, False, True)
    triangular_solve(factors, f, False, True, False, False)
    lower, upper = unit_lower_and_upper(factors)
    packed = triangle(lower @ triangle(f, True, 0.0), True, 0.0)
    packed += triangle(triangle(f, False, 1.0) @ upper, False, 1.0)
    return packed


@jit
def lu_adjoint(factors, pivots, adjoint):
    """Abar = P L^-T (tril(L^T Lbar, -1) + triu(Ubar U^T)) U^-T (Lbar, Ubar packed in `adjoint`)."""
    lower, upper = unit_lower_and_upper(factors)
    middle = triangle(lower.T @ triangle(adjoint, True, 0.0), True, 0.0)
    middle += triangle(triangle(adjoint, False, 1.0) @ upper.T, False, 1.0)
    triangular_solve(factors, middle, True, False, True, True)
    triangular_solve(factors, middle, False, True, True, False)
    permute_rows(pivots, middle, False)
    return middle


def getrf_tangent(m, n, factors, leading, pivots, shadow, has_shadow):
    if has_shadow == 0 or m == 0 or n == 0:
        return
    packed = block(shadow, m, n, leading)
    if m != n:                                # numba factors square matrices only
        packed[:, :] = np.nan
        return
    lu = fortran_copy(block(factors, n, n, leading))
    packed[:, :] = lu_tangent(lu, numba.carray(pivots, (n,)), packed)


def getrf_adjoint(m, n, factors, leading, pivots, shadow, has_shadow):
    if has_shadow == 0 or m == 0 or n == 0:
        return
    packed = block(shadow, m, n, leading)
    if m != n:
        packed[:, :] = np.nan
        return
    lu = fortran_copy(block(factors, n, n, leading))
    packed[:, :] = lu_adjoint(lu, numba.carray(pivots, (n,)), packed)


# -- gesv: A X = B; A := its LU factors, B := X -----------------------------------------------------

@jit
def subtract_product(target, left, right):
    """target -= left right^T; few columns (a vector right side) as rank-1 updates, in place."""
    if left.shape[1] > 16:
        target -= left @ right.T
        return
    for c in range(left.shape[1]):
        for j in range(target.shape[1]):
            factor = right[j, c]
            for i in range(target.shape[0]):
                target[i, j] -= left[i, c] * factor


def gesv_tangent(n, count, factors, leading, pivots, solution, leading_b, shadow_a, has_a, shadow_b, has_b):
    """dX = A^-1 (dB - dA X); the factors' tangent as getrf's."""
    if n == 0:
        return
    lu = block(factors, n, n, leading)        # getrs and trsm read the factors where they are
    p = numba.carray(pivots, (n,))
    x = block(solution, n, count, leading_b)
    da = block(shadow_a, n * has_a, n, leading)
    if has_b:
        db = block(shadow_b, n, count, leading_b)
        if has_a:
            subtract_product(db, da, x.T)
        lu_solve(lu, p, db, False)
    if has_a:
        da[:, :] = lu_tangent(lu, p, da)


def gesv_adjoint(n, count, factors, leading, pivots, solution, leading_b, shadow_a, has_a, shadow_b, has_b):
    """Bbar = A^-T Xbar, Abar = -Bbar X^T, plus getrf's adjoint of the factors' adjoint (when
    anything read the factors: np.linalg.solve does not, and the check is O(n^2))."""
    if n == 0:
        return
    lu = block(factors, n, n, leading)
    p = numba.carray(pivots, (n,))
    x = block(solution, n, count, leading_b)
    da = block(shadow_a, n * has_a, n, leading)
    if has_a and nonzero(da):
        da[:, :] = lu_adjoint(lu, p, da)
    if has_b:
        db = block(shadow_b, n, count, leading_b)
        lu_solve(lu, p, db, True)             # in place: the shadow of B becomes Bbar
        if has_a:
            subtract_product(da, db, x)


# -- getri: A^-1 from A's LU factors, in place ------------------------------------------------------

def getri_tangent(n, factors, leading, pivots, inverse, shadow, has_shadow):
    """From the factors' tangent: dA = P (dL U + L dU), d(A^-1) = -A^-1 dA A^-1."""
    if has_shadow == 0 or n == 0:
        return
    lower, upper = unit_lower_and_upper(fortran_copy(block(factors, n, n, leading)))
    d = block(shadow, n, n, leading)
    change = triangle(d, True, 0.0) @ upper + lower @ triangle(d, False, 1.0)
    permute_rows(numba.carray(pivots, (n,)), change, False)
    a_inverse = fortran_copy(block(inverse, n, n, leading))
    d[:, :] = -(a_inverse @ change @ a_inverse)


def getri_adjoint(n, factors, leading, pivots, inverse, shadow, has_shadow):
    """G = -A^-T Ibar A^-T is A's adjoint; the factors': Lbar = tril(P^T G U^T, -1), Ubar = triu(L^T P^T G)."""
    if has_shadow == 0 or n == 0:
        return
    lower, upper = unit_lower_and_upper(fortran_copy(block(factors, n, n, leading)))
    d = block(shadow, n, n, leading)
    a_inverse = fortran_copy(block(inverse, n, n, leading))
    g = fortran_copy(-(a_inverse.T @ d @ a_inverse.T))
    permute_rows(numba.carray(pivots, (n,)), g, True)
    d[:, :] = triangle(g @ upper.T, True, 0.0) + triangle(lower.T @ g, False, 1.0)


# -- potrf: A = U^T U (uplo 'U') or L L^T ('L'), the factor over A's triangle ----------------------

@jit
def cholesky_tangent(factor, tangent):
    """dU = Psi(U^-T dA U^-1) U, Psi: the upper triangle with the diagonal halved; dA symmetric
    from its upper triangle (the one potrf reads)."""
    s = symmetric_from(tangent, False)
    triangular_solve(factor, s, True, True, True, False)
    triangular_solve(factor, s, False, True, False, False)
    return triangle(triangle(s, False, 0.5) @ factor, False, 1.0)


@jit
def cholesky_adjoint(factor, adjoint):
    """With M = Ubar U^T and Phi = triu(M, 1) + diag(M) / 2: G = U^-1 sym(Phi) U^-T; the upper
    triangle's adjoint is 2 G off the diagonal (each entry stands for two of A's), G on it."""
    m = triangle(adjoint, False, 1.0) @ factor.T
    phi = triangle(m, False, 0.5)
    g = fortran_copy(phi + phi.T)
    g *= 0.5                                   # in place: a float32 factor keeps float32 (trsm takes one kind)
    triangular_solve(factor, g, True, True, False, False)
    triangular_solve(factor, g, False, True, True, False)
    return g


def potrf_tangent(lower, n, factor, leading, shadow, has_shadow):
    if has_shadow == 0 or n == 0:
        return
    d = block(shadow, n, n, leading)
    u = triangle(block(factor, n, n, leading), lower == 1, 1.0)
    if lower:                                 # A = L L^T is A^T = U^T U with U = L^T
        store_triangle(d, cholesky_tangent(fortran_copy(u.T), d.T).T, True, 1.0)
    else:
        store_triangle(d, cholesky_tangent(u, d), False, 1.0)


def potrf_adjoint(lower, n, factor, leading, shadow, has_shadow):
    if has_shadow == 0 or n == 0:
        return
    d = block(shadow, n, n, leading)
    u = triangle(block(factor, n, n, leading), lower == 1, 1.0)
    if lower:
        store_triangle(d, cholesky_adjoint(fortran_copy(u.T), d.T).T, True, 2.0)
    else:
        store_triangle(d, cholesky_adjoint(u, d), False, 2.0)


# -- syevd: A = V diag(w) V^T from one triangle of A, w ascending -----------------------------------

@jit
def eigen_gaps(values):
    """F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (defined for distinct eigenvalues)."""
    n = values.shape[0]
    gaps = fortran_zeros(n, n, values.dtype)
    for j in range(n):
        for i in range(n):
            if i != j:
                gaps[i, j] = 1.0 / (values[j] - values[i])
    return gaps


@jit
def _eigen_decomposition(vectors_computed, lower, n, matrix, leading, values):
    """w and V: what the call left (jobz 'V'), or computed again from the input (jobz 'N')."""
    if vectors_computed:
        return numba.carray(values, (n,)).copy(), fortran_copy(block(matrix, n, n, leading))
    w, v = np.linalg.eigh(symmetric_from(block(matrix, n, n, leading), lower == 1))
    return w, fortran_copy(v)


@jit
def eigen_tangent(values, vectors, tangent, lower):
    """C = V^T dA V: dw = diag(C), dV = V (F o C)."""
    c = vectors.T @ symmetric_from(tangent, lower) @ vectors
    return np.diag(c).copy(), vectors @ (eigen_gaps(values) * c)


@jit
def eigen_adjoint(values, vectors, values_adjoint, vectors_adjoint):
    """G = V (diag(wbar) + F o (V^T Vbar)) V^T, symmetrized (A's perturbations are symmetric)."""
    inner = eigen_gaps(values) * (vectors.T @ vectors_adjoint)
    for i in range(values.shape[0]):
        inner[i, i] += values_adjoint[i]
    g = vectors @ inner @ vectors.T
    symmetric = g + g.T
    symmetric *= 0.5
    return symmetric


def syevd_tangent(vectors_computed, lower, n, matrix, leading, values, shadow_a, has_a, shadow_w, has_w):
    if n == 0:
        return
    if has_a == 0:                            # a constant matrix: eigenvalues of tangent 0
        if has_w:
            numba.carray(shadow_w, (n,))[:] = 0.0
        return
    w, v = _eigen_decomposition(vectors_computed, lower, n, matrix, leading, values)
    d = block(shadow_a, n, n, leading)
    dw, dv = eigen_tangent(w, v, d, lower == 1)
    if has_w:
        numba.carray(shadow_w, (n,))[:] = dw
    if vectors_computed:
        d[:, :] = dv
    else:                                     # jobz 'N' destroys A's triangle: a tangent of 0
        store_triangle(d, fortran_zeros(n, n, w.dtype), lower == 1, 1.0)


def syevd_adjoint(vectors_computed, lower, n, matrix, leading, values, shadow_a, has_a, shadow_w, has_w):
    if n == 0:
        return
    w, v = _eigen_decomposition(vectors_computed, lower, n, matrix, leading, values)
    d = block(shadow_a, n * has_a, n, leading)
    wbar = np.zeros(n, w.dtype)
    if has_w:
        wbar[:] = numba.carray(shadow_w, (n,))
        numba.carray(shadow_w, (n,))[:] = 0.0
    if has_a == 0:
        return
    vbar = fortran_copy(d) if vectors_computed else fortran_zeros(n, n, w.dtype)
    g = eigen_adjoint(w, v, wbar, vbar)
    if vectors_computed:
        d[:, :] = 0.0                        # the other triangle was not read
    store_triangle(d, g, lower == 1, 2.0)


# -- gesdd: A = U diag(s) V^T, s descending; jobz 'N' (s only), 'S' (thin), 'A' (full) -------------

@jit
def scale_columns(matrix, factors):
    scaled = fortran_copy(matrix)
    for j in range(matrix.shape[1]):
        scaled[:, j] *= factors[j]
    return scaled


@jit
def scale_rows(matrix, factors):
    scaled = fortran_copy(matrix)
    for i in range(matrix.shape[0]):
        scaled[i, :] *= factors[i]
    return scaled


@jit
def singular_gaps(values):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal (defined for distinct singular values)."""
    k = values.shape[0]
    gaps = fortran_zeros(k, k, values.dtype)
    for j in range(k):
        for i in range(k):
            if i != j:
                gaps[i, j] = 1.0 / (values[j] * values[j] - values[i] * values[i])
    return gaps


@jit
def _singular_decomposition(job, m, n, matrix, leading, values, left, leading_u, right, leading_vt):
    """s, U, V (all of U's and V's columns the call computed), or s and the thin U, V computed
    again from the input (jobz 'N')."""
    k = min(m, n)
    if job == 0:
        u, s, vt = np.linalg.svd(fortran_copy(block(matrix, m, n, leading)), False)
        return s, fortran_copy(u), fortran_copy(vt.T)
    columns_u, rows_vt = (m, n) if job == 2 else (k, k)
    s = numba.carray(values, (k,)).copy()
    return s, fortran_copy(block(left, m, columns_u, leading_u)), fortran_copy(block(right, rows_vt, n,
                                                                                     leading_vt).T)


@jit
def _unknown_job(m, n, k, leading, shadow_a, has_a, shadow_s, has_s):
    """A jobz decided at run time that is neither 'A' nor 'S' (numba never passes one): NaN."""
    if has_a:
        block(shadow_a, m, n, leading)[:, :] = np.nan
    if has_s:
        numba.carray(shadow_s, (k,))[:] = np.nan


def gesdd_tangent(job, m, n, matrix, leading, values, left, leading_u, right, leading_vt,
                  shadow_a, has_a, shadow_s, has_s, shadow_u, has_u, shadow_vt, has_vt):
    """dP = U1^T dA V1: ds = diag(dP),
    dU1 = U1 (F o (dP S + S dP^T)) + (dA V1 - U1 dP) S^-1,
    dV1 = V1 (F o (S dP + dP^T S)) + (dA^T U1 - V1 dP^T) S^-1;
    a full U's other columns U2 turn as little as they can: dU2 = -U1 dU1^T U2 (V2 alike)."""
    k = min(m, n)
    if k == 0:
        return
    if job < 0:
        _unknown_job(m, n, k, leading, shadow_a, has_a, shadow_s, has_s)
        return
    s, u, v = _singular_decomposition(job, m, n, matrix, leading, values, left, leading_u, right, leading_vt)
    u1, v1 = u[:, :k], v[:, :k]
    da = fortran_copy(block(shadow_a, m * has_a, n, leading)) if has_a else fortran_zeros(m, n, s.dtype)
    if has_a:
        block(shadow_a, m, n, leading)[:, :] = 0.0          # the call destroys A
    dp = u1.T @ da @ v1
    if has_s:
        numba.carray(shadow_s, (k,))[:] = np.diag(dp)
    if job == 0:
        return
    gaps = singular_gaps(s)
    du = fortran_zeros(m, u.shape[1], s.dtype)
    dv = fortran_zeros(n, v.shape[1], s.dtype)
    du[:, :k] = u1 @ (gaps * (scale_columns(dp, s) + scale_rows(dp.T, s)))
    dv[:, :k] = v1 @ (gaps * (scale_rows(dp, s) + scale_columns(dp.T, s)))
    if m > k:
        du[:, :k] += scale_columns(da @ v1 - u1 @ dp, 1.0 / s)
    if n > k:
        dv[:, :k] += scale_columns(da.T @ u1 - v1 @ dp.T, 1.0 / s)
    if u.shape[1] > k:
        du[:, k:] = -(u1 @ (du[:, :k].T @ u[:, k:]))
    if v.shape[1] > k:
        dv[:, k:] = -(v1 @ (dv[:, :k].T @ v[:, k:]))
    if has_u:
        block(shadow_u, m, u.shape[1], leading_u)[:, :] = du
    if has_vt:
        block(shadow_vt, v.shape[1], n, leading_vt)[:, :] = dv.T


def gesdd_adjoint(job, m, n, matrix, leading, values, left, leading_u, right, leading_vt,
                  shadow_a, has_a, shadow_s, has_s, shadow_u, has_u, shadow_vt, has_vt):
    """J = F o (U1^T U1bar - U1bar^T U1), K = F o (V1^T V1bar - V1bar^T V1):
    Abar = U1 (J S + diag(sbar) + S K) V1^T + (I - U1 U1^T) U1bar S^-1 V1^T + U1 S^-1 V1bar^T (I - V1 V1^T),
    after folding U2's adjoint into U1's: U1bar -= U2 U2bar^T U1 (V alike)."""
    k = min(m, n)
    if k == 0:
        return
    if job < 0:
        _unknown_job(m, n, k, leading, shadow_a, has_a, shadow_s, has_s)
        return
    s, u, v = _singular_decomposition(job, m, n, matrix, leading, values, left, leading_u, right, leading_vt)
    u1, v1 = u[:, :k], v[:, :k]
    sbar = np.zeros(k, s.dtype)
    if has_s:
        sbar[:] = numba.carray(shadow_s, (k,))
        numba.carray(shadow_s, (k,))[:] = 0.0
    ubar = fortran_zeros(m, u.shape[1], s.dtype)
    vbar = fortran_zeros(n, v.shape[1], s.dtype)
    if has_u and job != 0:
        ubar[:, :] = block(shadow_u, m, u.shape[1], leading_u)
        block(shadow_u, m, u.shape[1], leading_u)[:, :] = 0.0
    if has_vt and job != 0:
        vbar[:, :] = block(shadow_vt, v.shape[1], n, leading_vt).T
        block(shadow_vt, v.shape[1], n, leading_vt)[:, :] = 0.0
    if has_a == 0:
        return
    u1bar, v1bar = fortran_copy(ubar[:, :k]), fortran_copy(vbar[:, :k])
    if u.shape[1] > k:
        u1bar -= u[:, k:] @ (ubar[:, k:].T @ u1)
    if v.shape[1] > k:
        v1bar -= v[:, k:] @ (vbar[:, k:].T @ v1)
    gaps = singular_gaps(s)
    inner = scale_columns(gaps * (u1.T @ u1bar - u1bar.T @ u1), s) + scale_rows(gaps * (v1.T @ v1bar - v1bar.T @ v1), s)
    for i in range(k):
        inner[i, i] += sbar[i]
    abar = u1 @ inner @ v1.T
    if m > k:
        abar += scale_columns(u1bar - u1 @ (u1.T @ u1bar), 1.0 / s) @ v1.T
    if n > k:
        abar += u1 @ scale_columns(v1bar - v1 @ (v1.T @ v1bar), 1.0 / s).T
    block(shadow_a, m, n, leading)[:, :] = abar


# -- gelsd: the least-squares (or least-norm) solution of A X = B, by SVD -------------------------

@jit
def _least_squares(m, n, count, matrix, leading, right_side, leading_b, solution, rcond):
    """A's thin SVD, X (the call's), the residual B - A X, and whether A has full rank as gelsd
    decides it (singular values at most rcond s_1, machine precision for rcond < 0, are zero)."""
    a = fortran_copy(block(matrix, m, n, leading))
    b = fortran_copy(block(right_side, m, count, leading_b))
    u, s, vt = np.linalg.svd(a, False)
    x = fortran_copy(block(solution, n, count, leading_b))
    threshold = rcond if rcond >= 0.0 else (2.220446049250313e-16 if s.itemsize == 8 else 1.1920929e-07)
    full_rank = s[min(m, n) - 1] > threshold * s[0]
    return a, b, fortran_copy(u), s, fortran_copy(vt.T), x, fortran_copy(b - a @ x), full_rank


@jit
def _weights(vectors, directions, residual):
    """c_j = <vectors_j, directions_j> / |residual_j|^2 (0 for a zero residual)."""
    weights = np.zeros(residual.shape[1], residual.dtype)
    for j in range(residual.shape[1]):
        norm = np.sum(residual[:, j] * residual[:, j])
        if norm > 0.0:
            weights[j] = np.sum(vectors[:, j] * directions[:, j]) / norm
    return weights


def gelsd_tangent(m, n, count, matrix, leading, right_side, leading_b, solution, rcond,
                  shadow_a, has_a, shadow_b, has_b, shadow_s, has_s):
    """dX = A^+ (dB - dA X) + (A^T A)^-1 dA^T r + (I - A^+ A) dA^T (A A^T)^-1 B, r = B - A X (the
    middle term is 0 for m <= n, the last for m >= n); ds = diag(U^T dA V). For m > n the
    rows n..m-1 of B hold the residual in some basis of range(A)'s complement: only their
    column norms (|r_j|) are defined, and their tangent is r_j . dr_j / |r_j|^2 times them."""
    k = min(m, n)
    if k == 0 or count == 0:
        return
    a, b, u, s, v, x, r, full_rank = _least_squares(m, n, count, matrix, leading, right_side, leading_b,
                                                     solution, rcond)
    da = fortran_copy(block(shadow_a, m, n, leading)) if has_a else fortran_zeros(m, n, s.dtype)
    db = fortran_copy(block(shadow_b, m, count, leading_b)) if has_b else fortran_zeros(m, count, s.dtype)
    change = db - da @ x
    dx = v @ scale_rows(u.T @ change, 1.0 / s)
    if m > n:
        dx += v @ scale_rows(v.T @ (da.T @ r), 1.0 / (s * s))
    if m < n:
        y = u @ scale_rows(u.T @ b, 1.0 / (s * s))
        z = da.T @ y
        dx += z - v @ (v.T @ z)
    if has_s:
        numba.carray(shadow_s, (k,))[:] = np.diag(u.T @ da @ v)
    if has_a:
        block(shadow_a, m, n, leading)[:, :] = 0.0          # the call destroys A
    if has_b:
        out = block(shadow_b, max(m, n), count, leading_b)
        out[:n, :] = dx
        if m > n:                             # r . dr = r . (dB - dA X): A dX is orthogonal to r
            trailing = fortran_copy(block(solution, m, count, leading_b)[n:, :])
            out[n:m, :] = scale_columns(trailing, _weights(change, r, r))
    if not full_rank:                         # the solution jumps: no derivative
        if has_s:
            numba.carray(shadow_s, (k,))[:] = np.nan
        if has_b:
            block(shadow_b, max(m, n), count, leading_b)[:, :] = np.nan


def gelsd_adjoint(m, n, count, matrix, leading, right_side, leading_b, solution, rcond,
                  shadow_a, has_a, shadow_b, has_b, shadow_s, has_s):
    """The transpose of gelsd_tangent: Z = A^+T Xbar, Bbar = Z + r c, Abar = -(Z + r c) X^T
    + r (A^T A)^-1 Xbar)^T + y ((I - A^+ A) Xbar)^T + U diag(sbar) V^T, c_j the trailing rows'
    weights <trailing_j bar, trailing_j> / |r_j|^2."""
    k = min(m, n)
    if k == 0 or count == 0:
        return
    a, b, u, s, v, x, r, full_rank = _least_squares(m, n, count, matrix, leading, right_side, leading_b,
                                                     solution, rcond)
    sbar = np.zeros(k, s.dtype)
    if has_s:
        sbar[:] = numba.carray(shadow_s, (k,))
        numba.carray(shadow_s, (k,))[:] = 0.0
    xbar = fortran_zeros(n, count, s.dtype)
    bbar = fortran_zeros(m, count, s.dtype)
    abar = u @ scale_rows(v.T, sbar)
    if has_b:
        out = block(shadow_b, max(m, n), count, leading_b)
        xbar[:, :] = out[:n, :]
        if m > n:
            trailing = fortran_copy(block(solution, m, count, leading_b)[n:, :])
            bbar += scale_columns(r, _weights(fortran_copy(out[n:m, :]), trailing, r))
        out[:, :] = 0.0
    z = u @ scale_rows(v.T @ xbar, 1.0 / s)
    bbar += z
    abar -= bbar @ x.T
    if m > n:
        abar += r @ (v @ scale_rows(v.T @ xbar, 1.0 / (s * s))).T
    if m < n:
        y = u @ scale_rows(u.T @ b, 1.0 / (s * s))
        abar += y @ (xbar - v @ (v.T @ xbar)).T
    if not full_rank:                         # the solution jumps: no derivative
        bbar[:, :] = np.nan
        abar[:, :] = np.nan
    if has_b:
        block(shadow_b, m, count, leading_b)[:, :] = bbar
    if has_a:
        block(shadow_a, m, n, leading)[:, :] = abar


# -- entry points ----------------------------------------------------------------------------------

PARAMETERS = {
    # i: int64 (a size, a flag), f: pointer to floats of the kind, p: pointer to Fortran integers
    # (pivots), r: a double (rcond)
    "getrf": "iifipfi",
    "gesv": "iifipfififi",
    "getri": "ifipffi",
    "potrf": "iififi",
    "syevd": "iiififfifi",
    "gesdd": "iiififfifififififi",
    "gelsd": "iiifififrfififi",
}
"""The entry points' parameters, by routine; tangent and adjoint take the same."""

_COMPILED: dict[str, object] = {}


def entry_point(routine: str, mode: str, double: bool) -> str:
    """The symbol of `routine`'s `mode` ('tangent' or 'adjoint') entry point for float64 (or
    float32) data, compiled (numba caches it on disk) and bound on first use."""
    name = f"enzpy_lapack_{routine}_{mode}_{'d' if double else 's'}"
    if name not in _COMPILED:
        element = types.float64 if double else types.float32
        kinds = {"i": types.int64, "f": types.CPointer(element), "p": types.CPointer(F_INT_nbtype),
                 "r": types.float64}
        signature = types.void(*[kinds[code] for code in PARAMETERS[routine]])
        with warnings.catch_warnings():           # '@' on views numba copies first: n^2 next to n^3
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            compiled = numba.cfunc(signature, cache=True, nogil=True)(globals()[f"{routine}_{mode}"])
        llvm.add_symbol(name, compiled.address)
        _COMPILED[name] = compiled                # keeps the code alive
    return name
