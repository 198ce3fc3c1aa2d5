"""driver.optimized_ir: numba's module read once, after the pre-AD pipeline, where no rewrite of
`to_ir` applies; the same IR (up to value names) as the read-write-read round trip."""

import gc
import re

import numba
import numpy as np
import pytest

import enzpy
from enzpy import driver
from enzpy.collector import scanning_new_objects_only
from enzpy.frontend.numba import EXTENT_RANGE, capture
from enzpy.ir import write_module
from tests.adbench.objectives import gmm_objective
from tests.kernels.loops import sum_of_squares


@numba.njit
def with_callee(x, y):
    return np.sum(np.sin(x) * y) + sum_of_squares(x)


@numba.njit
def stencil(a, b):
    # numba's broadcast check: an error formatter that stays a call
    b[1:-1, 1:-1] = 0.25 * (a[2:, 1:-1] + a[:-2, 1:-1]) * a[1:-1, 2:]
    return np.sum(b * b)


@numba.njit
def triangular(x, n):
    total = 0.0
    for i in range(n):
        for j in range(i + 1, x.shape[0]):
            total += x[i] * x[j]
    return total


@numba.njit(parallel=True)
def parallel_sum(x):
    total = 0.0
    for i in numba.prange(x.shape[0]):
        total += x[i] * x[i]
    return total


@enzpy.custom_vjp
@numba.njit
def cube(x):
    return x * x * x


cube.defvjp(lambda x: (x * x * x, x), lambda x, cotangent: (3.0 * x * x * cotangent,))


@numba.njit
def calls_a_rule(x):
    return cube(x[0]) + x[1]


def gmm_arguments():
    rng = np.random.default_rng(0)
    k, d, n = 3, 4, 5
    return (rng.normal(size=k), rng.normal(size=(k, d)), rng.normal(size=(k, d * (d + 1) // 2)),
            rng.normal(size=(n, d)), 1.0, 0)


CASES = {
    "gmm": (gmm_objective, gmm_arguments()),
    "callee": (with_callee, (np.linspace(0.1, 1.0, 7), np.linspace(1.0, 2.0, 7))),
    "stencil": (stencil, (np.ones((6, 5)), np.ones((6, 5)))),
    "triangular": (triangular, (np.linspace(0.1, 1.0, 9), 5)),
}


def canonical(text: str) -> list[str]:
    """The module's lines with each function's local names numbered by first appearance."""
    lines, names = [], {}
    for line in text.splitlines():
        if line.startswith(("define ", "declare ")):
            names = {}
        label = re.match(r'^([-\w.$]+|"[^"]*"):', line)
        if label:
            line = "%" + label.group(1) + line[label.end() - 1:]
        lines.append(re.sub(r'%([-\w.$]+|"[^"]*")', lambda m: names.setdefault(m.group(0), f"%v{len(names)}"),
                            line))
    return lines


def both_paths(name: str) -> tuple[str, str]:
    """The kernel's pre-AD IR read once and through the round trip, as enzpy writes them."""
    kernel, args = CASES[name]
    once_captured = capture(kernel, args=args)
    assert driver._with_array_extents(str(once_captured.module), once_captured) is not None
    once = write_module(driver.optimized_ir(once_captured))
    twice = write_module(driver.optimize(driver.to_ir(capture(kernel, args=args), tidy=True), "pre_ad"))
    return once, twice


@pytest.mark.parametrize("name", ["gmm", "callee", "triangular"])
def test_read_once_gives_the_round_trips_ir(name):
    once, twice = (canonical(text) for text in both_paths(name))
    assert len(once) == len(twice)
    assert [(a, b) for a, b in zip(once, twice) if a != b][:3] == []


def test_read_once_of_array_expressions_differs_only_in_instcombines_spelling():
    """Where numba's error formatter stays a call, instcombine meets the code in another order
    (`umax(n, 1) + ~(n != 0)` against `usub.sat(n, 1) - (n != 0)`): the same functions and calls
    of functions, as many instructions within a few."""
    def summary(text: str) -> tuple:
        lines = canonical(text)
        defined = sorted(re.findall(r"^define [^@]*(@[^(]*)", text, re.MULTILINE))
        called = sorted(name for name in re.findall(r"call [^@]*(@[-\w.$]+|@\"[^\"]*\")\(", text)
                        if not name.startswith("@llvm."))          # intrinsics are instcombine's spelling
        return defined, called, sum(1 for line in lines if line.startswith("  "))

    (defined_once, called_once, size_once), (defined_twice, called_twice, size_twice) = \
        (summary(text) for text in both_paths("stencil"))
    assert defined_once == defined_twice
    assert called_once == called_twice
    assert abs(size_once - size_twice) <= 0.03 * size_twice


def test_read_once_marks_every_extent_of_the_entry():
    captured = capture(triangular, args=CASES["triangular"][1])
    module = driver.optimized_ir(captured)
    entry = module.functions[captured.convention.entry]
    (x, n) = captured.convention.arguments
    marked = [index for index, parameter in enumerate(entry.arguments) if EXTENT_RANGE in parameter.attributes]
    assert marked == [x.first_parameter + 2, *x.shape_parameters()]
    assert n.first_parameter not in marked         # the integer argument is not an extent


@pytest.mark.parametrize("kernel, args", [(parallel_sum, (np.ones(8),)), (calls_a_rule, (np.ones(2),))],
                         ids=["prange", "custom rule"])
def test_kernels_needing_enzpys_rewrites_take_the_round_trip(kernel, args):
    captured = capture(kernel, args=args)
    assert driver._with_array_extents(str(captured.module), captured) is None


def test_gradients_through_both_paths_agree(monkeypatch):
    x, y = CASES["callee"][1]
    a = np.linspace(0.5, 1.5, 30).reshape(6, 5)
    once = enzpy.differentiate(with_callee).grad(x, y), enzpy.differentiate(stencil).grad(a, a.copy())
    monkeypatch.setattr(driver, "_with_array_extents", lambda text, captured: None)
    twice = (enzpy.differentiate(numba.njit(with_callee.py_func)).grad(x, y),
             enzpy.differentiate(numba.njit(stencil.py_func)).grad(a, a.copy()))
    for (gradient_x, gradient_y), (stencil_a, stencil_b) in (once, twice):
        np.testing.assert_allclose(gradient_x, np.cos(x) * y + 2 * x, rtol=1e-13)
        np.testing.assert_allclose(gradient_y, np.sin(x), rtol=1e-13)
    np.testing.assert_allclose(once[1][0], twice[1][0], rtol=1e-13)
    np.testing.assert_allclose(once[1][1], twice[1][1], rtol=1e-13)
    assert np.abs(once[1][0]).sum() > 0


# -- the collector during a compile

def test_a_compile_freezes_the_existing_objects_and_gives_them_back():
    seen = []
    with scanning_new_objects_only():
        seen.append(gc.get_freeze_count())
        with scanning_new_objects_only():            # nested: one freeze for both
            seen.append(gc.get_freeze_count())
        seen.append(gc.get_freeze_count())
    assert seen[0] > 0 and seen[1] == seen[0] and seen[2] == seen[0]
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_keeps_them_frozen():
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        enzpy.differentiate(numba.njit(sum_of_squares.py_func)).grad(np.ones(3))
        assert gc.get_freeze_count() > before // 2       # still frozen (a few were freed)
    finally:
        gc.unfreeze()


def test_a_failed_compile_unfreezes_too():
    @numba.njit
    def returns_nothing(x):
        x[0] = 1.0

    with pytest.raises(Exception):
        enzpy.differentiate(returns_nothing).autodiff(enzpy.Active(1.0))
    assert gc.get_freeze_count() == 0


# -- a kernel the dispatcher has not compiled is lowered only

def test_a_fresh_kernel_is_lowered_not_compiled_and_still_runs_as_before():
    kernel = numba.njit(sum_of_squares.py_func)
    x = np.linspace(0.5, 2.0, 5)
    value, (gradient,) = enzpy.differentiate(kernel).value_and_grad(x)
    assert len(kernel.overloads) == 0          # numba generated no machine code for the primal
    np.testing.assert_allclose(gradient, 2 * x, rtol=1e-14)
    assert kernel(x) == value                  # the plain call compiles it as always
    assert len(kernel.overloads) == 1


def test_a_compiled_kernel_is_captured_from_its_overload():
    kernel = numba.njit(sum_of_squares.py_func)
    x = np.linspace(0.5, 2.0, 5)
    kernel(x)
    enzpy.differentiate(kernel).grad(x)
    assert len(kernel.overloads) == 1


@numba.njit
def raises_with_a_value(x):
    if x[0] < 0.0:
        raise ValueError("negative start", x.shape[0])   # a dynamic exception: numba's Environment
    return np.sum(x * x)


def test_a_lowered_kernels_dynamic_exception_is_raised():
    kernel = numba.njit(raises_with_a_value.py_func)
    differentiable = enzpy.differentiate(kernel)
    (gradient,) = differentiable.grad(np.array([1.0, 2.0]))
    np.testing.assert_allclose(gradient, [2.0, 4.0], rtol=1e-14)
    with pytest.raises(ValueError, match="negative start"):
        differentiable.grad(np.array([-1.0, 2.0]))
