"""Time-stepper style kernels: explicit integrators for ODEs and PDEs that
run many steps, some writing into caller-provided arrays."""

import math

import numba
import numpy as np

from .case import Case


@numba.njit
def logistic_growth_euler(initial_population, growth_rate, capacity, time_step, steps):
    population = initial_population
    for _ in range(steps):
        population += time_step * growth_rate * population * (1.0 - population / capacity)
    return population


@numba.njit
def pendulum_midpoint(angle, angular_velocity, time_step, steps):
    for _ in range(steps):
        half_angle = angle + 0.5 * time_step * angular_velocity
        half_velocity = angular_velocity - 0.5 * time_step * math.sin(angle)
        angle += time_step * half_velocity
        angular_velocity -= time_step * math.sin(half_angle)
    return angle


@numba.njit
def coupled_decay_euler_in_place(state, rates, coupling, time_step, steps):
    # state is advanced in place; the returned energy summarises the end state.
    n = state.shape[0]
    derivative = np.empty(n)
    for _ in range(steps):
        for i in range(n):
            left = state[i - 1] if i > 0 else 0.0
            right = state[i + 1] if i < n - 1 else 0.0
            derivative[i] = -rates[i] * state[i] + coupling * (left + right - 2.0 * state[i])
        for i in range(n):
            state[i] += time_step * derivative[i]
    energy = 0.0
    for i in range(n):
        energy += state[i] * state[i]
    return energy


@numba.njit
def heat_equation_steps(initial, out, diffusivity, time_step, spacing, steps):
    # Fixed (Dirichlet) boundaries: out keeps the end values of initial.
    n = initial.shape[0]
    factor = diffusivity * time_step / (spacing * spacing)
    current = initial.copy()
    out[0] = current[0]
    out[n - 1] = current[n - 1]
    for _ in range(steps):
        for i in range(1, n - 1):
            out[i] = current[i] + factor * (current[i - 1] - 2.0 * current[i] + current[i + 1])
        for i in range(1, n - 1):
            current[i] = out[i]


def burgers_upwind_steps(velocity, scratch, viscosity, time_step, spacing, steps):
    # Periodic domain; velocity stays positive so the upwind side is i - 1.
    n = velocity.shape[0]
    for _ in range(steps):
        for i in range(n):
            left = velocity[i - 1]
            right = velocity[(i + 1) % n]
            advection = velocity[i] * (velocity[i] - left) / spacing
            diffusion = viscosity * (right - 2.0 * velocity[i] + left) / (spacing * spacing)
            scratch[i] = velocity[i] + time_step * (diffusion - advection)
        for i in range(n):
            velocity[i] = scratch[i]


@numba.njit
def lotka_volterra_euler(prey, predator, parameters, time_step, steps):
    alpha, beta, delta, gamma = parameters[0], parameters[1], parameters[2], parameters[3]
    for _ in range(steps):
        prey_change = alpha * prey - beta * prey * predator
        predator_change = delta * prey * predator - gamma * predator
        prey += time_step * prey_change
        predator += time_step * predator_change
    return prey + predator


def _periodic_positive_profile(rng, size):
    phase = rng.uniform(0.0, 1.0)
    return 1.0 + 0.2 * np.sin(np.linspace(0.0, 2.0 * np.pi, size, endpoint=False) + phase)


@numba.njit
def heat_equation_swapping_buffers(initial, diffusivity, steps):
    # Two allocated buffers trade places every step: the pointers merge in a phi.
    current = initial.copy()
    following = np.empty_like(current)
    last = current.shape[0] - 1
    for _ in range(steps):
        following[0] = current[0]
        following[last] = current[last]
        for i in range(1, last):
            following[i] = current[i] + diffusivity * (current[i - 1] - 2.0 * current[i] + current[i + 1])
        current, following = following, current
    return np.sum(current * current)


CASES = [
    Case(
        name="stepper_logistic_growth_euler",
        func=logistic_growth_euler,
        make_args=lambda rng: (float(rng.uniform(0.1, 0.5)), 1.2, 2.0, 0.01, 300),
        tags=frozenset({"loop", "stepper"}),
    ),
    Case(
        name="stepper_pendulum_midpoint",
        func=pendulum_midpoint,
        make_args=lambda rng: (float(rng.uniform(0.2, 1.0)), float(rng.uniform(-0.5, 0.5)), 0.02, 200),
        sig="float64(float64, float64, float64, int64)",
        tags=frozenset({"loop", "stepper", "math"}),
    ),
    Case(
        name="stepper_coupled_decay_in_place",
        func=coupled_decay_euler_in_place,
        make_args=lambda rng: (rng.uniform(0.5, 1.5, 10), rng.uniform(0.1, 1.0, 10), 0.2, 0.05, 100),
        tags=frozenset({"loop", "nested", "stepper", "inplace", "alloc", "branch", "select"}),
    ),
    Case(
        name="stepper_heat_equation_into_output",
        func=heat_equation_steps,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 32), np.zeros(32), 0.5, 0.001, 0.05, 50),
        tags=frozenset({"loop", "nested", "stepper", "stencil", "inplace", "alloc"}),
    ),
    Case(
        name="stepper_burgers_upwind_in_place",
        func=burgers_upwind_steps,
        make_args=lambda rng: (_periodic_positive_profile(rng, 32), np.zeros(32), 0.01, 0.002, 0.1, 40),
        tags=frozenset({"loop", "nested", "stepper", "stencil", "inplace"}),
    ),
    Case(
        name="stepper_heat_equation_swapping_buffers",
        func=heat_equation_swapping_buffers,
        make_args=lambda rng: (rng.uniform(0.0, 1.0, 24), 0.2, 30),
        tags=frozenset({"loop", "nested", "stepper", "stencil", "alloc"}),
    ),
    Case(
        name="stepper_lotka_volterra_euler",
        func=lotka_volterra_euler,
        make_args=lambda rng: (
            float(rng.uniform(1.0, 2.0)),
            float(rng.uniform(0.5, 1.0)),
            np.array([1.1, 0.4, 0.1, 0.4]),
            0.01,
            400,
        ),
        tags=frozenset({"loop", "stepper"}),
    ),
]
