"""Forward mode on the kernel corpus: finite differences, reverse mode, vector mode.

As in test_reverse_corpus, a kernel's objective is
    L = seed * result + sum_k <c_k, final contents of float array k>.
Forward mode along a direction t (Duplicated(x, t_x), scalars Duplicated(s, t_s))
gives the result's tangent and, in each shadow, the tangent of the array's
final contents, so  dL[t] = seed * result tangent + sum_k <c_k, shadow_k>.
That is checked against 5-point finite differences of L (optimized and
unoptimized IR), against reverse mode (<J t, c> = <t, J^T c>), and vector
mode (width 3) against three single sweeps.
"""

import numba
import numpy as np
import pytest

from enzpy import Active, Const, DifferentiationError, Duplicated, differentiate
from tests.kernels import Case
from tests.test_reverse_corpus import (DIFFERENTIABLE, UNOPTIMIZED_UNSUPPORTED_TAGS, float_inputs, objective,
                                       perturbed, skip_unoptimized_large_kernels)


def is_single_precision(case: Case, args) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args) or "float32" in case.tags


def random_directions(rng, case: Case, args) -> dict:
    # Relative perturbations: a time step of 1e-3 must not be moved by 1e-4.
    return {i: rng.standard_normal(np.shape(args[i])) * np.maximum(np.abs(args[i]), 1e-3)
            for i in float_inputs(case, args)}


def forward_directional_derivative(differentiable, args, directions, weights, seed) -> float:
    """seed * d result[t] + sum_k <c_k, d final array k[t]>, by one forward sweep."""
    annotated, shadows = [], {}
    for index, a in enumerate(args):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            # Arrays without a direction still get a (zero) shadow: what is written there counts.
            direction = directions.get(index, np.zeros(a.shape))
            shadows[index] = direction.astype(a.dtype)
            annotated.append(Duplicated(a.copy(), shadows[index]))
        elif index in directions:
            annotated.append(Duplicated(a, type(a)(directions[index])))
        else:
            annotated.append(Const(a))
    result_tangent = differentiable.autodiff(*annotated, mode="forward")
    total = seed * result_tangent if result_tangent is not None else 0.0
    for index, weight in weights.items():
        total += float(np.sum(weight.astype(np.float64) * shadows[index].astype(np.float64)))
    return total


def output_weights(rng, args) -> dict:
    return {i: rng.standard_normal(a.shape).astype(a.dtype) for i, a in enumerate(args)
            if isinstance(a, np.ndarray) and a.dtype.kind == "f"}


def kernel_of(case: Case):
    return case.func if isinstance(case.func, numba.core.dispatcher.Dispatcher) else numba.njit(case.func)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=lambda case: case.name)
def test_forward_matches_finite_differences(case: Case, optimize: bool):
    skip_unoptimized_large_kernels(case, optimize)
    if optimize or not (case.tags & UNOPTIMIZED_UNSUPPORTED_TAGS):
        check_against_finite_differences(case, optimize)
    else:
        try:
            check_against_finite_differences(case, optimize)
        except DifferentiationError as error:
            # Only derivatives carried inside aggregates are still refused there.
            assert "function @" in str(error) and "aggregate" in str(error), str(error)


def check_against_finite_differences(case: Case, optimize: bool):
    rng = np.random.default_rng(11)
    args = case.make_args(np.random.default_rng(3))
    single = is_single_precision(case, args)
    weights = output_weights(rng, args)
    seed = 0.75
    differentiable = differentiate(case.func, optimize=optimize)
    for _ in range(2):
        directions = random_directions(rng, case, args)
        predicted = forward_directional_derivative(differentiable, args, directions, weights, seed)
        step = 1e-2 if single else 1e-4
        values = [objective(kernel_of(case), perturbed(args, directions, s * step), weights, seed)
                  for s in (-2, -1, 1, 2)]
        finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
        tolerance = 2e-2 if single else 1e-6
        assert abs(predicted - finite_difference) <= tolerance * max(1.0, abs(finite_difference)), \
            f"{case.name}: forward {predicted!r} vs finite differences {finite_difference!r}"


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=lambda case: case.name)
def test_forward_agrees_with_reverse(case: Case):
    """<J t, c> from one forward sweep equals <t, J^T c> from one reverse sweep."""
    rng = np.random.default_rng(5)
    args = case.make_args(np.random.default_rng(3))
    weights = output_weights(rng, args)
    seed = -1.25
    directions = random_directions(rng, case, args)
    differentiable = differentiate(case.func)
    forward = forward_directional_derivative(differentiable, args, directions, weights, seed)

    annotated = []
    for index, a in enumerate(args):
        if index in weights:
            annotated.append(Duplicated(a.copy(), weights[index].copy()))
        elif index in directions:
            annotated.append(Active(a))
        else:
            annotated.append(Const(a))
    active = iter(differentiable.autodiff(*annotated, seed=seed))
    reverse = 0.0
    for index, annotation in enumerate(annotated):
        gradient = annotation.shadow if isinstance(annotation, Duplicated) else \
            next(active) if isinstance(annotation, Active) else None
        if index in directions:
            reverse += float(np.sum(np.asarray(gradient, dtype=np.float64) * directions[index]))
    tolerance = 1e-4 if is_single_precision(case, args) else 1e-10
    assert abs(forward - reverse) <= tolerance * max(abs(forward), abs(reverse), 1e-300) + 1e-300, \
        f"{case.name}: <J t, c> = {forward!r} but <t, J^T c> = {reverse!r}"


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=lambda case: case.name)
def test_vector_mode_matches_single_sweeps(case: Case):
    """jvp with width=3 gives, lane by lane, what three width-1 jvps give."""
    rng = np.random.default_rng(17)
    args = case.make_args(np.random.default_rng(3))
    inputs = float_inputs(case, args)
    lanes = [random_directions(rng, case, args) for _ in range(3)]
    stacked = [np.stack([np.asarray(lane[i], dtype=np.asarray(args[i]).dtype) for lane in lanes])
               if i in inputs else None for i in range(len(args))]
    differentiable = differentiate(case.func)
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    value, vector = differentiable.jvp(copies, stacked, width=3)
    for lane in range(3):
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        single_value, single = differentiable.jvp(
            copies, [None if s is None else (s[lane] if isinstance(args[i], np.ndarray) else float(s[lane]))
                     for i, s in enumerate(stacked)])
        if value is not None and getattr(case.func, "targetoptions", {}).get("fastmath"):
            # fastmath lets LLVM reassociate: the width-3 and width-1 modules differ in size, get
            # different post-AD pipelines (jit.post_ad_pipeline) and may round the primal apart.
            assert single_value == pytest.approx(value, rel=1e-13, abs=1e-300)
        else:
            assert single_value == value
        if isinstance(single, tuple):
            for ours, theirs in zip(vector, single):
                if theirs is not None:
                    np.testing.assert_allclose(ours[lane], theirs, rtol=1e-12, atol=1e-300)
        else:
            np.testing.assert_allclose(vector[lane], single, rtol=1e-12, atol=1e-300)
