"""Checkpointed Python time loops (enzpy/checkpointing): the gradient equals the un-checkpointed
one for every schedule and storage, matches finite differences and forward mode, recomputes
no more than Griewank's binomial bound, and leaves no file behind."""

import os

import numba
import numpy as np
import pytest

import enzpy
from enzpy import Active, Const, DifferentiationError, Duplicated, Online, Periodic, Revolve, checkpointed
from enzpy.checkpointing import binomial_recomputations
from enzpy.checkpointing import loop as loop_module


@numba.njit
def burgers_step(u, scratch, nu, dt):
    n = u.size
    for i in range(n):
        left, right = u[i - 1], u[(i + 1) % n]
        scratch[i] = u[i] - 0.5 * dt * u[i] * (right - left) + nu * dt * (right - 2.0 * u[i] + left)
    for i in range(n):
        u[i] = scratch[i]


@numba.njit
def heat_step(field, conductivity, dt):
    # 2-D explicit heat step with a conductivity map, in place through a temporary.
    rows, columns = field.shape
    new = field.copy()
    for i in range(1, rows - 1):
        for j in range(1, columns - 1):
            new[i, j] = field[i, j] + dt * conductivity[i, j] * (
                field[i - 1, j] + field[i + 1, j] + field[i, j - 1] + field[i, j + 1] - 4.0 * field[i, j])
    field[:, :] = new


@numba.njit
def rk4_step(k, y, clock, rate):
    # One RK4 step of y' = -rate y + sin(t) y^2 / (1 + y^2); the step number k sets the time.
    h = 0.05
    t = k * h
    def f(t, y):
        return -rate * y + np.sin(t) * y * y / (1.0 + y * y)
    for i in range(y.size):
        k1 = f(t, y[i])
        k2 = f(t + h / 2, y[i] + h / 2 * k1)
        k3 = f(t + h / 2, y[i] + h / 2 * k2)
        k4 = f(t + h, y[i] + h * k3)
        y[i] += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    clock[0] = t + h


def cooled_enough(field, conductivity, dt):
    return field.max() < 0.35


SCHEDULES = [Revolve(1), Revolve(4), Revolve(3, disk_snapshots=2), Periodic(1), Periodic(7), Online(3, period=5)]


def burgers_problem():
    n = 24
    u = 0.5 + np.sin(np.linspace(0.0, 2 * np.pi, n, endpoint=False))
    return [u, np.zeros(n), 0.05, 0.01], np.linspace(-1.0, 1.0, n)


def stored_states_gradient(step, steps, values, seed, step_index=False):
    """The un-checkpointed reference: keep every state, then reverse step by step."""
    differentiable = enzpy.differentiate(step)
    values = [v.copy() if isinstance(v, np.ndarray) else v for v in values]
    states = []
    for k in range(steps):
        states.append([v.copy() if isinstance(v, np.ndarray) else v for v in values])
        step(*([k] if step_index else []), *values)
    adjoints = [seed.copy() if i == 0 else np.zeros_like(v) if isinstance(v, np.ndarray) else None
                for i, v in enumerate(values)]
    scalar = 0.0
    for k in reversed(range(steps)):
        annotated = [Duplicated(s.copy(), a) if isinstance(s, np.ndarray) else Active(s) if i == 2 else Const(s)
                     for i, (s, a) in enumerate(zip(states[k], adjoints))]
        derivatives = differentiable.autodiff(*([Const(k)] if step_index else []), *annotated)
        scalar += derivatives[0] if derivatives else 0.0
    return adjoints[0], scalar


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 37])
def test_burgers_gradient_equals_the_stored_states_gradient(schedule, steps, tmp_path):
    if getattr(schedule, "disk_snapshots", 0):
        schedule = Revolve(schedule.snapshots, schedule.disk_snapshots, directory=str(tmp_path))
    values, seed = burgers_problem()
    expected_u, expected_nu = stored_states_gradient(burgers_step, steps, values, seed)
    u, adjoint = values[0].copy(), seed.copy()
    final = values[0].copy()
    for _ in range(steps):
        burgers_step(final, np.zeros(final.size), 0.05, 0.01)
    (nu_derivative,) = checkpointed(burgers_step, steps, schedule=schedule).autodiff(
        Duplicated(u, adjoint), np.zeros(u.size), Active(0.05), Const(0.01))
    np.testing.assert_allclose(adjoint, expected_u, rtol=1e-12, atol=1e-14)
    assert nu_derivative == pytest.approx(expected_nu, rel=1e-12)
    np.testing.assert_array_equal(u, final)              # the state ends where a plain loop leaves it
    assert list(tmp_path.iterdir()) == []                 # disk snapshots removed


def test_burgers_gradient_matches_finite_differences_and_forward_mode():
    values, seed = burgers_problem()
    loop = checkpointed(burgers_step, 40, schedule=Revolve(5))
    u0 = values[0]

    def objective(u_start, nu):
        u = u_start.copy()
        loop(u, np.zeros(u.size), nu, 0.01)
        return seed @ u
    adjoint = seed.copy()
    (nu_derivative,) = loop.autodiff(Duplicated(u0.copy(), adjoint), np.zeros(u0.size), Active(0.05), Const(0.01))
    step = 1e-5
    direction = np.cos(np.arange(u0.size))
    along = [objective(u0 + s * step * direction, 0.05) for s in (-2, -1, 1, 2)]
    finite_difference = (along[0] - 8 * along[1] + 8 * along[2] - along[3]) / (12 * step)
    assert adjoint @ direction == pytest.approx(finite_difference, rel=1e-7)
    along = [objective(u0, 0.05 + s * step) for s in (-2, -1, 1, 2)]
    assert nu_derivative == pytest.approx((along[0] - 8 * along[1] + 8 * along[2] - along[3]) / (12 * step),
                                          rel=1e-7)
    # Forward against reverse: <J t, c> = <t, J^T c>.
    tangent = direction.copy()
    loop.autodiff(Duplicated(u0.copy(), tangent), np.zeros(u0.size), Duplicated(0.05, 0.3), Const(0.01),
                  mode="forward")
    assert seed @ tangent == pytest.approx(adjoint @ direction + 0.3 * nu_derivative, rel=1e-11)


@pytest.mark.parametrize("schedule", [Revolve(3), Periodic(4), Online(2, period=3)], ids=repr)
def test_heat_stepper_parameter_gradient_accumulates_over_steps(schedule):
    rng = np.random.default_rng(5)
    field = rng.uniform(0.0, 1.0, (6, 7))
    conductivity = rng.uniform(0.5, 1.5, (6, 7))
    seed = rng.standard_normal((6, 7))
    steps = 12
    plain_field, plain_conductivity = np.zeros_like(field), np.zeros_like(conductivity)
    differentiable = enzpy.differentiate(heat_step)
    states = []
    state = field.copy()
    for _ in range(steps):
        states.append(state.copy())
        heat_step(state, conductivity, 0.1)
    plain_field[...] = seed
    for k in reversed(range(steps)):
        differentiable.autodiff(Duplicated(states[k].copy(), plain_field), Duplicated(conductivity, plain_conductivity),
                                Const(0.1))
    field_adjoint, conductivity_adjoint = seed.copy(), np.zeros_like(conductivity)
    kept = conductivity.copy()
    checkpointed(heat_step, steps, schedule=schedule).autodiff(
        Duplicated(field.copy(), field_adjoint), Duplicated(conductivity, conductivity_adjoint), Const(0.1))
    np.testing.assert_allclose(field_adjoint, plain_field, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(conductivity_adjoint, plain_conductivity, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(conductivity, kept)


def test_ode_integrator_with_the_step_number_and_a_vjp():
    y0 = np.array([0.4, 1.1, -0.7])
    steps = 30
    loop = checkpointed(rk4_step, steps, schedule=Revolve(4), step_index=True)
    final, pullback = loop.vjp(y0.copy(), np.zeros(1), 0.8)
    cotangent = np.array([1.0, -0.5, 2.0])
    dy, dclock, drate = pullback((cotangent, None, None))
    expected_y, expected_rate = stored_states_gradient(rk4_step, steps, [y0, np.zeros(1), 0.8], cotangent,
                                                       step_index=True)
    np.testing.assert_allclose(dy, expected_y, rtol=1e-12)
    assert drate == pytest.approx(expected_rate, rel=1e-12)
    assert np.all(dclock == 0.0)
    y = y0.copy()
    for k in range(steps):
        rk4_step(k, y, np.zeros(1), 0.8)
    np.testing.assert_array_equal(final[0], y)


def test_a_loop_that_exits_early_takes_an_online_schedule():
    field = np.zeros((5, 6))
    field[1:-1, 1:-1] = np.linspace(0.2, 1.0, 12).reshape(3, 4)      # cold edges: the field cools
    conductivity = np.full((5, 6), 1.0)
    loop = checkpointed(heat_step, until=cooled_enough, schedule=Online(2, period=4))
    probe = field.copy()
    steps = loop(probe, conductivity, 0.05)
    assert steps == 18
    seed = np.linspace(-1.0, 1.0, 30).reshape(5, 6)
    adjoint = seed.copy()
    loop.autodiff(Duplicated(field.copy(), adjoint), Const(conductivity), Const(0.05))
    assert loop.report.steps == steps
    fixed = checkpointed(heat_step, steps, schedule=Revolve(3))
    expected = seed.copy()
    fixed.autodiff(Duplicated(field.copy(), expected), Const(conductivity), Const(0.05))
    np.testing.assert_allclose(adjoint, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="Online"):
        checkpointed(heat_step, until=cooled_enough, schedule=Revolve(3))


@pytest.mark.parametrize("snapshots", [1, 2, 3, 4])
def test_revolve_recomputes_the_binomial_optimum(snapshots):
    values, seed = burgers_problem()
    for steps in [1, 2, 3, 5, 8, 13, 21, 34, 100]:
        loop = checkpointed(burgers_step, steps, schedule=Revolve(snapshots))
        loop.autodiff(Duplicated(values[0].copy(), seed.copy()), np.zeros(values[0].size), Const(0.05), Const(0.01))
        report = loop.report
        assert report.reverse_steps == steps
        assert report.recomputed_steps == binomial_recomputations(steps, snapshots), (steps, snapshots)
        assert report.peak_snapshots <= snapshots
        assert report.peak_memory_bytes <= (snapshots + 1) * report.snapshot_bytes
    assert binomial_recomputations(1000, 10) == 3636          # Griewank and Walther's example


def test_disk_snapshots_are_removed_when_a_step_raises(tmp_path, monkeypatch):
    values, seed = burgers_problem()
    loop = checkpointed(burgers_step, 20, schedule=Periodic(5, directory=str(tmp_path)))
    calls = []
    original = loop_module.prepare_reverse

    def prepare_failing(*args, **kwargs):
        step_gradient = original(*args, **kwargs)

        def failing(*call_args, **call_kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("a failing adjoint step")
            return step_gradient(*call_args, **call_kwargs)
        return failing
    monkeypatch.setattr(loop_module, "prepare_reverse", prepare_failing)
    with pytest.raises(RuntimeError, match="failing adjoint"):
        loop.autodiff(Duplicated(values[0].copy(), seed.copy()), np.zeros(values[0].size), Const(0.05), Const(0.01))
    assert os.listdir(tmp_path) == []


def test_bad_loops_are_refused_clearly():
    @numba.njit
    def returns_a_cost(u):
        u[0] *= 2.0
        return u[0]
    with pytest.raises(DifferentiationError, match="returns nothing.*returns_a_cost"):
        checkpointed(returns_a_cost, 3).autodiff(Duplicated(np.ones(2), np.ones(2)))
    with pytest.raises(ValueError, match="either steps= or until="):
        checkpointed(burgers_step)
    with pytest.raises(ValueError, match="positive integer"):
        checkpointed(burgers_step, 5, schedule=Revolve(0)).autodiff(
            Duplicated(np.ones(3), np.ones(3)), np.zeros(3), Const(0.05), Const(0.01))
