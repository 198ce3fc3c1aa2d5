"""ADBench's LSTM loss (l layers, c characters, b = 14 bits per character).

The numba kernel is tests/adbench/objectives.py's `lstm_objective`, checked
there against ADBench's reference gradient. Gradients are with respect to the
main and extra parameters; the state and the text are constant. The JAX
version scans over characters; the PyTorch one loops in Python, as ADBench's
PyTorch module does, since eager PyTorch has no scan.
"""

from __future__ import annotations

import numpy as np

from tests.adbench.objectives import lstm_objective

from . import SEED, Contender, Instance, concatenate, fresh_kernel

BITS = 14
SIZES = {"tiny": [(1, 6)],
         "quick": [(2, 1024)],
         "full": [(2, 1024), (2, 4096), (4, 1024), (4, 4096)]}


def instances(scale: str) -> list[Instance]:
    return [LstmInstance(layers, chars) for layers, chars in SIZES[scale]]


class LstmInstance(Instance):
    family = "LSTM"
    adbench = True

    def __init__(self, layers: int, chars: int, bits: int = BITS):
        self.layers, self.chars, self.bits = layers, chars, bits
        rng = np.random.default_rng([SEED, layers, chars, bits])
        # As ADBench's data/lstm/gen_data.py: uniform [0, 1) parameters and state;
        # the text is one character per row, written as its bits.
        self.main_params = rng.random((2 * layers, 4 * bits))
        self.extra_params = rng.random((3, bits))
        self.state = rng.random((2 * layers, bits))
        codes = rng.integers(32, 2 ** bits, chars)
        self.sequence = ((codes[:, None] >> np.arange(bits)) & 1).astype(np.float64)

    @property
    def label(self) -> str:
        return f"l={self.layers} c={self.chars}"

    # -- references

    def numpy_objective(self) -> float:
        return lstm_loss(np, self.main_params, self.extra_params, self.state, self.sequence, np.tanh,
                         lambda x: 1.0 / (1.0 + np.exp(-x)))

    def parameters(self) -> np.ndarray:
        return np.concatenate([self.main_params.ravel(), self.extra_params.ravel()])

    def objective_at(self, flat: np.ndarray) -> float:
        split = self.main_params.size
        return lstm_objective(flat[:split].reshape(self.main_params.shape),
                              flat[split:].reshape(self.extra_params.shape), self.state, self.sequence)

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(lstm_objective) if fresh else lstm_objective
        return lambda: kernel(self.main_params, self.extra_params, self.state, self.sequence)

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(lstm_objective), optimize=optimize)

        def call():
            shadows = (np.zeros_like(self.main_params), np.zeros_like(self.extra_params))
            differentiable.autodiff(Duplicated(self.main_params, shadows[0]),
                                    Duplicated(self.extra_params, shadows[1]),
                                    Const(self.state), Const(self.sequence))
            return shadows

        return Contender(call, concatenate)

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy
        layers, bits = self.layers, self.bits

        def loss(main_params, extra_params, state, sequence):
            weights = main_params[0::2].reshape(layers, 4, bits)
            biases = main_params[1::2].reshape(layers, 4, bits)

            def step(hidden_cell, inputs):
                char, following = inputs
                layer_input = char * extra_params[0]
                updated = []
                for layer in range(layers):       # unrolled at trace time: layers is static
                    hidden, cell = hidden_cell[layer]
                    gates = numpy.stack([layer_input, hidden, layer_input, hidden]) * weights[layer] + biases[layer]
                    forget, ingate, outgate = (jax.nn.sigmoid(gates[i]) for i in range(3))
                    cell = cell * forget + ingate * numpy.tanh(gates[3])
                    hidden = outgate * numpy.tanh(cell)
                    updated.append(numpy.stack([hidden, cell]))
                    layer_input = hidden
                prediction = layer_input * extra_params[1] + extra_params[2]
                log_normaliser = numpy.log(numpy.exp(prediction).sum() + 2.0)
                return numpy.stack(updated), (following * (prediction - log_normaliser)).sum()

            _, totals = jax.lax.scan(step, state.reshape(layers, 2, bits), (sequence[:-1], sequence[1:]))
            return -totals.sum() / ((sequence.shape[0] - 1) * bits)

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        arguments = tuple(numpy.asarray(a) for a in (self.main_params, self.extra_params, self.state,
                                                     self.sequence))
        return Contender(lambda: jax.block_until_ready(value_and_grad(*arguments)),
                         lambda result: concatenate(result[1]), lambda result: float(result[0]))

    def torch_gradient(self, torch) -> Contender:
        parameters = [torch.tensor(self.main_params, requires_grad=True),
                      torch.tensor(self.extra_params, requires_grad=True)]
        state, sequence = torch.from_numpy(self.state), torch.from_numpy(self.sequence)

        def call():
            value = lstm_loss(torch, *parameters, state, sequence, torch.tanh, torch.sigmoid)
            return value.detach(), torch.autograd.grad(value, parameters)

        return Contender(call, lambda result: concatenate(result[1]), lambda result: float(result[0]))


def lstm_loss(numpy, main_params, extra_params, state, sequence, tanh, sigmoid):
    """The loss with a Python loop over characters, vectorized over bits (NumPy and PyTorch)."""
    layers, bits = main_params.shape[0] // 2, main_params.shape[1] // 4
    hidden = [state[2 * layer] for layer in range(layers)]
    cell = [state[2 * layer + 1] for layer in range(layers)]
    total = 0.0
    for t in range(sequence.shape[0] - 1):
        layer_input = sequence[t] * extra_params[0]
        for layer in range(layers):
            weight, bias = main_params[2 * layer], main_params[2 * layer + 1]
            forget = sigmoid(layer_input * weight[:bits] + bias[:bits])
            ingate = sigmoid(hidden[layer] * weight[bits:2 * bits] + bias[bits:2 * bits])
            outgate = sigmoid(layer_input * weight[2 * bits:3 * bits] + bias[2 * bits:3 * bits])
            change = tanh(hidden[layer] * weight[3 * bits:] + bias[3 * bits:])
            cell[layer] = cell[layer] * forget + ingate * change
            hidden[layer] = outgate * tanh(cell[layer])
            layer_input = hidden[layer]
        prediction = layer_input * extra_params[1] + extra_params[2]
        # ADBench's quirk: 2 is added inside the log of the normaliser.
        log_normaliser = numpy.log(numpy.exp(prediction).sum() + 2.0)
        total = total + (sequence[t + 1] * (prediction - log_normaliser)).sum()
    return -total / ((sequence.shape[0] - 1) * bits)
