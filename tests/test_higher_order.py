"""Second derivatives (enzpy.higher_order): Hessians against finite differences of gradients,
symmetry, HVPs against Hessian-times-vector, on corpus kernels with loops, branches, allocations,
calls, BLAS, array expressions, time steppers and checkpointed loops."""

from __future__ import annotations

import numpy as np
import pytest

import enzpy
from enzpy import DifferentiationError
from tests.kernels import CASES_BY_NAME

NAMES = (
    "loop_sum_of_squares", "loop_horner_polynomial", "loop_running_product", "loop_exponential_moving_average",
    "branch_leaky_relu_sum", "branch_huber_loss", "branch_builtin_min_max_clamp",
    "stencil_dirichlet_energy_2d", "nested_trace_of_product",
    "alloc_empty_finite_difference_norm", "alloc_zeros_smoothed_energy", "alloc_scratch_reused_across_rows",
    "call_scalar_helper", "call_helpers_taking_arrays", "call_helper_mutating_array",
    "math_trigonometric", "math_exponential_and_logarithm", "math_hyperbolic",
    "arrayexpr_sum_sine_times_weights", "arrayexpr_mean_squared_error",
    "strided_every_other_element", "strided_transposed_fortran_matrix", "reshape_outer_product_energy",
    "stepper_pendulum_midpoint", "stepper_heat_equation_swapping_buffers",
    "linalg_matrix_vector", "linalg_quadratic_form", "linalg_two_layer_perceptron_loss",
    "checkpointed_rk4", "checkpointed_heat_in_place",
)
"""Kernels with a float result and at most a few dozen float inputs, a few of each corpus topic."""


def _inputs(args) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(args)
            if isinstance(a, np.ndarray) and a.dtype == np.float64 or isinstance(a, float)
            for j in range(a.size if isinstance(a, np.ndarray) else 1)]


CASES = [CASES_BY_NAME[name] for name in NAMES]


def _flat_gradient(kernel, args) -> np.ndarray:
    gradient = kernel.grad(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    positions = sorted({i for i, _ in _inputs(args)})
    return np.concatenate([np.ravel(np.asarray(gradient[i], np.float64)) for i in positions])


def _moved(args, i, j, step):
    moved = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    if isinstance(moved[i], np.ndarray):
        moved[i].flat[j] += step
    else:
        moved[i] += step
    return moved


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hessian_matches_finite_differences_of_gradients(case):
    args = case.make_args(np.random.default_rng(1))
    kernel = enzpy.differentiate(case.func)
    hessian = kernel.hessian(*args)
    step = 1e-4
    columns = []
    for i, j in _inputs(args):
        g = lambda s: _flat_gradient(kernel, _moved(args, i, j, s))  # noqa: E731
        columns.append((-g(2 * step) + 8 * g(step) - 8 * g(-step) + g(-2 * step)) / (12 * step))
    expected = np.array(columns).T
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(hessian, expected, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("case", CASES[::3], ids=[c.name for c in CASES[::3]])
def test_hvp_is_hessian_times_direction_and_leaves_arguments_alone(case):
    rng = np.random.default_rng(2)
    args = case.make_args(rng)
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    direction = [rng.uniform(-1, 1, a.shape) if isinstance(a, np.ndarray) and a.dtype == np.float64
                 else rng.uniform(-1, 1) if isinstance(a, float) else None for a in args]
    kernel = enzpy.differentiate(case.func)
    product = kernel.hvp(args, direction)
    flat_direction = np.concatenate([np.ravel(np.asarray(d, np.float64)) for d in direction if d is not None])
    flat_product = np.concatenate([np.ravel(np.asarray(p, np.float64)) for p in product if p is not None])
    expected = kernel.hessian(*args) @ flat_direction
    np.testing.assert_allclose(flat_product, expected, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(expected).max()))
    for now, then in zip(args, before):
        assert np.array_equal(now, then)


def test_a_kernel_without_a_float_result_is_refused():
    @enzpy.differentiate
    def scale_in_place(x):
        for i in range(x.shape[0]):
            x[i] *= 2.0

    with pytest.raises(DifferentiationError, match="float result"):
        scale_in_place.hessian(np.ones(3))


def test_a_direction_of_the_wrong_shape_names_its_argument():
    @enzpy.differentiate
    def energy(x):
        return (x * x * x).sum()

    with pytest.raises(ValueError, match="argument 0"):
        energy.hvp((np.ones(3),), (np.ones(4),))


def test_wrt_selects_rows_and_columns():
    @enzpy.differentiate
    def mixed(x, alpha, y):
        return alpha * (x * x * y).sum() + alpha ** 3

    x, y = np.linspace(0.1, 1.0, 4), np.linspace(1.0, 2.0, 4)
    full = mixed.hessian(x, 0.5, y)
    np.testing.assert_allclose(mixed.hessian(x, 0.5, y, wrt=(0, 2)), full[np.r_[0:4, 5:9]][:, np.r_[0:4, 5:9]])
    np.testing.assert_allclose(mixed.hessian(x, 0.5, y, wrt=1), [[6 * 0.5]])
    hx = mixed.hvp((x, 0.5, y), (np.ones(4), 0.0, None), wrt=0)
    np.testing.assert_allclose(hx, full[0:4, 0:4] @ np.ones(4))
