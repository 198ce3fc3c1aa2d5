"""The main job: differentiate example kernels and check them against finite differences.

    python examples/gradient.py

Each check prints whether the derivative matched; the exit status is 1 if any did not.
"""

import sys

import numpy as np

from enzpy import differentiate
from kernels import heat_steps, logistic_loss


def finite_difference(function, args, index, direction, step=1e-5):
    """5-point central difference of function(*args) along `direction` in argument `index`."""
    values = []
    for multiple in (-2, -1, 1, 2):
        moved = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        moved[index] = moved[index] + multiple * step * direction
        values.append(function(*moved))
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def verdict(name: str, derivative: float, reference: float, tolerance: float = 1e-6) -> bool:
    """Print one comparison with a plain verdict; True if it matched."""
    matched = abs(derivative - reference) <= tolerance * max(1.0, abs(reference))
    print(f"{name}: enzpy {derivative:.12f}, finite differences {reference:.12f} -> "
          f"{'match' if matched else 'MISMATCH'}")
    return matched


def main() -> int:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(8)
    features = rng.standard_normal((200, 8))
    labels = (rng.random(200) < 0.5).astype(np.float64)

    loss = differentiate(logistic_loss)
    value, (grad_weights, grad_features, _) = loss.value_and_grad(weights, features, labels)
    direction = rng.standard_normal(8)
    reference = finite_difference(logistic_loss, (weights, features, labels), 0, direction)
    print(f"logistic loss          = {value:.12f}")
    print(f"d loss / d weights     = {np.array2string(grad_weights, precision=6)}")
    matched = verdict("d loss / d weights along a direction", grad_weights @ direction, reference)

    heat = differentiate(heat_steps)
    u = np.sin(np.linspace(0.0, np.pi, 64))
    energy, (grad_u, grad_alpha, _) = heat.value_and_grad(u.copy(), 0.2, 500)
    reference = finite_difference(lambda a: heat_steps(u.copy(), a, 500), (0.2,), 0, 1.0)
    print(f"heat equation energy   = {energy:.12f} after 500 in-place steps")
    matched &= verdict("d energy / d alpha", grad_alpha, reference)
    print("all derivatives match finite differences" if matched else "some derivatives do NOT match")
    return 0 if matched else 1


if __name__ == "__main__":
    sys.exit(main())
