"""Kernels built on numba's BLAS calls: `np.dot`, `@` and `np.vdot` of vectors and
matrices (C and F layouts, float64 and float32), differentiated at the BLAS
level (enzpy/rules/blas.py). Each returns a float."""

import numba
import numpy as np

from .case import Case


@numba.njit
def dot_of_vectors(x, y):
    return np.dot(x, y)


@numba.njit
def vdot_of_vectors(x, y):
    return 2.0 * np.vdot(x, y) + np.vdot(x, x)


@numba.njit
def weighted_matrix_vector(A, x, w):
    y = np.dot(A, x)
    s = 0.0
    for i in range(y.shape[0]):
        s += w[i] * y[i]
    return s


@numba.njit
def squared_vector_matrix(x, A):
    y = x @ A
    s = 0.0
    for i in range(y.shape[0]):
        s += y[i] * y[i]
    return s


def _weighted_sum_2d(C, W):
    s = 0.0
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            s += W[i, j] * C[i, j] * C[i, j]
    return s


weighted_sum_2d = numba.njit(_weighted_sum_2d)


@numba.njit
def matrix_matrix(A, B, W):
    return weighted_sum_2d(A @ B, W)


@numba.njit
def transposed_matrix_matrix(A, B, W):
    return weighted_sum_2d(A.T @ B, W)


@numba.njit
def dot_with_transposed(A, B, W):
    # With F-ordered A and B: B.T is a C view, so the gemm flags differ per operand.
    return weighted_sum_2d(np.dot(A, B.T), W)


@numba.njit
def row_times_matrix_times_column(r, A, c):
    # (1 x k) @ (k x n) and (1 x n) @ (n x 1): numba takes its gemv and dot paths inside the 2-D product.
    return (r @ A @ c)[0, 0]


@numba.njit
def quadratic_form(x, A):
    return x @ A @ x


@numba.njit
def least_squares_residual(A, x, b):
    r = np.dot(A, x) - b
    return np.dot(r, r)


@numba.njit
def product_of_overwritten_temporary(x, v):
    # The adjoint of v needs T as the product read it; T is overwritten afterwards,
    # so reverse mode must copy it before the call.
    n = x.shape[0]
    T = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            T[i, j] = np.sin(x[i] * x[j])
    y = T @ v
    for i in range(n):
        for j in range(n):
            T[i, j] = T[i, j] * y[j]
    s = 0.0
    for i in range(n):
        for j in range(n):
            s += T[i, j]
    return s


@numba.njit
def argument_overwritten_after_product(A, x):
    # In place: A is scaled after the product that read it.
    y = A @ x
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] *= y[i]
    return np.dot(y, y)


@numba.njit
def repeated_matrix_vector(A, v, steps):
    # A gemv in a loop, into a buffer (np.dot's out argument): v is read by each
    # product and overwritten after it, so reverse mode copies it every iteration.
    v = v.copy()
    w = np.empty_like(v)
    for _ in range(steps):
        np.dot(A, v, w)
        for i in range(v.shape[0]):
            v[i] = np.tanh(w[i])
    return np.dot(v, v)


@numba.njit
def two_layer_perceptron_loss(X, W1, b1, W2, b2, Y):
    H = np.tanh(X @ W1 + b1)
    out = H @ W2 + b2
    s = 0.0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            d = out[i, j] - Y[i, j]
            s += d * d
    return s / out.shape[0]


@numba.njit
def weighted_matrix_vector_float32(A, x, w):
    y = A @ x
    s = np.float32(0.0)
    for i in range(y.shape[0]):
        s += w[i] * y[i]
    return s


@numba.njit
def matrix_matrix_float32(A, B):
    C = A @ B
    s = np.float32(0.0)
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            s += C[i, j] * C[i, j]
    return s


@numba.njit
def dot_of_vectors_float32(x, y):
    return np.dot(x, y) * np.dot(x, x)


@numba.njit
def residual_norm(A, x, b):
    # np.linalg.norm of a vector is numba_xxnrm2.
    return np.linalg.norm(A @ x - b)


@numba.njit
def strided_norm(x):
    # Every other element: nrm2 with increment 2, read from the argument itself.
    return np.linalg.norm(x[::2]) + np.linalg.norm(x)


@numba.njit
def norm_float32(x):
    return np.linalg.norm(x) * np.float32(3.0)


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _fortran(array):
    return np.asfortranarray(array)


def _single(array):
    return array.astype(np.float32)


CASES = [
    Case(
        name="linalg_dot_of_vectors",
        func=dot_of_vectors,
        make_args=lambda rng: (_normal(rng, 7), _normal(rng, 7)),
        tags=frozenset({"blas", "alloc"}),
    ),
    Case(
        name="linalg_vdot_of_vectors",
        func=vdot_of_vectors,
        make_args=lambda rng: (_normal(rng, 6), _normal(rng, 6)),
        tags=frozenset({"blas", "alloc"}),
    ),
    Case(
        name="linalg_matrix_vector",
        func=weighted_matrix_vector,
        make_args=lambda rng: (_normal(rng, 5, 4), _normal(rng, 4), _normal(rng, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_matrix_vector_fortran",
        func=weighted_matrix_vector,
        make_args=lambda rng: (_fortran(_normal(rng, 5, 4)), _normal(rng, 4), _normal(rng, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_matrix_vector_constant_matrix",
        func=weighted_matrix_vector,
        make_args=lambda rng: (_normal(rng, 5, 4), _normal(rng, 4), _normal(rng, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
        constant_arguments=(0,),
    ),
    Case(
        name="linalg_vector_matrix",
        func=squared_vector_matrix,
        make_args=lambda rng: (_normal(rng, 5), _normal(rng, 5, 3)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_vector_matrix_fortran",
        func=squared_vector_matrix,
        make_args=lambda rng: (_normal(rng, 5), _fortran(_normal(rng, 5, 3))),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_matrix_matrix",
        func=matrix_matrix,
        make_args=lambda rng: (_normal(rng, 4, 3), _normal(rng, 3, 5), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_matrix_matrix_mixed_layouts",
        func=matrix_matrix,
        make_args=lambda rng: (_fortran(_normal(rng, 4, 3)), _normal(rng, 3, 5), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        # With the C layout of the result, each operand's layout is one gemm trans flag:
        # these four cases take (n, n), (n, t), (t, n) and (t, t).
        name="linalg_matrix_matrix_fortran_right",
        func=matrix_matrix,
        make_args=lambda rng: (_normal(rng, 4, 3), _fortran(_normal(rng, 3, 5)), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_matrix_matrix_fortran_both",
        func=matrix_matrix,
        make_args=lambda rng: (_fortran(_normal(rng, 4, 3)), _fortran(_normal(rng, 3, 5)), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_transposed_matrix_matrix",
        func=transposed_matrix_matrix,
        make_args=lambda rng: (_normal(rng, 3, 4), _normal(rng, 3, 5), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_dot_with_transposed_fortran",
        func=dot_with_transposed,
        make_args=lambda rng: (_fortran(_normal(rng, 4, 3)), _fortran(_normal(rng, 5, 3)), _normal(rng, 4, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_row_times_matrix_times_column",
        func=row_times_matrix_times_column,
        make_args=lambda rng: (_normal(rng, 1, 4), _normal(rng, 4, 3), _normal(rng, 3, 1)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_quadratic_form",
        func=quadratic_form,
        make_args=lambda rng: (_normal(rng, 5), _normal(rng, 5, 5)),
        tags=frozenset({"blas", "alloc", "2d"}),
    ),
    Case(
        name="linalg_least_squares_residual",
        func=least_squares_residual,
        make_args=lambda rng: (_normal(rng, 6, 3), _normal(rng, 3), _normal(rng, 6)),
        tags=frozenset({"blas", "alloc", "2d", "arrayexpr"}),
    ),
    Case(
        name="linalg_product_of_overwritten_temporary",
        func=product_of_overwritten_temporary,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, 5), _normal(rng, 5)),
        tags=frozenset({"blas", "alloc", "2d", "loop", "nested"}),
    ),
    Case(
        name="linalg_argument_overwritten_after_product",
        func=argument_overwritten_after_product,
        make_args=lambda rng: (_normal(rng, 4, 3), _normal(rng, 3)),
        tags=frozenset({"blas", "alloc", "2d", "inplace"}),
    ),
    Case(
        name="linalg_repeated_matrix_vector",
        func=repeated_matrix_vector,
        make_args=lambda rng: (0.5 * _normal(rng, 4, 4), _normal(rng, 4), 3),
        tags=frozenset({"blas", "alloc", "2d", "loop"}),
    ),
    Case(
        name="linalg_two_layer_perceptron_loss",
        func=two_layer_perceptron_loss,
        make_args=lambda rng: (_normal(rng, 8, 5), 0.5 * _normal(rng, 5, 6), 0.1 * _normal(rng, 6),
                               0.5 * _normal(rng, 6, 3), 0.1 * _normal(rng, 3), _normal(rng, 8, 3)),
        tags=frozenset({"blas", "alloc", "2d", "arrayexpr"}),
    ),
    Case(
        name="linalg_residual_norm",
        func=residual_norm,
        make_args=lambda rng: (_normal(rng, 6, 3), _normal(rng, 3), _normal(rng, 6)),
        tags=frozenset({"blas", "alloc", "2d", "arrayexpr"}),
    ),
    Case(
        name="linalg_strided_norm",
        func=strided_norm,
        make_args=lambda rng: (_normal(rng, 9),),
        tags=frozenset({"blas", "alloc", "strided"}),
    ),
    Case(
        name="linalg_norm_float32",
        func=norm_float32,
        make_args=lambda rng: (_single(_normal(rng, 7)),),
        tags=frozenset({"blas", "alloc", "float32"}),
    ),
    Case(
        name="linalg_matrix_vector_float32",
        func=weighted_matrix_vector_float32,
        make_args=lambda rng: (_single(_normal(rng, 5, 4)), _single(_normal(rng, 4)), _single(_normal(rng, 5))),
        tags=frozenset({"blas", "alloc", "2d", "float32"}),
    ),
    Case(
        name="linalg_matrix_matrix_float32",
        func=matrix_matrix_float32,
        make_args=lambda rng: (_single(_normal(rng, 4, 3)), _single(_normal(rng, 3, 5))),
        tags=frozenset({"blas", "alloc", "2d", "float32"}),
    ),
    Case(
        name="linalg_dot_of_vectors_float32",
        func=dot_of_vectors_float32,
        make_args=lambda rng: (_single(_normal(rng, 6)), _single(_normal(rng, 6))),
        tags=frozenset({"blas", "alloc", "float32"}),
    ),
]
