"""Kernels that return arrays and tuples: `vjp`, `jvp`, `autodiff(seed=...)`, `jacobian`.

Every kernel of tests/kernels/array_results.py is checked two ways along a
random direction t of its float inputs and a random cotangent c of its
result's float leaves:
    <pullback(c), t>  ==  <c, jvp(t)>  ==  d/ds <c, f(x + s t)>  (5-point finite differences)
on the optimized IR, and on a few of them (UNOPTIMIZED) on the unoptimized IR.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from enzpy import Active, Const, DifferentiationError, Duplicated, differentiate
from tests.kernels.array_results import CASES
from tests.test_reverse_corpus import float_inputs, perturbed


def kernel_of(case):
    return case.func if isinstance(case.func, numba.core.dispatcher.Dispatcher) else numba.njit(case.func)


def leaves(value) -> list:
    """The leaves of a (nested) tuple result, depth first."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def is_float_leaf(value) -> bool:
    return isinstance(value, float) or (isinstance(value, np.ndarray) and value.dtype.kind == "f")


def with_leaves(value, replacements):
    """`value`'s structure with its leaves replaced in order."""
    replacements = iter(replacements)

    def rebuild(item):
        if isinstance(item, tuple):
            return tuple(rebuild(element) for element in item)
        return next(replacements)

    return rebuild(value)


def random_cotangent(rng, value):
    return with_leaves(value, [(rng.standard_normal(np.shape(leaf)) if isinstance(leaf, np.ndarray) else
                                float(rng.standard_normal())) if is_float_leaf(leaf) else None
                               for leaf in leaves(value)])


def pairing(cotangent, value) -> float:
    """<c, value> over the float leaves."""
    return sum(float(np.sum(np.asarray(c, dtype=np.float64) * np.asarray(v, dtype=np.float64)))
               for c, v in zip(leaves(cotangent), leaves(value)) if c is not None)


def single_precision(args) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args)


# numba's raw IR of array code is large (AD of it takes up to 100 s a kernel) and
# some of it is refused there (float fields of aggregates in forward mode, raw
# reshape bookkeeping in type analysis; tests/test_forward_corpus.py documents
# both): the unoptimized baseline is checked on a few kernels of each shape.
UNOPTIMIZED = {"result_sine_times", "result_identity", "result_transposed", "result_laplacian", "result_polar"}


@pytest.mark.parametrize("case, optimize", [(case, True) for case in CASES] +
                         [(case, False) for case in CASES if case.name in UNOPTIMIZED],
                         ids=lambda v: v.name if hasattr(v, "name") else "optimized" if v else "unoptimized")
def test_vjp_and_jvp_match_finite_differences(case, optimize):
    rng = np.random.default_rng(5)
    args = case.make_args(np.random.default_rng(3))
    kernel = kernel_of(case)
    differentiable = differentiate(case.func, optimize=optimize)
    inputs = float_inputs(case, args)
    single = single_precision(args)

    value, pullback = differentiable.vjp(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    expected_value = kernel(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    for got, expected in zip(leaves(value), leaves(expected_value)):
        np.testing.assert_array_equal(got, expected)
    cotangent = random_cotangent(rng, value)
    gradients = pullback(cotangent)
    assert len(gradients) == len(args)
    for index, (gradient, argument) in enumerate(zip(gradients, args)):
        if index in inputs:
            assert np.shape(gradient) == np.shape(argument)
        elif not (isinstance(argument, np.ndarray) and argument.dtype.kind == "f"):
            assert gradient is None

    directions = {i: rng.standard_normal(np.shape(args[i])) * np.maximum(np.abs(args[i]), 1e-3) for i in inputs}
    reverse = sum(float(np.sum(np.asarray(gradients[i], dtype=np.float64) * directions[i])) for i in inputs)
    tangents = [None if i not in inputs else directions[i].astype(args[i].dtype)
                if isinstance(args[i], np.ndarray) else directions[i] for i in range(len(args))]
    forward_value, tangent = differentiable.jvp([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                                                tangents)
    forward = pairing(cotangent, tangent)
    scale = max(1.0, abs(reverse))
    assert abs(forward - reverse) <= (1e-4 if single else 1e-10) * scale, \
        f"{case.name}: <c, J t> = {forward!r} but <J^T c, t> = {reverse!r}"
    if not optimize:
        return

    step = 1e-2 if single else 1e-4
    values = [pairing(cotangent, kernel(*perturbed(args, directions, s * step))) for s in (-2, -1, 1, 2)]
    finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
    tolerance = 2e-2 if single else 1e-6
    assert abs(reverse - finite_difference) <= tolerance * max(1.0, abs(finite_difference)), \
        f"{case.name}: reverse {reverse!r} vs finite differences {finite_difference!r}"


# ---------------------------------------------------------------- the API around it

@differentiate
def two_results(x, a):
    return np.sin(x) * a, np.sum(x * x)


def test_autodiff_takes_the_seed_of_a_tuple_result():
    x = np.linspace(0.1, 1.0, 5)
    dx = np.zeros(5)
    (da,) = two_results.autodiff(Duplicated(x, dx), Active(1.5), seed=(np.ones(5), 2.0))
    np.testing.assert_allclose(dx, 1.5 * np.cos(x) + 4.0 * x, rtol=1e-14)
    assert da == pytest.approx(np.sum(np.sin(x)), rel=1e-14)
    tangent = two_results.autodiff(Duplicated(x, np.ones(5)), Const(1.5), mode="forward")
    np.testing.assert_allclose(tangent[0], 1.5 * np.cos(x), rtol=1e-14)
    assert tangent[1] == pytest.approx(2.0 * np.sum(x), rel=1e-14)


def test_a_seed_of_the_wrong_shape_names_the_leaf():
    x = np.linspace(0.1, 1.0, 5)
    with pytest.raises(ValueError, match=r"result\[0\]"):
        two_results.autodiff(Duplicated(x, np.zeros(5)), Active(1.5), seed=(np.ones(4), 1.0))
    with pytest.raises(ValueError, match="structure"):
        two_results.autodiff(Duplicated(x, np.zeros(5)), Active(1.5), seed=np.ones(5))
    value, pullback = two_results.vjp(x, 1.5)
    with pytest.raises(ValueError, match=r"cotangent of result\[0\] must be a real array of shape \(5,\)"):
        pullback((np.ones(6), 1.0))


def test_scalar_entry_points_refuse_array_results_and_say_what_to_use():
    x = np.linspace(0.1, 1.0, 5)
    with pytest.raises(Exception, match="use vjp, jvp, jacobian"):
        two_results.value_and_grad(x, 1.5)
    with pytest.raises(ValueError, match="seed must be a number"):
        differentiate(lambda x: np.sum(x)).autodiff(Duplicated(x, np.zeros(5)), seed=np.ones(5))


def test_pullback_is_repeatable_and_independent_of_later_changes():
    @differentiate
    def in_place(x):
        x *= 2.0                       # the kernel writes its argument
        return x * x

    x = np.linspace(0.1, 1.0, 5)
    entry = x.copy()
    value, pullback = in_place.vjp(x)
    np.testing.assert_allclose(x, 2.0 * entry)          # mutated as a plain call mutates it
    np.testing.assert_allclose(value, 4.0 * entry ** 2)
    x[:] = 100.0
    first = pullback(np.ones(5))[0]
    second = pullback(np.ones(5))[0]
    np.testing.assert_allclose(first, 8.0 * entry, rtol=1e-14)
    np.testing.assert_array_equal(first, second)


def test_vjp_of_a_scalar_result_scales_the_gradient():
    @differentiate
    def energy(x, alpha):
        return alpha * np.sum(x * x)

    x = np.linspace(0.1, 1.0, 5)
    value, pullback = energy.vjp(x, 0.5)
    gradient_x, gradient_alpha = pullback(3.0)
    assert value == pytest.approx(0.5 * np.sum(x * x))
    np.testing.assert_allclose(gradient_x, 3.0 * x, rtol=1e-14)
    assert gradient_alpha == pytest.approx(3.0 * np.sum(x * x))


def test_integer_leaves_have_no_derivative():
    @differentiate
    def largest(x):
        return x * x, np.argmax(x)

    x = np.array([0.3, -1.2, 0.7, 0.05])
    value, pullback = largest.vjp(x)
    assert value[1] == 2
    np.testing.assert_allclose(pullback((np.ones(4), None))[0], 2.0 * x)
    with pytest.raises(ValueError, match="has no derivative"):
        pullback((np.ones(4), 1))
    assert largest.jvp((x,), (np.ones(4),))[1][1] is None


def test_jacobian_of_array_results_forward_equals_reverse():
    x = np.linspace(0.1, 1.0, 5)
    forward = two_results.jacobian(x, 1.5, mode="forward")
    reverse = two_results.jacobian(x, 1.5, mode="reverse")
    assert forward.shape == (6, 6)
    np.testing.assert_allclose(forward, reverse, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(forward[:5, :5], np.diag(1.5 * np.cos(x)), atol=1e-15)
    np.testing.assert_allclose(forward[5, :5], 2.0 * x)


def test_width_gives_every_leaf_a_leading_axis():
    x = np.linspace(0.1, 1.0, 5)
    directions = np.stack([np.eye(5)[0], np.eye(5)[3], np.ones(5)])
    _, tangents = two_results.jvp((x, 1.5), (directions, np.zeros(3)), width=3)
    assert tangents[0].shape == (3, 5) and tangents[1].shape == (3,)
    for lane in range(3):
        _, single = two_results.jvp((x, 1.5), (directions[lane], 0.0))
        np.testing.assert_allclose(tangents[0][lane], single[0], rtol=1e-15)
        assert tangents[1][lane] == pytest.approx(single[1], rel=1e-15)


def test_complex_results_are_refused_by_name():
    @differentiate
    def rotate(x):
        return x * 1j

    with pytest.raises(DifferentiationError, match="complex128"):
        rotate.vjp(np.ones(3))


def typed_dict_squares(x):
    values = numba.typed.Dict.empty(numba.types.int64, numba.types.float64)
    for i in range(x.size):
        values[i] = x[i] * x[i]             # the line the refusal must name
    out = np.empty(len(values))
    for i in range(len(values)):
        out[i] = values[i]
    return out


def test_a_refusal_inside_an_array_result_names_the_kernels_line():
    """The output form calls the kernel: the error must point into the kernel's file, not the form."""
    import inspect

    _, pullback = differentiate(typed_dict_squares).vjp(np.array([1.3, 0.4, 2.0]))
    lines, first = inspect.getsourcelines(typed_dict_squares)
    append_line = first + next(i for i, text in enumerate(lines) if "values[i] = " in text)
    with pytest.raises(DifferentiationError) as raised:
        pullback(np.ones(3))
    assert f"{__file__}:{append_line}" in str(raised.value), str(raised.value)
    assert "numba_dict_insert" in str(raised.value)
