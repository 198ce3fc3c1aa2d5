"""Vector reverse mode (`autodiff(..., width=k)`, ReverseSpec.width, ad/lanes.py).

k cotangents go through one forward and one reverse sweep. On every corpus
kernel each lane must equal a width-1 call with that lane's adjoints and seed
(which tests/test_reverse_corpus.py checks against finite differences), or
the kernel must be refused by name, and only for what vector reverse mode
does not cover (calls that stay calls, lists, prange, aggregates, MPI). One
kernel is also checked directly: each lane against 5-point finite
differences, and forward against reverse (<J t, c> = <t, J^T c>).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from enzpy import Active, Const, DifferentiationError, Duplicated, differentiate
from tests.kernels import Case
from tests.test_reverse_corpus import DIFFERENTIABLE, float_inputs

WIDTH = 3
REFUSED_TAGS = {"list", "typedlist", "call", "recursion", "parallel", "tuple", "checkpointed", "reshape"}
"""Tags of kernels that may be refused: what they do has no lanes yet (the message names it)."""


def lane_annotations(case: Case, args, lane_weights, width: int | None):
    """Duplicated float arrays with lane adjoints (a leading axis of `width`, or lane 0's alone),
    Active float scalars, Const the rest; arrays copied."""
    annotated = []
    for index, a in enumerate(args):
        if index in lane_weights:
            shadow = lane_weights[index] if width is not None else lane_weights[index][0]
            annotated.append(Duplicated(a.copy(), shadow.copy()))
        elif index in float_inputs(case, args):
            annotated.append(Active(a))
        else:
            annotated.append(Const(a.copy() if isinstance(a, np.ndarray) else a))
    return annotated


@pytest.mark.parametrize("case", [c for c in DIFFERENTIABLE if "large" not in c.tags], ids=lambda case: case.name)
def test_each_lane_equals_a_single_reverse_call(case: Case):
    rng = np.random.default_rng(11)
    args = case.make_args(np.random.default_rng(3))
    lane_weights = {i: rng.standard_normal((WIDTH, *args[i].shape)).astype(args[i].dtype)
                    for i in float_inputs(case, args) if isinstance(args[i], np.ndarray)}
    seeds = rng.standard_normal(WIDTH)
    differentiable = differentiate(case.func)
    annotated = lane_annotations(case, args, lane_weights, WIDTH)
    try:
        active = differentiable.autodiff(*annotated, seed=seeds, width=WIDTH)
    except DifferentiationError as error:
        assert "vector reverse mode (width 3) does not support" in str(error), str(error)
        assert case.tags & REFUSED_TAGS, f"{case.name} ({sorted(case.tags)}) refused: {error}"
        return
    single = np.float32 in {getattr(a, "dtype", None) for a in args} or "float32" in case.tags
    tolerance = 1e-5 if single else 1e-12
    for lane in range(WIDTH):
        weights = {i: w[lane:lane + 1] for i, w in lane_weights.items()}
        one = lane_annotations(case, args, weights, None)
        expected = differentiable.autodiff(*one, seed=float(seeds[lane]))
        for got, want in zip(active, expected):
            assert got[lane] == pytest.approx(want, rel=tolerance, abs=tolerance), case.name
        for annotation, single_annotation in zip(annotated, one):
            if isinstance(annotation, Duplicated):
                np.testing.assert_allclose(annotation.shadow[lane], single_annotation.shadow, rtol=tolerance,
                                           atol=tolerance, err_msg=case.name)


@numba.njit
def stencil_energy(x, y, a):
    """y[i] = a sin(x[i]) + x[i-1] x[i+1] (in place over y's old value), returns sum(y^2) / 2."""
    total = 0.0
    for i in range(1, x.size - 1):
        y[i] = a * np.sin(x[i]) + x[i - 1] * x[i + 1] + 0.5 * y[i]
        total += 0.5 * y[i] * y[i]
    return total


def test_lanes_against_finite_differences_and_forward_mode():
    rng = np.random.default_rng(5)
    x, y, a = rng.standard_normal(7), rng.standard_normal(7), 0.8
    cotangent_y, seeds = rng.standard_normal((WIDTH, 7)), np.array([1.0, 0.0, -0.5])
    dx = np.zeros((WIDTH, 7))
    dy = cotangent_y.copy()
    differentiable = differentiate(stencil_energy)
    (da,) = differentiable.autodiff(Duplicated(x.copy(), dx), Duplicated(y.copy(), dy), Active(a), seed=seeds,
                                    width=WIDTH)

    def objective(lane, x_, y_, a_):
        y_ = y_.copy()
        return seeds[lane] * stencil_energy(x_, y_, a_) + float(np.sum(cotangent_y[lane] * y_))

    tx, ty, ta = rng.standard_normal(7), rng.standard_normal(7), 0.3
    h = 1e-4
    for lane in range(WIDTH):
        values = [objective(lane, x + s * h * tx, y + s * h * ty, a + s * h * ta) for s in (-2, -1, 1, 2)]
        finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
        predicted = float(dx[lane] @ tx + dy[lane] @ ty + da[lane] * ta)
        assert predicted == pytest.approx(finite_difference, rel=1e-7, abs=1e-9)
    # Forward mode: the tangent of the result and of y's final contents along (tx, ty, ta).
    tangent_y = ty.copy()
    tangent = differentiable.autodiff(Duplicated(x.copy(), tx.copy()), Duplicated(y.copy(), tangent_y),
                                      Duplicated(a, ta), mode="forward")
    for lane in range(WIDTH):
        forward = seeds[lane] * tangent + float(cotangent_y[lane] @ tangent_y)
        reverse = float(dx[lane] @ tx + dy[lane] @ ty + da[lane] * ta)
        assert forward == pytest.approx(reverse, rel=1e-12, abs=1e-12)


def test_wrong_lane_shapes_name_the_argument():
    differentiable = differentiate(stencil_energy)
    x, y = np.ones(5), np.ones(5)
    with pytest.raises(ValueError, match=r"shadow of argument 0 \('x'\) must be an array of shape \(3, 5\)"):
        differentiable.autodiff(Duplicated(x, np.zeros(5)), Duplicated(y, np.zeros((3, 5))), Const(1.0), width=3)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        differentiable.autodiff(Duplicated(x, np.zeros((3, 5))), Const(y), Const(1.0), width=0)
