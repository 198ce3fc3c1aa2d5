"""Median timing after warm-up, and the first call's time (which includes compiling).

Every contender is timed the same way: the first call of a freshly built
callable is its compile time (numba's and enzpy's JIT, JAX's trace and XLA
compile; PyTorch's eager first call), then warm-up calls, then the median of
several calls, taken in rounds over all of a problem's columns. Slow
contenders stop early once a time budget is spent, but always get at least
MINIMUM_REPETITIONS timed calls, so one slow column cannot stretch a run to
hours while every median still has several samples.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

MINIMUM_REPETITIONS = 3
BATCH_SECONDS = 0.005
MAXIMUM_BATCH = 1000


@dataclass(frozen=True)
class TimingPlan:
    warmup: int
    """Untimed calls after the first one."""
    repetitions: int
    """Timed calls at most."""
    budget_seconds: float
    """Per contender: stop adding timed calls after this much of its own time (warm-up included)."""


QUICK_PLAN = TimingPlan(warmup=1, repetitions=7, budget_seconds=1.5)
FULL_PLAN = TimingPlan(warmup=2, repetitions=15, budget_seconds=4.0)


@dataclass(frozen=True)
class Timing:
    median_seconds: float
    """Median of the timed calls."""
    repetitions: int
    """How many samples the median is over."""
    batch: int = 1
    """Calls per sample (fast contenders are timed in short batches)."""


def first_call(call: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call: on a fresh callable, its compile time plus one run."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def interleaved_medians(calls: dict[str, Callable[[], object]], plan: TimingPlan) -> dict[str, Timing]:
    """Median time per call of each contender, sampled in interleaved rounds.

    Each round times every contender once, so a burst of load from other
    processes lands on all columns alike and their ratios stay put, where
    timing one column after another would charge it to whichever ran then.
    A sample of a fast contender is a short batch of back-to-back calls (about
    BATCH_SECONDS), so that caches cooled by the other contenders cost one
    call's warm-up, not every sample's. A contender leaves the rounds at
    plan.repetitions samples, or once it has MINIMUM_REPETITIONS and has spent
    plan.budget_seconds (its own time).
    """
    spent = dict.fromkeys(calls, 0.0)
    batch = {}
    for name, call in calls.items():
        fastest = math.inf
        for _ in range(max(1, plan.warmup)):
            start = time.perf_counter()
            call()
            seconds = time.perf_counter() - start
            spent[name] += seconds
            fastest = min(fastest, seconds)
            if spent[name] > plan.budget_seconds:
                break
        batch[name] = max(1, min(MAXIMUM_BATCH, math.ceil(BATCH_SECONDS / max(fastest, 1e-9))))
    # A collection triggered by earlier garbage must not land inside one sample.
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    active = list(calls)
    while active:
        for name in active:
            call, count = calls[name], batch[name]
            start = time.perf_counter()
            for _ in range(count):
                call()
            seconds = time.perf_counter() - start
            samples[name].append(seconds / count)
            spent[name] += seconds
        active = [name for name in active if len(samples[name]) < plan.repetitions and not (
            len(samples[name]) >= MINIMUM_REPETITIONS and spent[name] > plan.budget_seconds)]
    return {name: Timing(statistics.median(times), len(times), batch[name]) for name, times in samples.items()}
