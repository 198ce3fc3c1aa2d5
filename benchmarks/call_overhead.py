"""Call overhead from Python: `value_and_grad` on small kernels against numba's dispatcher.

    python -m benchmarks.call_overhead

Kernels of 1 and 4 arrays of 10 elements (the work is a few nanoseconds, so the
times are the calls). Columns: the numba primal call; `value_and_grad` (from the
third call on it runs through a compiled trampoline, `enzpy.fast_calls`);
`autodiff` with Duplicated shadows (the general path). Target of issue 19:
`value_and_grad` of a 4-array kernel at most 5 us. Written to
benchmarks/results/call_overhead.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"


@numba.njit
def one_array(a, w):
    s = 0.0
    for i in range(a.shape[0]):
        s += w * a[i] * a[i]
    return s


@numba.njit
def four_arrays(a, b, c, d):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i] + c[i] * d[i]
    return s


def microseconds(call, repeats: int) -> float:
    for _ in range(5):
        call()
    best = float("inf")
    for _ in range(5):                   # best of five rounds: other processes only add time
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        best = min(best, (time.perf_counter() - start) / repeats * 1e6)
    return best


def measure(repeats: int) -> list[dict]:
    import enzpy
    from enzpy import Active, Duplicated

    rng = np.random.default_rng(0)
    rows = []
    for name, kernel, args in [("1 array + 1 scalar", one_array, (rng.random(10), 0.5)),
                               ("4 arrays", four_arrays, tuple(rng.random(10) for _ in range(4)))]:
        differentiable = enzpy.differentiate(kernel)
        shadows = [np.zeros_like(a) if isinstance(a, np.ndarray) else None for a in args]
        annotated = [Duplicated(a, s) if s is not None else Active(a) for a, s in zip(args, shadows)]
        rows.append(dict(
            kernel=name,
            numba=microseconds(lambda: kernel(*args), repeats),
            value_and_grad=microseconds(lambda: differentiable.value_and_grad(*args), repeats),
            autodiff=microseconds(lambda: differentiable.autodiff(*annotated), repeats)))
    return rows


def report(rows: list[dict]) -> str:
    lines = ["# Call overhead from Python", "",
             "Microseconds per call, best of five rounds (`python -m benchmarks.call_overhead`); 10-element "
             "arrays, so the times are the calls. value_and_grad takes the compiled trampoline "
             "(enzpy/fast_calls.py); autodiff is the general path. Target: value_and_grad of the 4-array "
             "kernel at most 5 us.", "",
             "| kernel | numba primal us | value_and_grad us | autodiff us | value_and_grad / primal |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['kernel']} | {row['numba']:.2f} | {row['value_and_grad']:.2f} | "
                     f"{row['autodiff']:.1f} | {row['value_and_grad'] / row['numba']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20000)
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    options = parser.parse_args(argv)
    text = report(measure(options.repeats))
    print(text)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "call_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
