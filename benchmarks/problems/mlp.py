"""A two-layer perceptron on a batch: gradient of the squared-error loss, through BLAS.

    H = tanh(X W1 + b1),  out = H W2 + b2,  loss = sum((out - Y)^2) / (2 batch)

with respect to the weights and biases (X, Y are data). The products are
numba's `@` on C arrays, lowered to numba_xxgemm; enzpy differentiates them at
the BLAS level (enzpy/rules/blas.py): the reverse sweep calls gemm for W2's
and H's adjoints and for W1's, so the gradient stays within a small factor of
the primal. This is the row where the work is BLAS, not scalar code. (The
same loss as NumPy array expressions, `np.tanh(X @ W1 + b1)`, differentiates
too, at about 2.5x the primal: numba's broadcasting loops cost the reverse
sweep taped indices.)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import SEED, Contender, Instance, concatenate, fresh_kernel

# (batch, inputs, hidden, outputs)
SIZES = {"tiny": [(8, 4, 6, 3)], "quick": [(256, 64, 128, 10)], "full": [(256, 64, 128, 10)]}


def instances(scale: str) -> list[Instance]:
    return [MlpInstance(*size) for size in SIZES[scale]]


@numba.njit
def mlp_loss(X, W1, b1, W2, b2, Y):
    Z = X @ W1
    H = np.empty_like(Z)
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            H[i, j] = math.tanh(Z[i, j] + b1[j])
    out = H @ W2
    loss = 0.0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            difference = out[i, j] + b2[j] - Y[i, j]
            loss += difference * difference
    return loss / (2.0 * X.shape[0])


def mlp_objective(numpy_like, X, W1, b1, W2, b2, Y):
    """The same loss for NumPy, JAX and PyTorch arrays."""
    H = numpy_like.tanh(X @ W1 + b1)
    difference = H @ W2 + b2 - Y
    return (difference * difference).sum() / (2.0 * X.shape[0])


class MlpInstance(Instance):
    family = "MLP"

    def __init__(self, batch: int, inputs: int, hidden: int, outputs: int):
        self.sizes = (batch, inputs, hidden, outputs)
        rng = np.random.default_rng(SEED)
        self.X = rng.standard_normal((batch, inputs))
        self.Y = rng.standard_normal((batch, outputs))
        self.weights = [rng.standard_normal((inputs, hidden)) / np.sqrt(inputs), 0.1 * rng.standard_normal(hidden),
                        rng.standard_normal((hidden, outputs)) / np.sqrt(hidden), 0.1 * rng.standard_normal(outputs)]

    @property
    def label(self) -> str:
        batch, inputs, hidden, outputs = self.sizes
        return f"batch {batch}, {inputs}-{hidden}-{outputs}"

    # -- references

    def numpy_objective(self) -> float:
        return float(mlp_objective(np, self.X, *self.weights, self.Y))

    def parameters(self) -> np.ndarray:
        return concatenate(self.weights)

    def _unflattened(self, flat: np.ndarray) -> list[np.ndarray]:
        parts, start = [], 0
        for weight in self.weights:
            parts.append(flat[start:start + weight.size].reshape(weight.shape).copy())
            start += weight.size
        return parts

    def objective_at(self, flat: np.ndarray) -> float:
        return mlp_loss(self.X, *self._unflattened(flat), self.Y)

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(mlp_loss) if fresh else mlp_loss
        return lambda: kernel(self.X, *self.weights, self.Y)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(mlp_loss), optimize=optimize)

        def call():
            shadows = [np.zeros_like(w) for w in self.weights]
            differentiable.autodiff(Const(self.X), *(Duplicated(w, s) for w, s in zip(self.weights, shadows)),
                                    Const(self.Y))
            return shadows

        return Contender(call, concatenate)

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy

        def loss(W1, b1, W2, b2, X, Y):
            return mlp_objective(numpy, X, W1, b1, W2, b2, Y)

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
        arguments = [numpy.asarray(w) for w in self.weights] + [numpy.asarray(self.X), numpy.asarray(self.Y)]
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate(result[1]), lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        weights = [torch.tensor(w, requires_grad=True) for w in self.weights]
        X, Y = torch.tensor(self.X), torch.tensor(self.Y)

        def call():
            value = mlp_objective(torch, X, *weights, Y)
            return value.detach(), torch.autograd.grad(value, weights)

        return Contender(call, lambda result: concatenate(result[1]), lambda result: float(result[0]))
