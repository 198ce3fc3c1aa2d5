"""Vector forward mode: one width-8 jvp against 8 single jvps.

    python -m benchmarks.vector_mode [--quick]

For each kernel, 8 random tangent directions are pushed through forward mode
twice in the same process: once as `d.jvp(args, tangents, width=8)` (one
sweep: the primal and every partial computed once, then 8 multiply-adds per
active value) and once as 8 calls `d.jvp(args, tangents[k])`. The two are
checked to agree first. Times are medians of several repetitions after
warm-up; every repetition gets fresh copies of the arguments, made outside
the timing, so in-place kernels always do the same work. Ratio: time of the
8 single calls / time of the one width-8 call (above 1: vector mode wins).
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

from benchmarks.roundtrip import heat_equation, logistic_loss
from enzpy import differentiate
from tests.adbench.objectives import ba_residuals

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "vector_mode.md"
WIDTH = 8


def ba_inputs(rng, cameras=20, points=400, observations=4000):
    cams = rng.uniform(-0.5, 0.5, (cameras, 11))
    cams[:, 6] = rng.uniform(0.8, 1.2, cameras)
    x = rng.uniform(-1.0, 1.0, (points, 3))
    x[:, 2] += 6.0
    obs = np.stack([rng.integers(0, cameras, observations), rng.integers(0, points, observations)], axis=1)
    return (cams, x, rng.uniform(0.5, 1.5, observations), obs, rng.uniform(-1.0, 1.0, (observations, 2)),
            np.zeros((observations, 2)), np.zeros(observations))


@dataclass
class Benchmark:
    name: str
    """Row label."""
    function: Callable
    """Plain Python kernel."""
    make_inputs: Callable[[np.random.Generator], tuple]
    """Arguments (built once; arrays are copied for every call)."""
    directions: tuple[int, ...]
    """Arguments that get random tangents; the others get None."""


BENCHMARKS = [
    Benchmark("logistic loss 20000x64, tangents on the weights", logistic_loss,
              lambda rng: (rng.standard_normal((20_000, 64)), np.sign(rng.standard_normal(20_000)),
                           0.1 * rng.standard_normal(64)), (2,)),
    Benchmark("heat equation 1024 points, 500 steps (allocates)", heat_equation,
              lambda rng: (rng.random(1024), 500, 0.2), (0, 2)),
    Benchmark("bundle-adjustment residuals, 4000 observations (output arrays)", ba_residuals, ba_inputs,
              (0, 1, 2)),
]


def fresh_copies(inputs: tuple) -> tuple:
    return tuple(value.copy() if isinstance(value, np.ndarray) else value for value in inputs)


def random_tangents(rng, inputs: tuple, directions: tuple[int, ...]) -> list:
    """One tangent per argument with a leading axis of WIDTH (None where there is none)."""
    return [rng.standard_normal((WIDTH, *np.shape(value))) if index in directions else None
            for index, value in enumerate(inputs)]


def one_vector_call(differentiable, inputs, tangents):
    return differentiable.jvp(fresh_copies(inputs), tangents, width=WIDTH)[1]


def single_calls(differentiable, inputs, tangents):
    return [differentiable.jvp(fresh_copies(inputs), [None if t is None else t[lane] for t in tangents])[1]
            for lane in range(WIDTH)]


def check_agreement(name: str, vector, singles) -> None:
    for lane, single in enumerate(singles):
        pairs = [(vector[lane], single)] if not isinstance(single, tuple) else \
            [(v[lane], s) for v, s in zip(vector, single) if s is not None]
        for ours, theirs in pairs:
            if not np.allclose(ours, theirs, rtol=1e-12, atol=1e-300):
                sys.exit(f"{name}: lane {lane} of the width-{WIDTH} jvp disagrees with the single jvp")


def milliseconds(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def run_benchmark(benchmark: Benchmark, warmup: int, repetitions: int) -> dict:
    rng = np.random.default_rng(20240601)
    inputs = benchmark.make_inputs(rng)
    tangents = random_tangents(rng, inputs, benchmark.directions)
    kernel = getattr(benchmark.function, "py_func", benchmark.function)
    differentiable = differentiate(numba.njit(kernel))
    check_agreement(benchmark.name, one_vector_call(differentiable, inputs, tangents),
                    single_calls(differentiable, inputs, tangents))
    primal = numba.njit(kernel)
    calls = {"vector": lambda: one_vector_call(differentiable, inputs, tangents),
             "singles": lambda: single_calls(differentiable, inputs, tangents),
             "primal": lambda: primal(*fresh_copies(inputs))}
    for _ in range(warmup):
        for call in calls.values():
            call()
    # Interleaved, so that machine noise hits all three alike.
    times = {label: [] for label in calls}
    for _ in range(repetitions):
        for label, call in calls.items():
            times[label].append(milliseconds(call))
    return {"kernel": benchmark.name, **{label: statistics.median(t) for label, t in times.items()}}


def markdown_table(rows: list[dict]) -> str:
    lines = [f"| kernel | primal ms | 1 jvp, width {WIDTH}, ms | {WIDTH} single jvps ms | "
             f"ratio ({WIDTH} singles / width {WIDTH}) | width-{WIDTH} jvp / primal |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['kernel']} | {row['primal']:.3f} | {row['vector']:.3f} | {row['singles']:.3f} | "
                     f"{row['singles'] / row['vector']:.2f} | {row['vector'] / row['primal']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vector_mode", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    arguments = parser.parse_args(argv)
    warmup, repetitions = (1, 5) if arguments.quick else (2, 15)

    rows = []
    for benchmark in BENCHMARKS:
        rows.append(run_benchmark(benchmark, warmup, repetitions))
        print(f"measured {benchmark.name}", file=sys.stderr, flush=True)
    table = markdown_table(rows)
    setting = (f"{'quick' if arguments.quick else 'full'} run: median of {repetitions} interleaved "
               f"repetitions after {warmup} warm-up rounds; numba {numba.__version__}, "
               f"llvmlite {llvmlite.__version__}, "
               f"numpy {np.__version__}, Python {platform.python_version()}, CPU {llvm.get_host_cpu_name()}")
    print(table)
    print(setting)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(f"# Vector forward mode: one width-{WIDTH} jvp vs {WIDTH} single jvps\n\n{setting}.\n"
                            f"Ratio: time of {WIDTH} single-direction jvps / time of one width-{WIDTH} jvp "
                            f"(above 1: vector mode is cheaper). Times include argument copies and marshalling; "
                            f"the primal column is numba's own call.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
