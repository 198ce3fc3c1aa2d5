"""prange kernels: gradient time at 1 and 2 threads against the primal at 1 and 2 threads.

    python -m benchmarks.parallel [--quick] [--output DIR]

Three `@njit(parallel=True)` kernels: a reduction (sum of sin(x) x, 4M points), a 1-D stencil
into an output array (4M points) and a heat stepper with two prange loops per step inside a
serial time loop (200k points, 20 steps). Each gradient is checked against the serial gradient
(the same kernel compiled without parallel=True) before timing. Reported per kernel and thread
count: primal and gradient times (medians of interleaved rounds), gradient / primal, and each
one's speed-up from 1 to 2 threads (the issue's target: a gradient speed-up at least 80% of the
primal's), and, for scale, the same kernel compiled without parallel=True and its gradient (one
thread). Written to benchmarks/results/parallel.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numba
import numpy as np
from numba import prange

from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import Active, Const, Duplicated, differentiate
from tests.kernels import parallel as parallel_kernels

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
THREADS = (1, 2)


def sum_sin(x):
    s = 0.0
    for i in prange(x.shape[0]):
        s += math.sin(x[i]) * x[i]
    return s


# The corpus's kernels (tests/kernels/parallel.py), undecorated: compiled here with and without parallel=True.
stencil = parallel_kernels.prange_stencil.py_func
heat = parallel_kernels.prange_heat_steps.py_func


def problems(quick: bool):
    """(name, kernel, make_arguments, annotate) for each benchmark kernel."""
    scale = 4 if quick else 1
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, 4_000_000 // scale)
    u = rng.uniform(-1.0, 1.0, 200_000 // scale)
    return [
        ("reduction sum sin(x) x", sum_sin, lambda: (x,), lambda a: (Duplicated(a[0], np.zeros_like(a[0])),)),
        ("stencil into an output", stencil, lambda: (x, np.zeros_like(x)),
         lambda a: (Duplicated(a[0], np.zeros_like(a[0])), Duplicated(a[1], np.ones_like(a[1])))),
        ("heat stepper, 20 steps", heat, lambda: (u.copy(), 0.2, 20),
         lambda a: (Duplicated(a[0], np.zeros_like(a[0])), Active(a[1]), Const(a[2]))),
    ]


def measure(quick: bool) -> list[dict]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    rows = []
    for name, function, make_arguments, annotate in problems(quick):
        parallel_kernel = numba.njit(parallel=True)(function)
        serial_kernel = numba.njit(function)
        parallel_gradient, serial_gradient = differentiate(parallel_kernel), differentiate(serial_kernel)
        reference = annotate(make_arguments())
        serial_gradient.autodiff(*reference)
        times = {}
        for threads in THREADS:
            numba.set_num_threads(threads)
            checked = annotate(make_arguments())
            parallel_gradient.autodiff(*checked)
            for ours, theirs in zip(checked, reference):
                if isinstance(ours, Duplicated):
                    scale = max(1.0, float(np.max(np.abs(theirs.shadow))))
                    assert np.max(np.abs(ours.shadow - theirs.shadow)) <= 1e-10 * scale, name
            times[threads] = interleaved_medians({
                "primal": lambda: parallel_kernel(*make_arguments()),
                "gradient": lambda: parallel_gradient.autodiff(*annotate(make_arguments())),
            }, plan)
        serial = interleaved_medians({
            "primal": lambda: serial_kernel(*make_arguments()),
            "gradient": lambda: serial_gradient.autodiff(*annotate(make_arguments())),
        }, plan)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        for threads in THREADS:
            primal, gradient = times[threads]["primal"].median_seconds, times[threads]["gradient"].median_seconds
            rows.append({"kernel": name, "threads": threads, "primal": primal, "gradient": gradient,
                         "serial_primal": serial["primal"].median_seconds,
                         "serial_gradient": serial["gradient"].median_seconds,
                         "primal_speedup": times[1]["primal"].median_seconds / primal,
                         "gradient_speedup": times[1]["gradient"].median_seconds / gradient})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| kernel | threads | primal (ms) | gradient (ms) | gradient / primal | primal speed-up | "
             "gradient speed-up | gradient / primal speed-up | serial primal (ms) | serial gradient (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['kernel']} | {row['threads']} | {row['primal'] * 1e3:.2f} | "
                     f"{row['gradient'] * 1e3:.2f} | {row['gradient'] / row['primal']:.1f} | "
                     f"{row['primal_speedup']:.2f} | {row['gradient_speedup']:.2f} | "
                     f"{row['gradient_speedup'] / row['primal_speedup']:.0%} | "
                     f"{row['serial_primal'] * 1e3:.2f} | {row['serial_gradient'] * 1e3:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the sizes, fewer repetitions")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    arguments = parser.parse_args(argv)
    if numba.config.NUMBA_NUM_THREADS < max(THREADS):
        print(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s): the 2-thread rows need 2")
        return 1
    rows = measure(arguments.quick)
    text = (f"# prange kernels at 1 and 2 threads (threading layer: {numba.threading_layer()})\n\n"
            "Gradient: enzpy's reverse mode, whose forward and reverse sweeps both launch each prange "
            "loop on numba's threads; an adjoint add is plain where one share alone read the element, "
            "atomic elsewhere. Speed-up: time at 1 thread / time at this thread count. Serial: the kernel "
            "compiled without parallel=True, whose gradient is inlined and needs no atomics.\n\n"
            + table(rows) + "\n")
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / ("parallel-quick.md" if arguments.quick else "parallel.md")).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
