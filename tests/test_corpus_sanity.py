"""Checks that every corpus kernel compiles with numba and agrees with its
pure-Python execution, and that the corpus respects its own conventions."""

import numba
import numpy as np
import pytest
from numba.core import sigutils
from numba.core.dispatcher import Dispatcher

from tests.kernels import ALL_CASES, Case

ALLOWED_ARRAY_DTYPES = {np.dtype(t) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}
MAX_ARRAY_EXTENT = 64


def compile_case(case: Case):
    if case.sig is not None:
        return numba.njit(case.sig)(case.python_function)
    if isinstance(case.func, Dispatcher):
        return case.func
    return numba.njit(case.func)


def float_tolerance(case: Case, dtype: np.dtype) -> float:
    if dtype == np.float32 or "float32" in case.tags:
        return 1e-5
    return 1e-12


def result_kind(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return type(value).__name__


def test_corpus_size_and_unique_names():
    assert len(ALL_CASES) >= 40
    names = [case.name for case in ALL_CASES]
    assert len(names) == len(set(names))


def test_enough_explicit_signatures():
    assert sum(case.sig is not None for case in ALL_CASES) >= 5


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: case.name)
def test_arguments_follow_conventions(case: Case):
    first = case.make_args(np.random.default_rng(0))
    second = case.make_args(np.random.default_rng(0))
    for a, b in zip(first, second, strict=True):
        if isinstance(a, np.ndarray):
            assert not np.shares_memory(a, b), "make_args must build new arrays every call"
            assert a.dtype in ALLOWED_ARRAY_DTYPES
            assert 1 <= a.ndim <= 3
            assert max(a.shape) <= MAX_ARRAY_EXTENT
            if a.dtype.kind == "f":
                assert np.all(np.isfinite(a))
        else:
            assert isinstance(a, (bool, int, float, np.number, np.bool_)), type(a)


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.sig is not None], ids=lambda case: case.name)
def test_arguments_match_explicit_signature(case: Case):
    argument_types, _ = sigutils.normalize_signature(case.sig)
    args = case.make_args(np.random.default_rng(0))
    assert len(args) == len(argument_types)
    for arg, expected in zip(args, argument_types, strict=True):
        actual = numba.typeof(arg)
        if isinstance(expected, numba.types.Array):
            assert isinstance(actual, numba.types.Array)
            assert actual.dtype == expected.dtype
            assert actual.ndim == expected.ndim
            assert expected.layout == "A" or actual.layout == expected.layout
        else:
            assert actual == expected, f"{arg!r} has type {actual}, signature wants {expected}"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: case.name)
def test_compiled_matches_python(case: Case):
    compiled = compile_case(case)
    compiled_args = case.make_args(np.random.default_rng(0))
    python_args = case.make_args(np.random.default_rng(0))

    compiled_result = compiled(*compiled_args)
    python_result = case.python_function(*python_args)

    assert result_kind(compiled_result) == result_kind(python_result)
    kind = result_kind(python_result)
    if kind == "float":
        assert np.isfinite(python_result)
        tolerance = float_tolerance(case, np.asarray(python_result).dtype)
        np.testing.assert_allclose(compiled_result, python_result, rtol=tolerance)
    elif kind in ("int", "bool"):
        assert compiled_result == python_result
    else:
        assert kind == "none"

    for compiled_arg, python_arg in zip(compiled_args, python_args, strict=True):
        if not isinstance(python_arg, np.ndarray):
            continue
        if python_arg.dtype.kind == "f":
            tolerance = float_tolerance(case, python_arg.dtype)
            np.testing.assert_allclose(compiled_arg, python_arg, rtol=tolerance)
        else:
            np.testing.assert_array_equal(compiled_arg, python_arg)
