"""CUDA-style kernels on CPU threads (enzpy.cuda) against the same computations written with prange.

    python -m benchmarks.cuda_on_cpu [--quick] [--threads N] [--output DIR]

Five kernels of the corpus (tests/kernels/cuda_kernels.py) on bigger launches: saxpy, the
shared-memory tree reduction sum of squares, the halo stencil, the tiled matrix multiply and
one explicit heat step. Each one is run three ways by `enzpy.cuda` (the primal by `on_cpu`, the
gradient by `differentiate` in reverse mode, and forward mode) and its twin written here as an
`@numba.njit(parallel=True)` function with prange, run as compiled (the primal) and
differentiated by `enzpy.differentiate(...).autodiff` (reverse and forward mode). Before timing,
every result is checked against its twin (the primal's outputs, each shadow and each Active
derivative agree to 1e-10 relative to the largest magnitude), so no wrong gradient is reported.
Reported per kernel: median times of interleaved rounds, gradient / primal for each, and
CUDA-on-CPU / prange. Written to benchmarks/results/cuda.md (cuda-quick.md with --quick).
A failure of enzpy in one column is reported in its cell (first line of the error).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from numba import prange

import enzpy.cuda as enzpy_cuda
from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import Active, Duplicated, differentiate
from tests.kernels.cuda_kernels import TILE, TPB, heat_step, saxpy, shared_stencil, sum_of_squares, tiled_matmul

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
TOLERANCE = 1e-10


# -- The prange twins: what each CUDA kernel computes, one prange iteration per CUDA thread (per row
#    for the matrix multiply), with the CUDA kernel's argument list.

@numba.njit(parallel=True)
def saxpy_prange(a, x, y, out):
    for i in prange(x.shape[0]):
        out[i] = a * x[i] + y[i]


@numba.njit(parallel=True)
def sum_of_squares_prange(x, out):
    s = 0.0
    for i in prange(x.shape[0]):
        s += x[i] * x[i]
    out[0] += s


@numba.njit(parallel=True)
def shared_stencil_prange(u, out):
    n = u.shape[0]
    for i in prange(n):
        left = u[i - 1] if i > 0 else 0.0
        right = u[i + 1] if i < n - 1 else 0.0
        centre = u[i]
        out[i] = left * right - math.sin(centre) + 0.5 * centre * centre


@numba.njit(parallel=True)
def matmul_prange(a, b, c):
    for i in prange(a.shape[0]):
        for j in range(b.shape[1]):
            total = 0.0
            for k in range(a.shape[1]):
                total += a[i, k] * b[k, j]
            c[i, j] = total


@numba.njit(parallel=True)
def heat_step_prange(u, u_next, nu):
    n = u.shape[0]
    for i in prange(n):
        if 0 < i < n - 1:
            u_next[i] = u[i] + nu * (u[i - 1] - 2.0 * u[i] + u[i + 1]) - 0.1 * u[i] ** 3
        else:
            u_next[i] = u[i]


@dataclass(frozen=True)
class Computation:
    name: str
    size: str
    kernel: object
    """The CUDA kernel (tests/kernels/cuda_kernels.py)."""
    grid: tuple
    block: tuple
    twin: Callable
    """The prange function of the same arguments."""
    arguments: Callable[[np.random.Generator], list]
    roles: tuple[str, ...]
    """Per argument: "in" (an array read), "out" (an array written), "active" (a float scalar)."""


def blocks(n: int, width: int) -> int:
    return (n + width - 1) // width


def computations(quick: bool) -> list[Computation]:
    n = 1_000_000 if quick else 4_000_000
    m = 128 if quick else 256
    vector = lambda rng: rng.uniform(-1.0, 1.0, n)  # noqa: E731
    matrix = lambda rng: rng.uniform(-1.0, 1.0, (m, m))  # noqa: E731
    label = f"n = {n / 1e6:g}M"
    return [
        Computation("saxpy", label, saxpy, (blocks(n, TPB),), (TPB,), saxpy_prange,
                    lambda rng: [1.7, vector(rng), vector(rng), np.zeros(n)], ("active", "in", "in", "out")),
        Computation("sum_of_squares", label, sum_of_squares, (blocks(n, TPB),), (TPB,), sum_of_squares_prange,
                    lambda rng: [vector(rng), np.zeros(1)], ("in", "out")),
        Computation("shared_stencil", label, shared_stencil, (blocks(n, TPB),), (TPB,), shared_stencil_prange,
                    lambda rng: [vector(rng), np.zeros(n)], ("in", "out")),
        Computation("tiled_matmul", f"{m} x {m}", tiled_matmul, (blocks(m, TILE), blocks(m, TILE)), (TILE, TILE),
                    matmul_prange, lambda rng: [matrix(rng), matrix(rng), np.zeros((m, m))], ("in", "in", "out")),
        Computation("heat_step", label, heat_step, (blocks(n, TPB),), (TPB,), heat_step_prange,
                    lambda rng: [vector(rng), np.zeros(n), 0.2], ("in", "out", "active")),
    ]


# -- Annotated arguments. Reverse: the written arrays' shadows hold a random cotangent, the read
#    arrays' shadows zeros. Forward: the read arrays' shadows hold a random tangent, Active scalars
#    have tangent 1, the written arrays' shadows receive the tangents.

def reverse_arguments(values, roles, seeds) -> list:
    return [Active(v) if role == "active" else
            Duplicated(v, seeds[k].copy() if role == "out" else np.zeros_like(v))
            for k, (v, role) in enumerate(zip(values, roles))]


def forward_arguments(values, roles, seeds) -> list:
    return [Active(v) if role == "active" else
            Duplicated(v, seeds[k].copy() if role == "in" else np.zeros_like(v))
            for k, (v, role) in enumerate(zip(values, roles))]


def copies(values) -> list:
    return [v.copy() if isinstance(v, np.ndarray) else v for v in values]


def agree(ours, theirs, what: str) -> None:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shapes {ours.shape} and {theirs.shape}"
    if ours.size == 0:
        return
    error, scale = float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(theirs)))
    assert np.isfinite(error) and error <= TOLERANCE * scale, \
        f"{what}: CUDA-on-CPU and prange differ by {error:.3g} (largest magnitude {scale:.3g})"


def shadows(annotated) -> list:
    return [a.shadow for a in annotated if isinstance(a, Duplicated)]


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:160]


COLUMNS = ("cuda primal", "prange primal", "cuda reverse", "prange reverse", "cuda forward", "prange forward")


def measure(computation: Computation, plan) -> dict:
    """Times (seconds) or errors (str) per column, and the first call's seconds, for one computation."""
    rng = np.random.default_rng(0)
    values = computation.arguments(rng)
    roles = computation.roles
    seeds = [rng.uniform(-1.0, 1.0, v.shape) if isinstance(v, np.ndarray) else None for v in values]
    launch = (computation.grid, computation.block)
    cuda_primal = enzpy_cuda.on_cpu(computation.kernel)[launch]
    cuda_derivative = enzpy_cuda.differentiate(computation.kernel)[launch]
    twin_derivative = differentiate(computation.twin)

    # One checked call per column on fresh copies (the first call compiles): (column, result) or an error.
    runs = {
        "cuda primal": lambda args: (cuda_primal(*args), args)[1],
        "prange primal": lambda args: (computation.twin(*args), args)[1],
        "cuda reverse": lambda args: (cuda_derivative(*args, mode="reverse"), args),
        "prange reverse": lambda args: (twin_derivative.autodiff(*args, mode="reverse"), args),
        "cuda forward": lambda args: (cuda_derivative(*args, mode="forward"), args),
        "prange forward": lambda args: (twin_derivative.autodiff(*args, mode="forward"), args),
    }
    fresh = {
        "primal": lambda: copies(values),
        "reverse": lambda: reverse_arguments(copies(values), roles, seeds),
        "forward": lambda: forward_arguments(copies(values), roles, seeds),
    }
    results, errors, first = {}, {}, {}
    for column, run in runs.items():
        start = time.perf_counter()
        try:
            results[column] = run(fresh[column.split()[1]]())
        except AssertionError:
            raise
        except Exception as error:  # noqa: BLE001 - reported in the table, the run goes on
            errors[column] = "failed: " + first_line(error)
        first[column] = time.perf_counter() - start

    def check(kind: str) -> None:
        ours, theirs = results.get("cuda " + kind), results.get("prange " + kind)
        if ours is None or theirs is None:
            for column in ("cuda " + kind, "prange " + kind):
                if column in results:
                    del results[column]
                    errors[column] = "not timed: unchecked (its twin failed)"
            return
        what = f"{computation.name} {kind}"
        if kind == "primal":
            for k, (a, b) in enumerate(zip(ours, theirs)):
                if isinstance(a, np.ndarray):
                    agree(a, b, f"{what}, argument {k}")
            return
        (ours_active, ours_args), (theirs_active, theirs_args) = ours, theirs
        for k, (a, b) in enumerate(zip(shadows(ours_args), shadows(theirs_args))):
            agree(a, b, f"{what}, shadow {k}")
        if kind == "reverse":
            agree(ours_active, theirs_active, f"{what}, Active derivatives")

    for kind in ("primal", "reverse", "forward"):
        check(kind)

    # Timed calls reuse one set of arrays and shadows per column: no allocation inside the timed
    # region. Repeated reverse calls keep adding into the read arrays' shadows; the work is the same.
    primal_values = copies(values)
    reverse_cuda = reverse_arguments(copies(values), roles, seeds)
    reverse_twin = reverse_arguments(copies(values), roles, seeds)
    forward_cuda = forward_arguments(copies(values), roles, seeds)
    forward_twin = forward_arguments(copies(values), roles, seeds)
    timed = {
        "cuda primal": lambda: cuda_primal(*primal_values),
        "prange primal": lambda: computation.twin(*primal_values),
        "cuda reverse": lambda: cuda_derivative(*reverse_cuda, mode="reverse"),
        "prange reverse": lambda: twin_derivative.autodiff(*reverse_twin, mode="reverse"),
        "cuda forward": lambda: cuda_derivative(*forward_cuda, mode="forward"),
        "prange forward": lambda: twin_derivative.autodiff(*forward_twin, mode="forward"),
    }
    medians = interleaved_medians({c: call for c, call in timed.items() if c in results}, plan)
    cells = {c: medians[c].median_seconds if c in medians else errors[c] for c in COLUMNS}
    return {"name": computation.name, "size": computation.size, "cells": cells, "first": first,
            "launch": f"{computation.grid} x {computation.block}"}


def milliseconds(cell) -> str:
    return f"{cell * 1e3:.2f}" if isinstance(cell, float) else cell.replace("|", "\\|")


def ratio(numerator, denominator) -> str:
    return f"{numerator / denominator:.2f}" if isinstance(numerator, float) and isinstance(denominator, float) else "-"


def tables(rows: list[dict]) -> str:
    times = ["| kernel | size | launch (grid x block) | " + " | ".join(f"{c} (ms)" for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    ratios = ["| kernel | cuda reverse / primal | prange reverse / primal | cuda forward / primal | "
              "prange forward / primal | cuda / prange primal | cuda / prange reverse | cuda / prange forward |",
              "|---|---|---|---|---|---|---|---|"]
    compile_times = ["| kernel | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        c = row["cells"]
        times.append(f"| {row['name']} | {row['size']} | {row['launch']} | "
                     + " | ".join(milliseconds(c[column]) for column in COLUMNS) + " |")
        ratios.append(f"| {row['name']} | "
                      + " | ".join(ratio(c[f"{who} {mode}"], c[f"{who} primal"])
                                   for mode in ("reverse", "forward") for who in ("cuda", "prange"))
                      + " | " + " | ".join(ratio(c[f"cuda {mode}"], c[f"prange {mode}"])
                                           for mode in ("primal", "reverse", "forward")) + " |")
        compile_times.append(f"| {row['name']} | " + " | ".join(f"{row['first'][column]:.2f}" for column in COLUMNS)
                             + " |")
    return ("## Median times (ms)\n\n" + "\n".join(times) + "\n\n## Ratios\n\n" + "\n".join(ratios)
            + "\n\n## First call (compile and one checked run, s)\n\n" + "\n".join(compile_times) + "\n")


def enzpy_version() -> str:
    """The checkout's commit, and whether enzpy/ has changes on top of it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "enzpy"], cwd=root, capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {commit}" + (" with local changes in enzpy/" if changed else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the sizes, fewer repetitions")
    parser.add_argument("--threads", type=int, help="numba's thread count (default: numba's default)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    arguments = parser.parse_args(argv)
    if arguments.threads:
        numba.set_num_threads(arguments.threads)
    threads = numba.get_num_threads()
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rows = []
    for computation in computations(arguments.quick):
        rows.append(measure(computation, plan))
        print(f"{computation.name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    quick = " (quick)" if arguments.quick else ""
    text = (f"# CUDA-style kernels on CPU threads (enzpy.cuda) against prange{quick}\n\n"
            f"{threads} thread(s) (numba.get_num_threads(); threading layer {numba.threading_layer()}); machine: "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numba {numba.__version__}; "
            f"enzpy at {enzpy_version()}. "
            f"Run took {seconds:.0f} s; 1-minute load average {load_before:.2f} before it, "
            f"{os.getloadavg()[0]:.2f} after (the run itself keeps the load near {threads}).\n\n"
            "cuda: the kernel of tests/kernels/cuda_kernels.py run by `enzpy.cuda.on_cpu` (primal) and "
            "`enzpy.cuda.differentiate` (reverse: the gradient; forward: the tangents), blocks in parallel on "
            "the threads, the threads of a block one after another. prange: the same computation as an "
            "`@numba.njit(parallel=True)` function (benchmarks/cuda_on_cpu.py), compiled by numba (primal) and "
            "differentiated by `enzpy.differentiate(...).autodiff`. Reverse seeds a random cotangent on "
            "every written array and returns the adjoints of all read arrays and Active scalars; forward "
            "seeds a random tangent on every read array (Active scalars: 1). Before timing, each cuda "
            f"result was asserted to agree with its prange twin to {TOLERANCE:g} relative (the primal's "
            "outputs, every shadow, every Active derivative). Times: medians of interleaved rounds, "
            "Python call overhead included, arrays and shadows allocated outside the timed calls.\n\n"
            + tables(rows))
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / ("cuda-quick.md" if arguments.quick else "cuda.md")).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
