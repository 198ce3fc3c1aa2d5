"""enzpy's gradients side by side with numba's primal, JAX and PyTorch, in one run.

    python -m benchmarks [--quick] [--problems gmm,ba,lstm,burgers,ode,mlp,solve] [--no-plot]

Problems: ADBench's GMM, bundle adjustment (Jacobian) and LSTM, a Burgers'
equation time stepper, an RK4 scalar ODE and a two-layer perceptron (BLAS).
Each is checked (numba against NumPy, every gradient against finite
differences, enzpy against JAX or PyTorch) before it is timed. Prints the table and writes it, with a PNG plot,
to benchmarks/results/. JAX and PyTorch are optional (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
import numba
import numpy as np

# Before any kernel compiles, as a script that imports enzpy at the top: enzpy's capture hook keeps
# the raw modules of the njit callees the primal's first call compiles. (Imported later, enzpy
# reads those callees from numba's vectorized, optimized modules: a slower path, +0.2-0.4 s on GMM.)
import enzpy  # noqa: F401,E402

from .frameworks import load_jax, load_torch
from .problems import SCALES, all_problems
from .progress import Progress
from .report import markdown, write_plot
from .runner import COLUMNS, Row, measure, short_reason
from .timing import BATCH_SECONDS, FULL_PLAN, QUICK_PLAN

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repetitions (1-2 minutes)")
    parser.add_argument("--scale", choices=SCALES, help="sizes: tiny (smoke test), quick, full (default)")
    parser.add_argument("--problems", default=",".join(all_problems()),
                        help="comma-separated subset of: " + ", ".join(all_problems()))
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument("--no-jax", action="store_true", help="leave the JAX column blank")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch column blank")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY, help="folder for the .md and .png")
    arguments = parser.parse_args(argv)
    arguments.scale = arguments.scale or ("quick" if arguments.quick else "full")
    problems = all_problems()
    arguments.problem_names = [name.strip().lower() for name in arguments.problems.split(",") if name.strip()]
    unknown = [name for name in arguments.problem_names if name not in problems]
    if unknown:
        parser.error(f"unknown problem(s) {', '.join(unknown)}; choose from {', '.join(problems)}")
    return arguments


def failed_row(instance, error: BaseException) -> Row:
    """A row whose every cell carries the error: one broken problem must not end the run."""
    row = Row(instance.family, instance.label, instance.adbench, instance.gradient_kind)
    for column in COLUMNS:
        row.cells[column].error = short_reason(error)
    return row


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    plan = FULL_PLAN if arguments.scale == "full" else QUICK_PLAN
    frameworks = {"jax": load_jax(not arguments.no_jax), "torch": load_torch(not arguments.no_torch)}
    problems = all_problems()
    instances = [instance for name in arguments.problem_names for instance in problems[name].instances(arguments.scale)]

    progress = Progress(len(instances))
    rows = []
    for instance in instances:
        try:
            row = measure(instance, frameworks, plan, progress)
        except Exception as error:      # a broken reference or data generator, reported in its row
            row = failed_row(instance, error)
        rows.append(row)
        ratio = row.ratio("enzpy", "primal")
        progress.finished_one(f"{instance.family} {instance.label}" +
                              (f": gradient / primal {ratio:.1f}" if ratio is not None else ""))

    setting = (f"{arguments.scale} run: median of up to {plan.repetitions} samples per column (at least 3, "
               f"within {plan.budget_seconds:g} s per column), columns interleaved, calls under "
               f"{BATCH_SECONDS * 1e3:g} ms timed in batches, after {plan.warmup} warm-up; one thread each; "
               f"numba {numba.__version__}, llvmlite {llvmlite.__version__}, numpy {np.__version__}, "
               f"{frameworks['jax'].describe()}, {frameworks['torch'].describe()}, "
               f"Python {platform.python_version()}, CPU {llvm.get_host_cpu_name()}.")
    text = markdown(rows, setting)
    print(text)
    stem = "gradients" if arguments.scale == "full" else f"gradients-{arguments.scale}"
    arguments.output.mkdir(parents=True, exist_ok=True)
    table_path = arguments.output / f"{stem}.md"
    table_path.write_text(f"# enzpy gradients vs numba, JAX and PyTorch\n\n{text}")
    print(f"wrote {table_path}", file=sys.stderr)
    if not arguments.no_plot:
        plot_path = arguments.output / f"{stem}.png"
        title = f"enzpy vs numba, JAX, PyTorch: {arguments.scale} run, one thread, CPU {llvm.get_host_cpu_name()}"
        problem = write_plot(rows, plot_path, title)
        print(problem or f"wrote {plot_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
