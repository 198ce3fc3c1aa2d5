"""Time loops marked `enzpy.checkpoint_range`: the reverse sweep keeps snapshots and recomputes.

Every schedule appears (Revolve in memory, Revolve with disk snapshots,
Periodic, Online), with the state kinds a step can have: arrays the kernel
allocates, an array argument written in place, scalars carried from step to
step, a value the loop hands to the code after it, a step that raises on bad
input (numba's division check), and one checkpointed loop inside another.
"""

import math

import numba
import numpy as np

from enzpy import Online, Periodic, Revolve, checkpoint_range

from .case import Case

PERIODIC = Periodic(3)
ONLINE = Online(2, period=4)
ON_DISK = Revolve(2, disk_snapshots=2)


@numba.njit
def checkpointed_burgers(u0, nu, steps):
    # 1-D viscous Burgers, periodic, upwind-free central differences; energy at the end.
    u = u0.copy()
    un = np.empty_like(u)
    n = u.shape[0]
    dt = 0.01
    for t in checkpoint_range(steps, 3):
        for i in range(n):
            left, right = u[i - 1], u[(i + 1) % n]
            un[i] = u[i] - 0.5 * dt * u[i] * (right - left) / 0.1 + nu * dt * (right - 2.0 * u[i] + left) / 0.01
        u[:] = un
    return 0.5 * np.sum(u * u)


@numba.njit
def checkpointed_heat_in_place(field, conductivity, steps):
    # 2-D heat with a conductivity map, written into the argument; the result is its mean square.
    rows, columns = field.shape
    new = field.copy()
    for t in checkpoint_range(steps, PERIODIC):
        for i in range(1, rows - 1):
            for j in range(1, columns - 1):
                new[i, j] = field[i, j] + 0.1 * conductivity[i, j] * (
                    field[i - 1, j] + field[i + 1, j] + field[i, j - 1] + field[i, j + 1] - 4.0 * field[i, j])
        field[:, :] = new
    return np.mean(field * field)


@numba.njit
def checkpointed_rk4(y0, rate, steps):
    # RK4 on a scalar ODE: the state is carried in registers (loop phis), time included.
    y = y0[0]
    t = 0.0
    h = 0.05
    for k in checkpoint_range(steps, ONLINE):
        k1 = -rate * y + math.sin(t) * y * y / (1.0 + y * y)
        k2 = -rate * (y + h / 2 * k1) + math.sin(t + h / 2) * (y + h / 2 * k1) ** 2 / (1.0 + (y + h / 2 * k1) ** 2)
        k3 = -rate * (y + h / 2 * k2) + math.sin(t + h / 2) * (y + h / 2 * k2) ** 2 / (1.0 + (y + h / 2 * k2) ** 2)
        k4 = -rate * (y + h * k3) + math.sin(t + h) * (y + h * k3) ** 2 / (1.0 + (y + h * k3) ** 2)
        y += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
    return y * y + t


@numba.njit
def checkpointed_energy_history(u0, damping, steps):
    # The loop sums an energy over time (a carried float) and hands the last step's value on.
    u = u0.copy()
    total = 0.0
    last = 0.0
    for t in checkpoint_range(steps, ON_DISK):
        for i in range(u.shape[0]):
            u[i] = u[i] * damping + 0.1 * math.sin(u[i])
        last = np.sum(u * u)
        total += last
    return total + 2.0 * last


@numba.njit
def checkpointed_dividing_step(x, scale, steps):
    # A float division in the step: numba checks its divisor (a raise path the step keeps).
    y = x.copy()
    for t in checkpoint_range(steps, 2):
        for i in range(y.shape[0]):
            y[i] = y[i] / scale + 0.05 * y[i] * y[i]
    return np.sum(y)


@numba.njit
def checkpointed_nested(u0, coefficient, outer, inner):
    # A checkpointed loop inside a checkpointed loop: the outer step's state holds the inner one's.
    u = u0.copy()
    for s in checkpoint_range(outer, 2):
        for t in checkpoint_range(inner, 2):
            for i in range(u.shape[0]):
                u[i] = u[i] + coefficient * math.tanh(u[i - 1] - u[i])
        u[0] = 0.5 * u[0]
    return np.sum(u * u)


def _uniform(rng, low, high, shape):
    return rng.uniform(low, high, shape)


CASES = [
    Case(name="checkpointed_burgers", func=checkpointed_burgers,
         make_args=lambda rng: (0.5 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))
                                + 0.01 * rng.standard_normal(16), 0.05, 11),
         tags=frozenset({"loop", "checkpointed", "alloc"})),
    Case(name="checkpointed_heat_in_place", func=checkpointed_heat_in_place,
         make_args=lambda rng: (_uniform(rng, 0.0, 1.0, (6, 7)), _uniform(rng, 0.5, 1.5, (6, 7)), 7),
         tags=frozenset({"loop", "checkpointed", "2d", "inplace"})),
    Case(name="checkpointed_rk4", func=checkpointed_rk4,
         make_args=lambda rng: (_uniform(rng, 0.5, 1.0, 1), 0.7, 13),
         tags=frozenset({"loop", "checkpointed"})),
    Case(name="checkpointed_energy_history", func=checkpointed_energy_history,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 9), 0.9, 9),
         tags=frozenset({"loop", "checkpointed", "alloc"})),
    Case(name="checkpointed_dividing_step", func=checkpointed_dividing_step,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 8), 1.1, 6),
         tags=frozenset({"loop", "checkpointed", "alloc"})),
    Case(name="checkpointed_nested", func=checkpointed_nested,
         make_args=lambda rng: (_uniform(rng, -1.0, 1.0, 10), 0.3, 4, 3),
         tags=frozenset({"loop", "checkpointed", "alloc"})),
]
