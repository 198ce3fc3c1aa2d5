"""A scalar ODE integrated with classical RK4: gradient with respect to its parameters.

dy/dt = r y (1 - y / K) - h y / (1 + y) + A sin(t): logistic growth with
saturating harvest and periodic forcing. The loss is the time integral of y^2
(a sum over steps); its gradient is taken with respect to (r, K, h, A) and y(0).
Scalar work per step makes this the case where per-operation overhead
dominates: numba and enzpy run it as straight-line code, PyTorch pays its
dispatch on every scalar operation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import Contender, Instance, concatenate, fresh_kernel

# PyTorch pays ~40 scalar-op dispatches per step, forward and backward: 5000 steps is ~4 s a call.
SIZES = {"tiny": [20], "quick": [1000], "full": [5000]}
PARAMETERS = np.array([1.5, 4.0, 0.8, 0.5])   # growth r, capacity K, harvest h, forcing A
INITIAL = 0.5
DURATION = 20.0


def instances(scale: str) -> list[Instance]:
    return [OdeInstance(steps) for steps in SIZES[scale]]


def rate(numpy_like, y, t, parameters):
    """The right-hand side, written once for numba, NumPy, JAX and PyTorch scalars."""
    growth, capacity, harvest, forcing = parameters[0], parameters[1], parameters[2], parameters[3]
    return growth * y * (1.0 - y / capacity) - harvest * y / (1.0 + y) + forcing * numpy_like.sin(t)


@numba.njit
def logistic_rate(y, t, parameters):
    return parameters[0] * y * (1.0 - y / parameters[1]) - parameters[2] * y / (1.0 + y) + \
        parameters[3] * math.sin(t)


@numba.njit
def ode_loss(parameters, initial, time_step, steps):
    y = initial
    t = 0.0
    loss = 0.0
    for _ in range(steps):
        k1 = logistic_rate(y, t, parameters)
        k2 = logistic_rate(y + 0.5 * time_step * k1, t + 0.5 * time_step, parameters)
        k3 = logistic_rate(y + 0.5 * time_step * k2, t + 0.5 * time_step, parameters)
        k4 = logistic_rate(y + time_step * k3, t + time_step, parameters)
        y += time_step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t += time_step
        loss += time_step * y * y
    return loss


def rk4_loss(numpy_like, parameters, initial, time_step, steps):
    """The same integration in plain Python over a framework's scalars (the NumPy reference, PyTorch)."""
    y, loss = initial, 0.0
    for step in range(steps):
        t = step * time_step
        k1 = rate(numpy_like, y, t, parameters)
        k2 = rate(numpy_like, y + 0.5 * time_step * k1, t + 0.5 * time_step, parameters)
        k3 = rate(numpy_like, y + 0.5 * time_step * k2, t + 0.5 * time_step, parameters)
        k4 = rate(numpy_like, y + time_step * k3, t + time_step, parameters)
        y = y + time_step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        loss = loss + time_step * y * y
    return loss


class OdeInstance(Instance):
    family = "ODE"

    def __init__(self, steps: int):
        self.steps = steps
        self.time_step = DURATION / steps
        self.ode_parameters = PARAMETERS.copy()
        self.initial = INITIAL

    @property
    def label(self) -> str:
        return f"RK4, {self.steps} steps"

    # -- references

    def numpy_objective(self) -> float:
        # Times as step * dt (the kernel accumulates t += dt): equal to rounding, well inside the check.
        return float(rk4_loss(np, self.ode_parameters, self.initial, self.time_step, self.steps))

    def parameters(self) -> np.ndarray:
        return np.concatenate([self.ode_parameters, [self.initial]])

    def objective_at(self, flat: np.ndarray) -> float:
        return ode_loss(flat[:4].copy(), float(flat[4]), self.time_step, self.steps)

    def direction_scale(self) -> float:
        return 0.1

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(ode_loss) if fresh else ode_loss
        return lambda: kernel(self.ode_parameters, self.initial, self.time_step, self.steps)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Active, Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(ode_loss), optimize=optimize)

        def call():
            parameters_bar = np.zeros(4)
            (initial_bar,) = differentiable.autodiff(Duplicated(self.ode_parameters, parameters_bar),
                                                     Active(self.initial), Const(self.time_step),
                                                     Const(self.steps))
            return parameters_bar, initial_bar

        return Contender(call, lambda result: concatenate([result[0], [result[1]]]))

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy
        time_step, steps = self.time_step, self.steps

        def loss(parameters, initial):
            def step(index, carry):
                y, total = carry
                t = index * time_step
                k1 = rate(numpy, y, t, parameters)
                k2 = rate(numpy, y + 0.5 * time_step * k1, t + 0.5 * time_step, parameters)
                k3 = rate(numpy, y + 0.5 * time_step * k2, t + 0.5 * time_step, parameters)
                k4 = rate(numpy, y + time_step * k3, t + time_step, parameters)
                y = y + time_step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                return y, total + time_step * y * y
            return jax.lax.fori_loop(0, steps, step, (initial, 0.0))[1]

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        arguments = (numpy.asarray(self.ode_parameters), numpy.asarray(self.initial))
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate([result[1][0], [result[1][1]]]),
                         lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        parameters = [torch.tensor(self.ode_parameters, requires_grad=True),
                      torch.tensor(self.initial, dtype=torch.float64, requires_grad=True)]

        def call():
            # Unbinding once keeps each step on scalar tensors, not on indexing views.
            ode_parameters = parameters[0].unbind()
            # Times are plain floats, so math.sin gives constants, not tensors.
            value = rk4_loss(math, ode_parameters, parameters[1], self.time_step, self.steps)
            return value.detach(), torch.autograd.grad(value, parameters)

        return Contender(call, lambda result: concatenate([result[1][0], [result[1][1]]]),
                         lambda result: float(result[0]))

