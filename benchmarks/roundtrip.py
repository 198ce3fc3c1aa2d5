"""How fast kernels run after enzpy's round trip, next to numba's own dispatcher.

    python -m benchmarks.roundtrip [--quick]

Each kernel is compiled three ways in the same process: numba's dispatcher,
enzpy at stage `optimized` (pre-AD pipeline) and at stage `raw` (as numba
lowered it), both JIT-compiled through the post-AD pipeline. Results are
checked against numba first. Times are the median of several calls after
warm-up; every call gets fresh copies of its arrays, made outside the timing,
so in-place kernels always do the same work. Ratios are enzpy / numba: 1.0
means the round trip costs nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import llvmlite
import llvmlite.binding as llvm
import numba
import numpy as np

from enzpy.driver import jit_kernel

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "roundtrip.md"


def jacobi_sweeps(grid, scratch, sweeps):
    rows, columns = grid.shape
    for _ in range(sweeps):
        for i in range(1, rows - 1):
            for j in range(1, columns - 1):
                scratch[i, j] = 0.25 * (grid[i - 1, j] + grid[i + 1, j] + grid[i, j - 1] + grid[i, j + 1])
        for i in range(1, rows - 1):
            for j in range(1, columns - 1):
                grid[i, j] = scratch[i, j]
    total = 0.0
    for i in range(rows):
        for j in range(columns):
            total += grid[i, j]
    return total


def dot_plus_sum_of_squares(x, y):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * y[i] + x[i] * x[i]
    return total


def logistic_loss(features, labels, weights):
    total = 0.0
    for i in range(features.shape[0]):
        margin = 0.0
        for j in range(features.shape[1]):
            margin += features[i, j] * weights[j]
        total += np.log1p(np.exp(-labels[i] * margin))
    return total / features.shape[0]


def heat_equation(initial, steps, diffusion):
    current = initial.copy()
    following = np.empty_like(current)
    last = current.shape[0] - 1
    for _ in range(steps):
        following[0] = current[0]
        following[last] = current[last]
        for i in range(1, last):
            following[i] = current[i] + diffusion * (current[i - 1] - 2.0 * current[i] + current[i + 1])
        current, following = following, current
    return current.sum()


def sine_weighted_sum(x, y):
    return np.sum(np.sin(x) * y)


def first_plus(x, offset):
    return x[0] + offset


@dataclass
class Benchmark:
    name: str
    """Row label."""
    function: Callable
    """Plain Python kernel; each compiler gets its own copy."""
    signature: str
    """numba signature all three are compiled for."""
    make_inputs: Callable[[np.random.Generator], tuple]
    """Arguments (built once; arrays are copied for every call)."""


BENCHMARKS = [
    Benchmark("jacobi 2-D stencil 512x512, 10 sweeps", jacobi_sweeps,
              "float64(float64[:, ::1], float64[:, ::1], int64)",
              lambda rng: (rng.random((512, 512)), np.zeros((512, 512)), 10)),
    Benchmark("dot + sum of squares, 1e6", dot_plus_sum_of_squares,
              "float64(float64[::1], float64[::1])",
              lambda rng: (rng.standard_normal(1_000_000), rng.standard_normal(1_000_000))),
    Benchmark("logistic loss 20000x64", logistic_loss,
              "float64(float64[:, ::1], float64[::1], float64[::1])",
              lambda rng: (rng.standard_normal((20_000, 64)), np.sign(rng.standard_normal(20_000)),
                           0.1 * rng.standard_normal(64))),
    Benchmark("heat equation 1024 points, 2000 steps", heat_equation,
              "float64(float64[::1], int64, float64)",
              lambda rng: (rng.random(1024), 2000, 0.2)),
    Benchmark("np.sum(np.sin(x) * y), 1e6", sine_weighted_sum,
              "float64(float64[::1], float64[::1])",
              lambda rng: (rng.standard_normal(1_000_000), rng.standard_normal(1_000_000))),
]


def fresh_copies(inputs: tuple) -> tuple:
    return tuple(value.copy() if isinstance(value, np.ndarray) else value for value in inputs)


def median_milliseconds(kernel, inputs: tuple, warmup: int, repetitions: int) -> float:
    for _ in range(warmup):
        kernel(*fresh_copies(inputs))
    seconds = []
    for _ in range(repetitions):
        arguments = fresh_copies(inputs)
        start = time.perf_counter()
        kernel(*arguments)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e3


def check_agreement(name: str, reference, candidates: dict, inputs: tuple) -> None:
    """Same return value and same array contents afterwards, or stop before timing."""
    expected_arguments = fresh_copies(inputs)
    expected = reference(*expected_arguments)
    for label, kernel in candidates.items():
        arguments = fresh_copies(inputs)
        result = kernel(*arguments)
        agree = np.allclose(result, expected, rtol=1e-9, atol=0.0) and all(
            np.allclose(ours, theirs, rtol=1e-9, atol=0.0)
            for ours, theirs in zip(arguments, expected_arguments) if isinstance(theirs, np.ndarray))
        if not agree:
            sys.exit(f"{name}: enzpy {label} returned {result!r}, numba {expected!r}")


def run_benchmark(benchmark: Benchmark, warmup: int, repetitions: int) -> dict:
    inputs = benchmark.make_inputs(np.random.default_rng(20240601))
    numba_kernel = numba.njit(benchmark.signature)(benchmark.function)
    enzpy_kernels = {stage: jit_kernel(benchmark.function, signature=benchmark.signature, stage=stage)
                     for stage in ("optimized", "raw")}
    check_agreement(benchmark.name, numba_kernel, enzpy_kernels, inputs)
    row = {"kernel": benchmark.name,
           "numba": median_milliseconds(numba_kernel, inputs, warmup, repetitions)}
    for stage, kernel in enzpy_kernels.items():
        row[stage] = median_milliseconds(kernel, inputs, warmup, repetitions)
    return row


def call_overhead_microseconds(repetitions: int = 2000) -> dict:
    """Per-call cost of each entry point on a kernel that does almost nothing."""
    signature = "float64(float64[::1], float64)"
    kernels = {"numba": numba.njit(signature)(first_plus),
               "optimized": jit_kernel(first_plus, signature=signature, stage="optimized")}
    x = np.ones(4)
    overhead = {}
    for label, kernel in kernels.items():
        kernel(x, 1.0)
        start = time.perf_counter()
        for _ in range(repetitions):
            kernel(x, 1.0)
        overhead[label] = (time.perf_counter() - start) / repetitions * 1e6
    return overhead


def markdown_table(rows: list[dict]) -> str:
    lines = ["| kernel | numba ms | enzpy-optimized ms | ratio | enzpy-raw ms | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['kernel']} | {row['numba']:.3f} | {row['optimized']:.3f} | "
                     f"{row['optimized'] / row['numba']:.2f} | {row['raw']:.3f} | "
                     f"{row['raw'] / row['numba']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roundtrip", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (well under a minute)")
    arguments = parser.parse_args(argv)
    warmup, repetitions = (1, 7) if arguments.quick else (3, 31)

    rows = []
    for benchmark in BENCHMARKS:
        rows.append(run_benchmark(benchmark, warmup, repetitions))
        print(f"measured {benchmark.name}", file=sys.stderr, flush=True)
    table = markdown_table(rows)
    overhead = call_overhead_microseconds()
    table += (f"\n\nCall overhead (trivial kernel, one 1-d array and a scalar): numba "
              f"{overhead['numba']:.1f} us, enzpy {overhead['optimized']:.1f} us per call.")
    setting = (f"{'quick' if arguments.quick else 'full'} run: median of {repetitions} calls after "
               f"{warmup} warm-up; numba {numba.__version__}, llvmlite {llvmlite.__version__}, "
               f"numpy {np.__version__}, Python {platform.python_version()}, CPU {llvm.get_host_cpu_name()}")
    print(table)
    print(setting)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(f"# enzpy round trip vs numba\n\n{setting}.\nRatio: enzpy time / numba time.\n\n"
                            f"{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
