"""First call in a new process: enzpy's `cache=True` against numba's own `cache=True`.

    python -m benchmarks.cached_compile [--repeats 3]

For each kernel (a loop kernel with an njit callee; an array-expression kernel
with a gemv), a warm-up process fills numba's and enzpy's caches, then fresh
processes time (after `import enzpy` and numba's one-time initialisation):

- `numba`: the first call of the `@njit(cache=True)` kernel (numba loads it);
- `enzpy cached`: the first `value_and_grad` / `autodiff` of
  `differentiate(kernel, cache=True)`: numba loads the primal, enzpy the derivative;
- `enzpy cold`: the same with an empty enzpy cache (numba's still warm): the compile
  the cache saves.

The target of issue 18 is `enzpy cached / numba` at most 1.5. Medians over
`--repeats` processes; written to benchmarks/results/cached_compile.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"

KERNELS = '''
import numba
import numpy as np

@numba.njit(cache=True)
def square(v):
    return v * v

@numba.njit(cache=True)
def loop_energy(x, a):
    total = 0.0
    for i in range(x.shape[0]):
        total += a * square(x[i]) + np.sin(x[i])
    return total

@numba.njit(cache=True)
def array_energy(x, w):
    y = np.tanh(w @ x)
    return np.sum(y * y) + np.sum(np.exp(-x * x))
'''

PROBLEMS = {
    "loop kernel + njit callee": ("loop_energy", "(np.linspace(0.0, 1.0, 1000), 0.5)"),
    "array expressions + gemv": ("array_energy", "(np.linspace(0.0, 1.0, 64), np.full((32, 64), 0.01))"),
}

TIMER = '''
import sys, time
import numpy as np
import numba
import enzpy
numba.njit(lambda: 1)()                       # numba's one-time initialisation, not timed
import kernels
kernel = getattr(kernels, sys.argv[2])
args = {arguments}
start = time.perf_counter()
if sys.argv[1] == "numba":
    kernel(*args)
else:
    enzpy.differentiate(kernel, cache=True).value_and_grad(*args)
print(time.perf_counter() - start)
'''


def first_call(folder: Path, what: str, kernel: str, arguments: str, enzpy_cache: Path) -> float:
    (folder / "timer.py").write_text(TIMER.format(arguments=arguments))
    environment = dict(os.environ, ENZPY_CACHE_DIR=str(enzpy_cache), NUMBA_CACHE_DIR=str(folder / "numba"),
                       PYTHONPATH=str(folder))
    finished = subprocess.run([sys.executable, "timer.py", what, kernel], cwd=folder, env=environment,
                              capture_output=True, text=True, check=True)
    return float(finished.stdout.split()[-1])


def measure(repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "kernels.py").write_text(KERNELS)
        for name, (kernel, arguments) in PROBLEMS.items():
            warm, cold = folder / f"warm-{kernel}", folder / f"cold-{kernel}"
            first_call(folder, "enzpy", kernel, arguments, warm)          # fills both caches
            numba_times = [first_call(folder, "numba", kernel, arguments, warm) for _ in range(repeats)]
            cached_times = [first_call(folder, "enzpy", kernel, arguments, warm) for _ in range(repeats)]
            cold_times = []
            for _ in range(repeats):
                shutil.rmtree(cold, ignore_errors=True)
                cold_times.append(first_call(folder, "enzpy", kernel, arguments, cold))
            rows.append(dict(problem=name, numba=statistics.median(numba_times),
                             cached=statistics.median(cached_times), cold=statistics.median(cold_times)))
    return rows


def report(rows: list[dict]) -> str:
    lines = ["# First call in a new process: enzpy cache=True vs numba cache=True", "",
             "Times in ms, medians over fresh processes (`python -m benchmarks.cached_compile`); "
             "target: enzpy cached / numba at most 1.5.", "",
             "| kernel | numba cached first call | enzpy cached first gradient | enzpy cold first gradient "
             "| cached / numba | cold / cached |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['problem']} | {1e3 * row['numba']:.1f} | {1e3 * row['cached']:.1f} | "
                     f"{1e3 * row['cold']:.0f} | {row['cached'] / row['numba']:.2f} | "
                     f"{row['cold'] / row['cached']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    options = parser.parse_args(argv)
    text = report(measure(options.repeats))
    print(text)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "cached_compile.md").write_text(text)


if __name__ == "__main__":
    main()
