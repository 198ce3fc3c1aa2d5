"""The kernels of benchmarks/cuda_on_cpu.py run by numba.cuda on a GPU: primal times, and gradient / primal.

    python -m benchmarks.cuda_gpu [--quick] [--output DIR]

Primal: numba.cuda's own launch, on device arrays, timed with cuda.synchronize() (its outputs are
checked against the prange twin on the CPU first). Gradient: `enzpy.cuda.gpu.differentiate`
(planned: reverse mode on device arrays) when that module exists, checked against enzpy's
gradient of the prange twin before timing. Without a CUDA GPU there is nothing to measure (exit
0). Written to benchmarks/results/cuda-gpu.md (cuda-gpu-quick.md with --quick).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numba import cuda

from benchmarks.cuda_on_cpu import (RESULTS_DIRECTORY, agree, computations, copies, first_line, milliseconds, ratio,
                             reverse_arguments, shadows)
from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import Duplicated, differentiate


def synchronized(call):
    def run():
        call()
        cuda.synchronize()
    return run


def on_device(annotated) -> list:
    return [Duplicated(cuda.to_device(a.value), cuda.to_device(a.shadow)) if isinstance(a, Duplicated) else a
            for a in annotated]


def measure(computation, plan, gpu) -> dict:
    rng = np.random.default_rng(0)
    values, roles = computation.arguments(rng), computation.roles
    seeds = [rng.uniform(-1.0, 1.0, v.shape) if isinstance(v, np.ndarray) else None for v in values]
    grid, block = computation.grid, computation.block
    to_device = lambda vs: [cuda.to_device(v) if isinstance(v, np.ndarray) else v for v in vs]  # noqa: E731
    expected = copies(values)
    computation.twin(*expected)

    def checked_primal(launch, what):
        arguments = to_device(copies(values))
        synchronized(lambda: launch(*arguments))()
        for k, (ours, theirs) in enumerate(zip(arguments, expected)):
            if isinstance(theirs, np.ndarray):
                agree(ours.copy_to_host(), theirs, f"{computation.name} {what}, argument {k}")
        timed = to_device(copies(values))
        return synchronized(lambda: launch(*timed))

    def checked_gradient():
        derivative = gpu.differentiate(computation.kernel)[grid, block]
        annotated = on_device(reverse_arguments(copies(values), roles, seeds))
        active = derivative(*annotated)
        cuda.synchronize()
        reference = reverse_arguments(copies(values), roles, seeds)
        reference_active = differentiate(computation.twin).autodiff(*reference)
        for k, (ours, theirs) in enumerate(zip(shadows(annotated), shadows(reference))):
            agree(ours.copy_to_host(), theirs, f"{computation.name} GPU gradient, shadow {k}")
        agree(active, reference_active, f"{computation.name} GPU gradient, Active derivatives")
        timed = on_device(reverse_arguments(copies(values), roles, seeds))
        return synchronized(lambda: derivative(*timed))

    calls = {"primal": checked_primal(computation.kernel[grid, block], "GPU primal")}
    cells = dict.fromkeys(("gradient", "enzpy primal"), "not available yet (no enzpy.cuda.gpu)")
    if gpu is not None:
        for column, make in (("gradient", checked_gradient),
                             ("enzpy primal", lambda: checked_primal(gpu.on_gpu(computation.kernel)[grid, block],
                                                                     "enzpy GPU primal"))):
            try:
                calls[column] = make()
            except AssertionError:
                raise
            except Exception as error:  # noqa: BLE001 - reported in the table
                cells[column] = "failed: " + first_line(error)
    medians = interleaved_medians(calls, plan)
    cells.update({column: timing.median_seconds for column, timing in medians.items()})
    return {"name": computation.name, "size": computation.size, "launch": f"{grid} x {block}", **cells}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the sizes, fewer repetitions")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    arguments = parser.parse_args(argv)
    if not cuda.is_available():
        print("no CUDA GPU: nothing to measure")
        return 0
    try:
        from enzpy.cuda import gpu
    except ImportError:
        gpu = None
        print("the GPU gradient path (enzpy.cuda.gpu) is not available yet: timing the primal kernels only")
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    rows = [measure(computation, plan, gpu) for computation in computations(arguments.quick)]
    lines = ["| kernel | size | launch (grid x block) | primal (ms) | gradient (ms) | gradient / primal | "
             "enzpy primal (ms) | gradient / enzpy primal |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['size']} | {row['launch']} | {milliseconds(row['primal'])} | "
                     f"{milliseconds(row['gradient'])} | {ratio(row['gradient'], row['primal'])} | "
                     f"{milliseconds(row['enzpy primal'])} | {ratio(row['gradient'], row['enzpy primal'])} |")
    name = getattr(cuda.get_current_device(), "name", "unknown")
    name = name.decode() if isinstance(name, bytes) else name
    text = (f"# CUDA kernels on the GPU (numba.cuda){' (quick)' if arguments.quick else ''}\n\n"
            f"Device: {name}. Primal: numba.cuda's launch on device arrays; gradient: "
            "`enzpy.cuda.gpu.differentiate` in reverse mode (random cotangents on the written arrays); "
            "enzpy primal: `enzpy.cuda.gpu.on_gpu`, enzpy's own compilation of the primal. "
            "Both checked against the prange twins of benchmarks/cuda_on_cpu.py on the CPU (1e-10 relative) "
            "before timing; medians of interleaved rounds, each call followed by cuda.synchronize().\n\n"
            + "\n".join(lines) + "\n")
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / ("cuda-gpu-quick.md" if arguments.quick else "cuda-gpu.md")).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
