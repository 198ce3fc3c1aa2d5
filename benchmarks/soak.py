"""Soak: many gradient calls of allocating (and raising) kernels leak nothing.

    NUMBA_NRT_STATS=1 python -m benchmarks.soak [--calls N] [--output DIR]

Each workload calls one derivative N times (10^5 by default) after a warm-up
of N / 10 calls, and reports numba's NRT statistics over the measured calls
(allocations, frees, MemInfo allocations and frees: equal when nothing leaks)
and the process's resident memory before and after them (flat when nothing
leaks outside the NRT: enzpy's tapes, shadows, output forms). The workloads
raise too: a kernel that raises after allocating, called through
`value_and_grad`, must free what it allocated before the error reaches Python.
Written to benchmarks/results/soak.md.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"


@numba.njit
def allocating_loss(x, y):
    scratch = np.sin(x) * y              # an NRT allocation per call, and one per derivative call
    total = 0.0
    for i in range(x.shape[0]):
        buffer = np.empty(3)             # and one per loop trip, kept for the reverse sweep
        buffer[0] = scratch[i]
        buffer[1] = x[i] * x[i]
        buffer[2] = buffer[0] + buffer[1]
        total += buffer[2] * buffer[0]
    return total


@numba.njit
def array_result(x, y):
    return np.cumsum(x * y) + np.sin(x)


@numba.njit
def raising_loss(x, limit):
    scratch = np.exp(x)
    total = 0.0
    for i in range(x.shape[0]):
        total += scratch[i] * x[i]
        if total > limit:
            raise ValueError("total above the limit")
    return total


@dataclass
class Result:
    """One workload's numbers over the measured calls."""
    name: str
    """What was called."""
    calls: int
    """Measured calls (after the warm-up)."""
    allocations: int
    """NRT allocations during them."""
    frees: int
    """NRT frees during them."""
    meminfo_allocations: int
    """NRT MemInfo allocations."""
    meminfo_frees: int
    """NRT MemInfo frees."""
    rss_before_mb: float
    """Resident memory after the warm-up."""
    rss_after_mb: float
    """Resident memory after the measured calls."""
    microseconds_per_call: float
    """Mean time of one call."""

    @property
    def balanced(self) -> bool:
        return self.allocations == self.frees and self.meminfo_allocations == self.meminfo_frees

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb


def resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def nrt_counts() -> tuple[int, int, int, int]:
    from numba.core.runtime import rtsys
    stats = rtsys.get_allocation_stats()
    return stats.alloc, stats.free, stats.mi_alloc, stats.mi_free


def workloads():
    """(name, one call) pairs; each call checks its own result so that a wrong soak is noticed."""
    import enzpy
    from enzpy import Const, Duplicated

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, 64), rng.uniform(-1, 1, 64)
    loss = enzpy.differentiate(allocating_loss)
    _, expected = loss.value_and_grad(x, y)

    def gradient():
        _, grads = loss.value_and_grad(x, y)
        assert grads[0][0] == expected[0][0]

    dx, dy = np.zeros(64), np.zeros(64)

    def reverse_autodiff():
        dx[:] = 0.0
        dy[:] = 0.0
        loss.autodiff(Duplicated(x, dx), Duplicated(y, dy))

    def forward_autodiff():
        loss.autodiff(Duplicated(x, dy), Const(y), mode="forward")

    arrays = enzpy.differentiate(array_result)
    cotangent = np.ones(64)

    def vector_jacobian_product():
        _, pullback = arrays.vjp(x, y)
        pullback(cotangent)

    raising = enzpy.differentiate(raising_loss)
    large = np.linspace(0.5, 1.5, 64)

    def raising_gradient():
        try:
            raising.value_and_grad(large, 3.0)
        except ValueError:
            return
        raise AssertionError("raising_loss did not raise")

    return [("value_and_grad, allocating loop", gradient), ("autodiff reverse", reverse_autodiff),
            ("autodiff forward", forward_autodiff), ("vjp of an array result", vector_jacobian_product),
            ("value_and_grad of a kernel that raises", raising_gradient)]


def soak(calls: int, named_calls=None) -> list[Result]:
    """Run each (name, call) of `named_calls` (default: `workloads()`) `calls` times after a warm-up."""
    results = []
    for name, call in named_calls or workloads():
        for _ in range(max(1, calls // 10)):
            call()
        before, rss_before = nrt_counts(), resident_mb()
        started = time.perf_counter()
        for _ in range(calls):
            call()
        elapsed = time.perf_counter() - started
        after, rss_after = nrt_counts(), resident_mb()
        deltas = [b - a for a, b in zip(before, after)]
        results.append(Result(name, calls, *deltas, rss_before, rss_after, 1e6 * elapsed / calls))
    return results


def markdown(results: list[Result]) -> str:
    lines = ["# Soak: repeated derivative calls leak nothing", "",
             f"enzpy {_version()}, numba {numba.__version__}, numpy {np.__version__}; "
             f"NUMBA_NRT_STATS={os.environ.get('NUMBA_NRT_STATS', '0')}. Counts are over the measured calls, "
             "after a warm-up of a tenth as many.", "",
             "| workload | calls | NRT allocs | NRT frees | MemInfo allocs | MemInfo frees | RSS before MB | "
             "RSS growth MB | us / call |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.calls} | {r.allocations} | {r.frees} | {r.meminfo_allocations} | "
                     f"{r.meminfo_frees} | {r.rss_before_mb:.1f} | {r.rss_growth_mb:+.2f} | "
                     f"{r.microseconds_per_call:.1f} |")
    balanced = all(r.balanced for r in results)
    growth = max(r.rss_growth_mb for r in results)
    lines += ["", f"Allocations equal frees in every workload: {'yes' if balanced else 'NO'}. "
                  f"Largest resident-memory growth: {growth:+.2f} MB."]
    return "\n".join(lines) + "\n"


def _version() -> str:
    import subprocess
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "?"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    options = parser.parse_args(argv)
    if os.environ.get("NUMBA_NRT_STATS") != "1":
        raise SystemExit("run with NUMBA_NRT_STATS=1 (numba counts allocations only then)")
    results = soak(options.calls)
    text = markdown(results)
    print(text)
    if options.calls >= 100_000:
        options.output.mkdir(parents=True, exist_ok=True)
        (options.output / "soak.md").write_text(text)


if __name__ == "__main__":
    main()
