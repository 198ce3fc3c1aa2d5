"""prange kernels (`@njit(parallel=True)`): derivatives at 1 and 2 threads, and the parallel launches.

Every parallel kernel of the corpus is checked in reverse mode against 5-point
finite differences and forward against reverse, at `numba.set_num_threads(1)`
and `(2)` (the derivatives read the thread count when they run, as numba's
launcher does). Larger kernels check what only shows with several threads and
many iterations: adjoints that threads add to the same element (a gather), a
reduction split over threads, prange inside a serial time loop; and that the
derivative module does launch its loops through the threading layer.
"""

import numba
import numpy as np
import pytest

from numba import prange

from enzpy import Active, Const, Duplicated, Revolve, checkpointed, differentiate
from enzpy.frontend.numba import capture
from enzpy.parallel import find_parallel_loops
from enzpy.ir import read_module
from tests.kernels import parallel
from tests.test_forward_corpus import test_forward_agrees_with_reverse as check_forward_against_reverse
from tests.test_reverse_corpus import check_against_finite_differences

CASES = parallel.CASES
THREADS = [1, 2]


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}threads")
def threads(request):
    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s) on this machine")
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reverse_matches_finite_differences(case, threads):
    check_against_finite_differences(case, optimize=True)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_agrees_with_reverse(case, threads):
    check_forward_against_reverse(case)


def test_threads_adding_to_the_same_adjoint_lose_nothing(threads):
    # 200,000 iterations read 16 elements: without atomic adds, two threads' updates collide.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, 16)
    index = rng.integers(0, 16, 200_000)
    w = rng.uniform(0.5, 1.5, 200_000)
    y_bar = rng.standard_normal(200_000)
    x_bar = np.zeros_like(x)
    differentiate(parallel.prange_gather).autodiff(Duplicated(x.copy(), x_bar), Const(index), Const(w),
                                                   Duplicated(np.zeros(200_000), y_bar.copy()))
    expected = np.bincount(index, weights=2.0 * w * x[index] * y_bar, minlength=16)
    # Summation order differs from bincount's; a lost update would be off by O(1).
    np.testing.assert_allclose(x_bar, expected, rtol=1e-10, atol=1e-10 * np.max(np.abs(expected)))


def test_a_reduction_over_threads_and_a_time_loop_give_the_serial_gradient(threads):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, 100_000)
    gradient, = differentiate(parallel.prange_sum_of_squares).grad(x)
    np.testing.assert_allclose(gradient, 2.0 * x, rtol=1e-15)

    u = rng.uniform(-1.0, 1.0, 5_000)
    gradient, nu_bar = differentiate(parallel.prange_heat_steps).grad(u.copy(), 0.2, 20, wrt=(0, 1))
    serial, serial_nu = differentiate(parallel.prange_heat_steps.py_func).grad(u.copy(), 0.2, 20, wrt=(0, 1))
    np.testing.assert_allclose(gradient, serial, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nu_bar, serial_nu, rtol=1e-10)


def test_prange_launches_are_found_and_the_derivatives_launch_in_parallel():
    x = np.ones(10)
    captured = capture(parallel.prange_sum_of_squares, args=(x,))
    loops = find_parallel_loops(read_module(captured.module))
    assert len(loops) == 1 and loops[0].body is not None and loops[0].array_count == 3
    d = differentiate(parallel.prange_sum_of_squares)
    for module, _, _ in (d.gradient_module(captured, (Duplicated,)), d.tangent_module(captured, (Duplicated,))):
        launches = [i for f in module.functions.values() for i in f.instructions()
                    if getattr(getattr(i, "callee", None), "name", "") == "numba_parallel_for"]
        callers = {i.parent.parent.name for i in launches}
        assert callers == {"enzpy.parallel.launch"}
        launched = [i.operands[0].name for f in module.functions.values() for i in f.instructions()
                    if getattr(getattr(i, "callee", None), "name", "") == "enzpy.parallel.launch"]
        assert launched and all(name.startswith("enzpy.parallel.") for name in launched)


def test_explain_names_the_prange_loops():
    report = differentiate(parallel.prange_stencil).explain(np.ones(32), np.zeros(32))
    assert len(report.parallel_loops) == 1 and "run in parallel" in report.parallel_loops[0]
    assert "prange loops:" in str(report)


@numba.njit(parallel=True)
def _heat_step(u, scratch, nu):
    n = u.shape[0]
    for i in prange(1, n - 1):
        scratch[i] = u[i] + nu * (u[i + 1] - 2.0 * u[i] + u[i - 1]) - 0.05 * u[i] ** 3
    for i in prange(1, n - 1):
        u[i] = scratch[i]


def test_a_checkpointed_time_loop_of_prange_steps(threads):
    u0 = np.random.default_rng(2).uniform(-1.0, 1.0, 500)
    # The prange loop writes u and scratch through the launch's pointer array: they are state.
    assert differentiate(_heat_step).written_arguments((u0, u0.copy(), 0.2), floats_only=False) == {0, 1}
    loop = checkpointed(_heat_step, 40, schedule=Revolve(4))
    u = u0.copy()
    loop(u, np.zeros_like(u), 0.2)
    du = 2.0 * u
    u = u0.copy()
    (dnu,) = loop.autodiff(Duplicated(u, du), Const(np.zeros_like(u)), Active(0.2))
    # The same 40 steps in one serial kernel.
    expected, expected_nu = differentiate(parallel.prange_heat_steps.py_func).grad(u0.copy(), 0.2, 40, wrt=(0, 1))
    np.testing.assert_allclose(du, expected, rtol=1e-12, atol=1e-14)
    assert dnu == pytest.approx(expected_nu, rel=1e-12)


@numba.njit(parallel=True)
def _rows_of_a_copy(a, x):
    out = np.zeros(a.shape[0])
    for i in prange(a.shape[0]):
        r = x.copy()                  # a memcpy, whose adjoint adds r's into x's without atomics
        r[0] += a[i, 0]
        out[i] = np.sum(r * r) * a[i, 1]
    return np.sum(out)


def test_a_loop_whose_adjoint_cannot_be_atomic_runs_on_one_thread(threads):
    rng = np.random.default_rng(4)
    a, x = rng.uniform(-1.0, 1.0, (400, 3)), rng.uniform(-1.0, 1.0, 30)
    d = differentiate(_rows_of_a_copy)
    _, x_bar = d.grad(a, x)
    r = np.tile(x, (400, 1))
    r[:, 0] += a[:, 0]
    np.testing.assert_allclose(x_bar, 2.0 * (a[:, 1:2] * r).sum(axis=0), rtol=1e-12)
    loops = d.explain(a, x).parallel_loops
    assert any("one thread" in text and "memory copy" in text for text in loops), loops
