"""Corpus of numba kernels that enzpy must be able to differentiate.

Each topic module defines a module-level `CASES` list; `ALL_CASES` gathers
them all in a stable order.
"""

from .case import Case
from . import (
    allocation,
    array_expressions,
    arrays2d,
    branches,
    calls,
    calls_that_stay_calls,
    checkpointed,
    float32,
    fuzzed,
    integers,
    linear_algebra,
    lists,
    loops,
    math_functions,
    parallel,
    reshaping,
    stencils,
    strided,
    time_steppers,
)

ALL_CASES: list[Case] = [
    *loops.CASES,
    *branches.CASES,
    *arrays2d.CASES,
    *allocation.CASES,
    *calls.CASES,
    *calls_that_stay_calls.CASES,
    *math_functions.CASES,
    *float32.CASES,
    *integers.CASES,
    *array_expressions.CASES,
    *strided.CASES,
    *reshaping.CASES,
    *time_steppers.CASES,
    *stencils.CASES,
    *linear_algebra.CASES,
    *lists.CASES,
    *parallel.CASES,
    *checkpointed.CASES,
    *fuzzed.CASES,
]

CASES_BY_NAME: dict[str, Case] = {case.name: case for case in ALL_CASES}

__all__ = ["ALL_CASES", "CASES_BY_NAME", "Case"]
