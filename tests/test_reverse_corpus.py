"""Reverse mode on the kernel corpus, checked against 5-point finite differences.

The objective of a kernel is  L = seed * result + sum_k <c_k, final contents of float array k>
with random weights c_k: `autodiff` receives c_k as the shadow of array k
(the adjoint of its final contents) and returns dL / d(arguments on entry).
Each case is checked along two random directions, differentiating the IR after
the pre-AD pipeline and (the benchmarks' baseline) the unoptimized IR.
"""

import numba
import numpy as np
import pytest

from enzpy import Active, Const, Duplicated, differentiate
from tests.kernels import ALL_CASES, Case


def float_inputs(case: Case, args) -> list[int]:
    return [i for i, a in enumerate(args) if i not in case.constant_arguments and
            ((isinstance(a, np.ndarray) and a.dtype.kind == "f") or isinstance(a, (float, np.floating)))]


DIFFERENTIABLE = [c for c in ALL_CASES if float_inputs(c, c.make_args(np.random.default_rng(0)))]


def objective(kernel, args, weights, seed):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    result = kernel(*args)
    total = seed * float(result) if isinstance(result, float) else 0.0
    for index, weight in weights.items():
        total += float(np.sum(weight * args[index].astype(np.float64)))
    return total


def reverse_annotations(case: Case, args, weights) -> list:
    """Duplicated (with the weights as adjoints) for weighted arrays, Active for the other float
    inputs, Const for the rest; arrays are copied, so the caller's stay as they were."""
    annotated = []
    for index, a in enumerate(args):
        if index in weights:
            annotated.append(Duplicated(a.copy(), weights[index].copy()))
        elif index in float_inputs(case, args):
            annotated.append(Active(a))
        else:
            annotated.append(Const(a.copy() if isinstance(a, np.ndarray) else a))
    return annotated


def perturbed(args, directions, step):
    out = []
    for index, a in enumerate(args):
        if index in directions:
            moved = a + step * directions[index]
            out.append(moved.astype(a.dtype) if isinstance(a, np.ndarray) else type(a)(float(moved)))
        else:
            out.append(a.copy() if isinstance(a, np.ndarray) else a)
    return out


# Kernels whose unoptimized IR keeps float temporaries in aggregates (tuples,
# min/max pairs, array structs). Reverse mode follows them; forward mode still
# refuses them with a DifferentiationError naming the aggregate.
UNOPTIMIZED_UNSUPPORTED_TAGS = {"alloc", "arrayexpr", "minmax", "stepper", "tuple"}

@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=lambda case: case.name)
def test_reverse_matches_finite_differences(case: Case, optimize: bool):
    skip_unoptimized_large_kernels(case, optimize)
    check_against_finite_differences(case, optimize)


def skip_unoptimized_large_kernels(case: Case, optimize: bool) -> None:
    if not optimize and "large" in case.tags:
        pytest.skip("AD before optimization is the benchmarks' baseline; on numba's unoptimized module of a "
                    "kernel this large (tens of thousands of lines) it takes minutes: the optimized variant "
                    "checks this kernel")


def check_against_finite_differences(case: Case, optimize: bool):
    rng = np.random.default_rng(7)
    args = case.make_args(np.random.default_rng(3))
    kernel = case.func if isinstance(case.func, numba.core.dispatcher.Dispatcher) else numba.njit(case.func)
    single = any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args) or "float32" in case.tags
    weights = {i: rng.standard_normal(args[i].shape).astype(args[i].dtype)
               for i in float_inputs(case, args) if isinstance(args[i], np.ndarray)}
    seed = 0.75

    annotated = reverse_annotations(case, args, weights)
    active = differentiate(case.func, optimize=optimize).autodiff(*annotated, seed=seed)
    gradient, active_values = {}, iter(active)
    for index, annotation in enumerate(annotated):
        if isinstance(annotation, Duplicated):
            gradient[index] = annotation.shadow.astype(np.float64)
        elif isinstance(annotation, Active):
            gradient[index] = next(active_values)

    for _ in range(2):
        # Relative perturbations: a time step of 1e-3 must not be moved by 1e-4.
        directions = {i: rng.standard_normal(np.shape(args[i])) * np.maximum(np.abs(args[i]), 1e-3)
                      for i in gradient}
        predicted = sum(float(np.sum(gradient[i] * directions[i])) for i in gradient)
        step = 1e-2 if single else 1e-4
        values = [objective(kernel, perturbed(args, directions, s * step), weights, seed) for s in (-2, -1, 1, 2)]
        finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
        tolerance = 2e-2 if single else 1e-6
        assert abs(predicted - finite_difference) <= tolerance * max(1.0, abs(finite_difference)), \
            f"{case.name}: reverse {predicted!r} vs finite differences {finite_difference!r}"
