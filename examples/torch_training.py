"""Train a PyTorch model whose hidden layer is an enzpy kernel.

    python examples/torch_training.py

`tanh_layer` is a numba loop nest. `enzpy.torch.function` makes it a function of tensors
whose gradients autograd takes from enzpy's reverse mode, so the model below mixes it with
torch's own layers and torch.optim.Adam trains both: the kernel's weights and bias and a
torch Linear read-out, on a small 1-D regression. It prints the loss every 50 steps; the
exit status is 1 if the loss did not fall.
"""

import sys

import numpy as np
import torch

import enzpy.torch


@enzpy.torch.function
def tanh_layer(inputs, weights, bias):
    """tanh(inputs @ weights + bias), written as the loops a numba kernel would have."""
    rows, features = inputs.shape
    units = weights.shape[1]
    out = np.empty((rows, units))
    for row in range(rows):
        for unit in range(units):
            total = bias[unit]
            for feature in range(features):
                total += inputs[row, feature] * weights[feature, unit]
            out[row, unit] = np.tanh(total)
    return out


class Regressor(torch.nn.Module):
    """One enzpy hidden layer of `units` tanh units, then a torch Linear read-out."""

    def __init__(self, units: int = 16):
        super().__init__()
        self.weights = torch.nn.Parameter(torch.randn(1, units, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.randn(units, dtype=torch.float64))
        self.readout = torch.nn.Linear(units, 1, dtype=torch.float64)

    def forward(self, inputs):
        return self.readout(tanh_layer(inputs, self.weights, self.bias))


def data(points: int = 128):
    """Inputs (points x 1) on [-3, 3] and the targets sin(x) + x^2 / 10."""
    inputs = torch.linspace(-3.0, 3.0, points, dtype=torch.float64).reshape(-1, 1)
    return inputs, torch.sin(inputs) + 0.1 * inputs ** 2


def train(steps: int = 300, seed: int = 0, report_every: int = 0) -> list[float]:
    """Train a fresh Regressor for `steps` Adam steps; the loss before each step."""
    torch.manual_seed(seed)
    model = Regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    inputs, targets = data()
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if report_every and step % report_every == 0:
            print(f"step {step:4d}: loss {loss.item():.6f}")
    return losses


def main() -> int:
    losses = train(report_every=50)
    print(f"loss {losses[0]:.6f} -> {losses[-1]:.6f}")
    return 0 if losses[-1] < 0.1 * losses[0] else 1


if __name__ == "__main__":
    sys.exit(main())
