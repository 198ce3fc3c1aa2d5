"""Gradients called from njit code, and second derivatives.

    python -m benchmarks.composable [--quick] [--output DIR]

1. An njit gradient-descent loop over a small kernel (a weighted sum of alpha x^2 + sin(alpha x),
   n = 10 and n = 1000): per gradient call, `enzpy.autodiff` inside the njit loop against a
   Python loop calling `differentiate(f).autodiff`, and against the primal called in an njit loop.
   Both loops are checked to reach the same iterate first.
2. HVP against gradient: `differentiate(f).hvp` against `.grad` on kernels large enough for their
   work to show (the same loss at n = 10^5, a 2-D Dirichlet energy, an RK4 pendulum steps
   loop), each HVP checked against finite differences of the gradient first.
Medians of interleaved rounds (benchmarks.timing). Written to benchmarks/results/composable.md
(composable-quick.md with --quick).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numba
import numpy as np

import enzpy
from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import Active, Const, Duplicated

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
STEPS = 200


@numba.njit
def loss(x, alpha, weights):
    total = 0.0
    for i in range(x.shape[0]):
        total += weights[i] * (alpha * x[i] ** 2 + np.sin(x[i] * alpha))
    return total


@numba.njit
def descend_in_njit(x, dx, alpha, weights, steps):
    for _ in range(steps):
        dx[:] = 0.0
        enzpy.autodiff(loss, Duplicated(x, dx), Active(alpha), Const(weights))
        x -= 0.01 * dx


@numba.njit
def primal_loop(x, alpha, weights, steps):
    total = 0.0
    for _ in range(steps):
        total += loss(x, alpha, weights)
    return total


def descend_in_python(gradient, x, dx, alpha, weights, steps):
    for _ in range(steps):
        dx[:] = 0.0
        gradient.autodiff(Duplicated(x, dx), Active(alpha), Const(weights))
        x -= 0.01 * dx


@numba.njit
def dirichlet_energy(u):
    total = 0.0
    for i in range(1, u.shape[0] - 1):
        for j in range(1, u.shape[1] - 1):
            gx, gy = u[i + 1, j] - u[i, j], u[i, j + 1] - u[i, j]
            total += gx * gx + gy * gy + 0.1 * u[i, j] ** 4
    return total


@numba.njit
def pendulum_energy(state, steps, dt):
    theta, omega = state[0], state[1]
    for _ in range(steps):
        k1t, k1o = omega, -np.sin(theta)
        k2t, k2o = omega + 0.5 * dt * k1o, -np.sin(theta + 0.5 * dt * k1t)
        k3t, k3o = omega + 0.5 * dt * k2o, -np.sin(theta + 0.5 * dt * k2t)
        k4t, k4o = omega + dt * k3o, -np.sin(theta + dt * k3t)
        theta += dt / 6 * (k1t + 2 * k2t + 2 * k3t + k4t)
        omega += dt / 6 * (k1o + 2 * k2o + 2 * k3o + k4o)
    return 0.5 * omega * omega - np.cos(theta)


def calls_in_njit(quick: bool) -> list[dict]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    gradient = enzpy.differentiate(loss)
    rows = []
    for n in (10, 1000):
        rng = np.random.default_rng(n)
        start, weights = rng.uniform(-1, 1, n), rng.uniform(0.5, 1.5, n)
        a, b = start.copy(), start.copy()
        descend_in_njit(a, np.zeros(n), 0.7, weights, 20)
        descend_in_python(gradient, b, np.zeros(n), 0.7, weights, 20)
        assert np.allclose(a, b, rtol=1e-13, atol=1e-13), "njit and Python loops disagree"
        x, dx = start.copy(), np.zeros(n)
        times = interleaved_medians({
            "njit": lambda: descend_in_njit(x, dx, 0.7, weights, STEPS),
            "python": lambda: descend_in_python(gradient, x, dx, 0.7, weights, STEPS),
            "primal": lambda: primal_loop(x, 0.7, weights, STEPS),
        }, plan)
        per_call = {k: v.median_seconds / STEPS for k, v in times.items()}
        rows.append({"n": n, **per_call})
    return rows


def hvp_against_gradient(quick: bool) -> list[dict]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    rng = np.random.default_rng(3)
    n = 10_000 if quick else 100_000
    cases = [
        ("weighted sin loss", loss, (rng.uniform(-1, 1, n), 0.7, rng.uniform(0.5, 1.5, n))),
        ("Dirichlet energy 2-D", dirichlet_energy, (rng.uniform(-1, 1, (200, 200) if not quick else (80, 80)),)),
        ("RK4 pendulum, 2000 steps", pendulum_energy, (np.array([0.4, 0.1]), 2000, 0.01)),
    ]
    rows = []
    for name, function, args in cases:
        kernel = enzpy.differentiate(function)
        direction = [rng.uniform(-1, 1, a.shape) if isinstance(a, np.ndarray) else 0.3 if isinstance(a, float)
                     else None for a in args]
        product = kernel.hvp(args, direction)
        h = 1e-5
        moved = lambda s: kernel.grad(*[a + s * d if d is not None else a for a, d in zip(args, direction)])  # noqa: E731
        plus, minus = moved(h), moved(-h)
        for p, g1, g0 in zip(product, plus, minus):
            if p is not None:
                expected = (np.asarray(g1) - np.asarray(g0)) / (2 * h)
                assert np.allclose(p, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max())), name
        times = interleaved_medians({
            "primal": lambda: function(*args),
            "gradient": lambda: kernel.grad(*args),
            "hvp": lambda: kernel.hvp(args, direction),
        }, plan)
        rows.append({"name": name, **{k: v.median_seconds for k, v in times.items()}})
    return rows


def markdown(njit_rows, hvp_rows, quick: bool) -> str:
    lines = ["# Gradients called from njit code, and second derivatives", "",
             f"numba {numba.__version__}; {STEPS} gradient steps per timed loop; medians of interleaved rounds; "
             "one thread. Per-call times include the loop's own update (dx[:] = 0, x -= 0.01 dx).", "",
             "## enzpy.autodiff inside an njit loop against a Python loop", "",
             "| n | primal per call (us) | njit autodiff per call (us) | Python autodiff per call (us) | "
             "njit / primal | Python / njit |", "|---:|---:|---:|---:|---:|---:|"]
    for row in njit_rows:
        lines.append(f"| {row['n']} | {row['primal'] * 1e6:.3f} | {row['njit'] * 1e6:.3f} | {row['python'] * 1e6:.2f} | "
                     f"{row['njit'] / row['primal']:.2f} | {row['python'] / row['njit']:.1f} |")
    lines += ["", "## HVP against gradient (Python calls)", "",
              "| kernel | primal (ms) | gradient (ms) | HVP (ms) | HVP / gradient | HVP / primal |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in hvp_rows:
        lines.append(f"| {row['name']} | {row['primal'] * 1e3:.3f} | {row['gradient'] * 1e3:.3f} | "
                     f"{row['hvp'] * 1e3:.3f} | {row['hvp'] / row['gradient']:.2f} | {row['hvp'] / row['primal']:.2f} |")
    worst = max(row["hvp"] / row["gradient"] for row in hvp_rows)
    lines += ["", f"Target HVP / gradient <= 3: {'met' if worst <= 3 else 'NOT met'} (worst {worst:.2f})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    options = parser.parse_args(argv)
    numba.set_num_threads(1)
    text = markdown(calls_in_njit(options.quick), hvp_against_gradient(options.quick), options.quick)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / ("composable-quick.md" if options.quick else "composable.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
