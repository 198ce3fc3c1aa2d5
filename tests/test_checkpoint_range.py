"""`enzpy.checkpoint_range` inside kernels (checkpointing/marker, outline, plan, generated).

The corpus (tests/kernels/checkpointed.py) checks each checkpointed kernel
against finite differences and forward mode. Here: the primal is `range`;
the checkpointed gradient equals the same kernel's gradient with a plain
`range` loop to 1e-12 for every schedule on a grid of short lengths (the
lengths Checkpointing.jl users report trouble with); Revolve recomputes
exactly Griewank's binomial minimum; tape memory no longer grows with the
number of steps; disk snapshots are removed, also when the kernel raises;
what cannot be checkpointed is refused with the reason.
"""

import glob
import math
import os
import types

import numba
import numpy as np
import pytest

import enzpy
from enzpy import DifferentiationError, Online, Periodic, Revolve, checkpoint_range, differentiate
from enzpy.checkpointing import binomial_recomputations
from enzpy.checkpointing.plan import plan_operations

SCHEDULES = [1, 2, 4, Revolve(3), Periodic(1), Periodic(3), Online(2, period=3), Revolve(2, disk_snapshots=2)]
LENGTHS = [1, 2, 3, 4, 5, 10, 37]


@numba.njit
def _plain_range(n, schedule):
    return range(n)


def plain(kernel):
    """The same kernel with `checkpoint_range` read as `range`: the un-checkpointed reference."""
    function = kernel.py_func
    scope = dict(function.__globals__, checkpoint_range=_plain_range)
    return numba.njit(types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                                         function.__closure__))


def burgers_with(schedule):
    @numba.njit
    def burgers(u0, nu, steps):
        u = u0.copy()
        un = np.empty_like(u)
        n = u.shape[0]
        for t in checkpoint_range(steps, schedule):
            for i in range(n):
                left, right = u[i - 1], u[(i + 1) % n]
                un[i] = u[i] - 0.05 * u[i] * (right - left) + nu * (right - 2.0 * u[i] + left)
            u[:] = un
        return 0.5 * np.sum(u * u)
    return burgers


def initial_state(n=20):
    return 0.5 + 0.4 * np.sin(np.linspace(0.0, 2 * np.pi, n, endpoint=False))


def test_the_primal_is_range_in_python_and_under_numba():
    assert list(checkpoint_range(5, 2)) == list(range(5))
    assert list(checkpoint_range(0, Periodic(3))) == []
    burgers = burgers_with(3)
    u0 = initial_state()
    assert burgers(u0, 0.1, 7) == plain(burgers)(u0, 0.1, 7) == burgers.py_func(u0, 0.1, 7)
    with pytest.raises(TypeError, match="schedule"):
        checkpoint_range(3, "revolve")


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_checkpointed_gradients_equal_the_plain_loop_gradient(schedule, tmp_path):
    if isinstance(schedule, Revolve) and schedule.disk_snapshots:
        schedule = Revolve(schedule.snapshots, schedule.disk_snapshots, directory=str(tmp_path))
    kernel = burgers_with(schedule)
    checkpointed, reference = differentiate(kernel), differentiate(plain(kernel))
    u0 = initial_state()
    for steps in LENGTHS:
        value, (u_bar, nu_bar, _) = checkpointed.value_and_grad(u0.copy(), 0.02, steps)
        expected_value, (expected_u, expected_nu, _) = reference.value_and_grad(u0.copy(), 0.02, steps)
        assert value == expected_value
        np.testing.assert_allclose(u_bar, expected_u, rtol=1e-12, atol=1e-14, err_msg=f"{steps} steps")
        np.testing.assert_allclose(nu_bar, expected_nu, rtol=1e-12, err_msg=f"{steps} steps")
    assert os.listdir(tmp_path) == []           # disk snapshots are removed when the gradient returns


def test_zero_steps_and_a_negative_count_run_no_step():
    kernel = burgers_with(2)
    u0 = initial_state()
    for steps in (0, -3):
        value, (u_bar, nu_bar, _) = differentiate(kernel).value_and_grad(u0.copy(), 0.02, steps)
        assert value == pytest.approx(0.5 * np.sum(u0 * u0), rel=1e-15)
        np.testing.assert_array_equal(u_bar, u0)
        assert nu_bar == 0.0


@pytest.mark.parametrize("snapshots", [1, 2, 3, 4])
def test_revolve_recomputes_the_binomial_minimum(snapshots):
    for steps in [1, 2, 3, 5, 8, 13, 40, 100]:
        report = plan_operations(Revolve(snapshots), steps).report
        assert report.forward_steps - steps == binomial_recomputations(steps, snapshots), steps
    # ... and the driver does what its plan says.
    kernel = burgers_with(snapshots)
    report = differentiate(kernel).explain(initial_state(), 0.02, 40)
    run, = report.checkpoint_runs
    assert (run.steps, run.recomputed_steps) == (40, binomial_recomputations(40, snapshots))
    assert run.peak_snapshots <= snapshots


def test_tape_memory_is_bounded_by_the_snapshots_not_the_steps():
    kernel = burgers_with(4)
    u0 = initial_state(64)
    plain_tape = [differentiate(plain(kernel)).explain(u0, 0.02, n).cache_bytes for n in (50, 400)]
    checkpointed_tape = [differentiate(kernel).explain(u0, 0.02, n).cache_bytes for n in (50, 400)]
    assert plain_tape[1] > 7 * plain_tape[0]                       # the plain tape grows with the steps
    assert checkpointed_tape[1] == checkpointed_tape[0]            # one step's tape, whatever the length
    report = differentiate(kernel).explain(u0, 0.02, 400)
    # u and un, the carried counter and exit flag, the (empty) carried floats' one slot
    assert report.checkpoint_runs[0].snapshot_bytes == 64 * 8 * 2 + 16 + 8
    assert "checkpoint_range loop 1: Revolve(snapshots=4" in str(report)


def test_forward_mode_ignores_checkpointing():
    kernel = burgers_with(Periodic(2))
    u0, direction = initial_state(), np.cos(np.arange(20.0))
    tangent = differentiate(kernel).jvp((u0.copy(), 0.02, 9), (direction, 1.0, None))[1]
    expected = differentiate(plain(kernel)).jvp((u0.copy(), 0.02, 9), (direction, 1.0, None))[1]
    assert tangent == pytest.approx(expected, rel=1e-13)
    _, (u_bar, nu_bar, _) = differentiate(kernel).value_and_grad(u0.copy(), 0.02, 9)
    assert tangent == pytest.approx(u_bar @ direction + nu_bar, rel=1e-12)


ON_DISK = Revolve(1, disk_snapshots=3)


@numba.njit
def raising_on_disk(x, scale, steps):
    y = x.copy()
    for t in checkpoint_range(steps, ON_DISK):
        for i in range(y.shape[0]):
            y[i] = y[i] / scale + 0.1 * y[i]
    z = np.sqrt(-np.sum(y * y))        # NaN, no raise: numba's sqrt of a negative
    if steps > 5:
        raise ValueError("too many steps")
    return z + np.sum(y)


def test_disk_snapshots_are_removed_when_the_kernel_raises(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError, match="too many steps"):
        differentiate(raising_on_disk).grad(np.linspace(0.1, 1.0, 6), 1.5, 9)
    assert glob.glob(str(tmp_path / "enzpy-checkpoints-*")) == []


def test_loops_that_cannot_be_checkpointed_are_refused_with_the_reason():
    @numba.njit
    def with_break(x, steps):
        s = 0.0
        for t in checkpoint_range(steps, 2):
            s += x[t % x.shape[0]]
            if s > 3.0:
                break
        return s

    @numba.njit
    def swapping(x, steps):
        u, v = x.copy(), np.empty_like(x)
        for t in checkpoint_range(steps, 2):
            for i in range(u.shape[0]):
                v[i] = 0.5 * u[i] * u[i]
            u, v = v, u
        return np.sum(u)

    with pytest.raises(DifferentiationError, match="`break` or `return` inside the loop"):
        differentiate(with_break).grad(np.ones(4), 5)
    with pytest.raises(DifferentiationError, match="checkpoint_range loop"):
        differentiate(swapping).grad(np.ones(4), 5)


def test_snapshots_must_be_known_when_the_kernel_compiles():
    @numba.njit
    def runtime_snapshots(x, steps, snapshots):
        s = 0.0
        for t in checkpoint_range(steps, snapshots):
            s = s * 0.5 + x[0]
        return s

    with pytest.raises(Exception, match="must be a constant"):
        runtime_snapshots(np.ones(2), 3, 2)


def test_a_schedule_read_from_a_global():
    @numba.njit
    def rk4(y0, rate, steps):
        y, t, h = y0, 0.0, 0.1
        for k in checkpoint_range(steps, SCHEDULE):
            k1 = -rate * y + math.sin(t)
            k2 = -rate * (y + h / 2 * k1) + math.sin(t + h / 2)
            y += h * k2
            t += h
        return y

    value, gradient = differentiate(rk4).value_and_grad(0.3, 0.7, 25)
    expected_value, expected = differentiate(plain(rk4)).value_and_grad(0.3, 0.7, 25)
    assert value == expected_value
    np.testing.assert_allclose(gradient[:2], expected[:2], rtol=1e-13)


SCHEDULE = Periodic(4)


def test_arrays_the_loop_writes_end_as_the_primal_leaves_them():
    @numba.njit
    def heat(field, steps):
        new = field.copy()
        for t in checkpoint_range(steps, 2):
            for i in range(1, field.shape[0] - 1):
                new[i] = field[i] + 0.2 * (field[i - 1] - 2.0 * field[i] + field[i + 1])
            field[:] = new
        return np.sum(field ** 3)

    start = np.sin(np.linspace(0.0, 3.0, 12))
    after_primal = start.copy()
    heat(after_primal, 9)
    field, shadow = start.copy(), np.zeros(12)
    enzpy.differentiate(heat).autodiff(enzpy.Duplicated(field, shadow), enzpy.Const(9))
    np.testing.assert_array_equal(field, after_primal)
    np.testing.assert_allclose(shadow, differentiate(plain(heat)).grad(start.copy(), 9)[0], rtol=1e-12)


def test_schedules_built_inside_the_kernel():
    @numba.njit
    def three_loops(x, n):
        s = 0.0
        for t in checkpoint_range(n, Periodic(3)):
            s = s * 0.9 + x[t % x.shape[0]]
        for t in checkpoint_range(n, Revolve(2, disk_snapshots=1)):
            s = s * 0.8 + x[t % x.shape[0]] ** 2
        for t in checkpoint_range(n, Online(2, period=5)):
            s = s * 0.7 + x[t % x.shape[0]] ** 3
        return s

    x = np.linspace(0.1, 1.0, 5)
    report = differentiate(three_loops).explain(x, 11)
    assert [run.schedule for run in report.checkpoint_runs] == [
        repr(Periodic(3)), repr(Revolve(2, disk_snapshots=1)), repr(Online(2, period=5))]
    np.testing.assert_allclose(differentiate(three_loops).grad(x, 11)[0],
                               differentiate(plain(three_loops)).grad(x, 11)[0], rtol=1e-13)
