"""What cache minimization buys: gradient cost with and without it, in one run.

    python -m benchmarks.cache_minimization [--quick]

Each kernel's reverse-mode gradient is compiled twice from the same optimized
IR: with cache minimization (values recomputed, re-loaded, kept once in stack
slots, trip counts recomputed) and without it (every value the reverse sweep
needs is pushed onto the tape). Both are checked against each other first.
Reported per kernel: primal time (numba), both gradient times as ratios to the
primal, the speed-up, and the tape bytes each variant fills (from `explain`'s
measurement). Times are medians after warm-up.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numba
import numpy as np

from benchmarks.roundtrip import logistic_loss as plain_logistic_loss
from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import differentiate
from enzpy.explain import explain
from tests.kernels.time_steppers import heat_equation_swapping_buffers
from tests.test_cache_minimization import sine_weighted_sum

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "cache_minimization.md"
logistic_loss = numba.njit(plain_logistic_loss)


@numba.njit
def logistic_map_orbit(x, growth):
    # A scalar recurrence: each step needs the previous state.
    total = 0.0
    for i in range(x.shape[0]):
        state = x[i]
        for _ in range(50):
            state = growth * state * (1.0 - state)
        total += state
    return total


def problems(quick: bool):
    rng = np.random.default_rng(0)
    rows = 2000 if quick else 20000
    features = rng.standard_normal((rows, 64))
    labels = np.sign(rng.standard_normal(rows))
    size = 1000 if quick else 100_000
    cells = 256 if quick else 1024
    steps = 200 if quick else 2000
    return [
        ("logistic loss", logistic_loss, (features, labels, rng.standard_normal(64) * 0.1)),
        ("sin(x) * y", sine_weighted_sum, (rng.standard_normal(size), rng.standard_normal(size))),
        ("heat equation", heat_equation_swapping_buffers, (np.sin(np.linspace(0.0, 3.0, cells)), 0.2, steps)),
        ("logistic map orbits", logistic_map_orbit, (rng.uniform(0.1, 0.9, size // 10), 3.7)),
    ]


def measure(name, kernel, args, plan) -> dict:
    minimized = differentiate(kernel)
    cached = differentiate(kernel, cache_minimization=False)
    reference = cached.grad(*args)
    result = minimized.grad(*args)
    for mine, theirs in zip(result, reference):
        if mine is not None:
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14, err_msg=name)
    times = interleaved_medians({"primal": lambda: kernel(*args), "minimized": lambda: minimized.grad(*args),
                                 "cached": lambda: cached.grad(*args)}, plan)
    primal, with_minimization, without = (times[k].median_seconds for k in ("primal", "minimized", "cached"))
    return {"kernel": name, "primal ms": primal * 1e3,
            "gradient / primal": with_minimization / primal, "all cached / primal": without / primal,
            "speed-up": without / with_minimization,
            "tape bytes": explain(minimized, *args).cache_bytes,
            "tape bytes, all cached": explain(cached, *args).cache_bytes}


def markdown_table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else f"{v:.2f}" if isinstance(v, float) else str(v)
                 for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    arguments = parser.parse_args(argv)
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    rows = []
    for name, kernel, args in problems(arguments.quick):
        print(f"timing {name} ...", flush=True)
        rows.append(measure(name, kernel, args, plan))
    table = markdown_table(rows)
    print(table)
    header = (f"# Cache minimization: gradient cost with and without\n\n"
              f"`python -m benchmarks.cache_minimization{' --quick' if arguments.quick else ''}` on "
              f"{platform.processor() or platform.machine()}, numba {numba.__version__}. Ratios of medians "
              f"(at most {plan.repetitions} interleaved samples each after warm-up), measured in one run.\n\n")
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
