"""1-D viscous Burgers' equation, explicit time stepping, gradient of the final energy.

u_t + (u^2 / 2)_x = nu u_xx on a periodic grid of [0, 2 pi): conservative
central differences for the flux, the three-point Laplacian, forward Euler in
time. The loss is the final energy 0.5 * sum(u^2) dx; its gradient is taken
with respect to the initial condition and the viscosity. Thousands of steps
make this the tape-heavy case: every step's state is needed in reverse.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import SEED, Contender, Instance, concatenate, fresh_kernel

SIZES = {"tiny": [(64, 20)], "quick": [(128, 1000)], "full": [(256, 4000)]}
VISCOSITY = 0.1   # keeps the cell Reynolds number u dx / nu below 2 at 64 points and up


def instances(scale: str) -> list[Instance]:
    return [BurgersInstance(points, steps) for points, steps in SIZES[scale]]


@numba.njit
def burgers_energy(initial, viscosity, time_step, spacing, steps):
    points = initial.shape[0]
    current = initial.copy()
    following = np.empty(points)
    for _ in range(steps):
        for i in range(points):
            # periodic neighbours without a modulo in the inner loop
            left = current[i - 1] if i > 0 else current[points - 1]
            right = current[i + 1] if i < points - 1 else current[0]
            flux = (right * right - left * left) / (4.0 * spacing)
            diffusion = viscosity * (right - 2.0 * current[i] + left) / (spacing * spacing)
            following[i] = current[i] + time_step * (diffusion - flux)
        # Copied back rather than swapped (`current, following = following, current`):
        # enzpy cannot differentiate that pointer swap yet ("a pointer merges
        # differentiable memory with memory enzpy has no shadow for").
        for i in range(points):
            current[i] = following[i]
    energy = 0.0
    for i in range(points):
        energy += current[i] * current[i]
    return 0.5 * energy * spacing


def burgers_step(numpy_like, roll, current, viscosity, time_step, spacing):
    """One step, vectorized with roll; the same code for NumPy, JAX and PyTorch."""
    left, right = roll(current, 1), roll(current, -1)
    flux = (right * right - left * left) / (4.0 * spacing)
    diffusion = viscosity * (right - 2.0 * current + left) / (spacing * spacing)
    return current + time_step * (diffusion - flux)


class BurgersInstance(Instance):
    family = "Burgers"

    def __init__(self, points: int, steps: int):
        self.points, self.steps = points, steps
        self.spacing = 2.0 * math.pi / points
        # Stable: the time step is a fifth of the diffusive limit spacing^2 / (2 nu).
        self.time_step = 0.1 * self.spacing ** 2 / VISCOSITY
        grid = np.arange(points) * self.spacing
        rng = np.random.default_rng([SEED, points, steps])
        self.initial = 0.5 + np.sin(grid) + 0.1 * rng.standard_normal(points)
        self.viscosity = VISCOSITY

    @property
    def label(self) -> str:
        return f"{self.points} points, {self.steps} steps"

    def arguments(self, initial=None, viscosity=None) -> tuple:
        return (self.initial if initial is None else initial, self.viscosity if viscosity is None else viscosity,
                self.time_step, self.spacing, self.steps)

    # -- references

    def numpy_objective(self) -> float:
        current = self.initial
        for _ in range(self.steps):
            current = burgers_step(np, np.roll, current, self.viscosity, self.time_step, self.spacing)
        return 0.5 * float((current * current).sum()) * self.spacing

    def parameters(self) -> np.ndarray:
        return np.concatenate([self.initial, [self.viscosity]])

    def objective_at(self, flat: np.ndarray) -> float:
        return burgers_energy(*self.arguments(flat[:-1].copy(), float(flat[-1])))

    def direction_scale(self) -> float:
        return 0.1

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(burgers_energy) if fresh else burgers_energy
        arguments = self.arguments()
        return lambda: kernel(*arguments)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Active, Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(burgers_energy), optimize=optimize)

        def call():
            initial_bar = np.zeros_like(self.initial)
            (viscosity_bar,) = differentiable.autodiff(
                Duplicated(self.initial, initial_bar), Active(self.viscosity), Const(self.time_step),
                Const(self.spacing), Const(self.steps))
            return initial_bar, viscosity_bar

        return Contender(call, lambda result: concatenate([result[0], [result[1]]]))

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy
        time_step, spacing, steps = self.time_step, self.spacing, self.steps

        def energy(initial, viscosity):
            def step(_, current):
                return burgers_step(numpy, numpy.roll, current, viscosity, time_step, spacing)
            final = jax.lax.fori_loop(0, steps, step, initial)
            return 0.5 * (final * final).sum() * spacing

        value_and_grad = jax.jit(jax.value_and_grad(energy, argnums=(0, 1)))
        arguments = (numpy.asarray(self.initial), numpy.asarray(self.viscosity))
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate(result[1]), lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        parameters = [torch.tensor(self.initial, requires_grad=True),
                      torch.tensor(self.viscosity, dtype=torch.float64, requires_grad=True)]

        def roll(tensor, shift):
            return torch.roll(tensor, shift, 0)

        def call():
            current, viscosity = parameters
            for _ in range(self.steps):
                current = burgers_step(torch, roll, current, viscosity, self.time_step, self.spacing)
            value = 0.5 * (current * current).sum() * self.spacing
            return value.detach(), torch.autograd.grad(value, parameters)

        return Contender(call, lambda result: concatenate(result[1]), lambda result: float(result[0]))
