"""Every corpus kernel survives capture -> enzpy IR -> LLVM text -> re-parse -> JIT,
raw and after the pre-AD pipeline, and computes what numba computes."""

import llvmlite.binding as llvm
import numpy as np
import pytest

from enzpy.driver import jit_kernel
from enzpy.ir import parse_module, write_module
from enzpy.ir.verify import verify_module
from tests.kernels import ALL_CASES, Case
from tests.test_corpus_sanity import compile_case


def assert_same(actual, expected, what: str, reassociated: bool = False):
    """Bit-identical, or within rounding for a `fastmath` kernel (`reassociated`): its sums may
    be regrouped differently by numba's pipeline and enzpy's."""
    if isinstance(expected, np.ndarray):
        if expected.dtype.kind == "f" and reassociated:
            np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-15, err_msg=what)
        elif expected.dtype.kind == "f":
            np.testing.assert_array_equal(actual, expected, err_msg=what)
        else:
            assert np.array_equal(actual, expected), what
    else:
        assert type(actual) is type(expected) or (isinstance(expected, float) and isinstance(actual, float)), \
            f"{what}: {type(actual)} vs {type(expected)}"
        if isinstance(expected, float) and np.isnan(expected):
            assert np.isnan(actual), what
        elif isinstance(expected, float) and reassociated:
            assert abs(actual - expected) <= 1e-13 * abs(expected) + 1e-15, f"{what}: {actual!r} != {expected!r}"
        else:
            assert actual == expected, f"{what}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("stage", ["raw", "optimized"])
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: case.name)
def test_round_trip_matches_numba(case: Case, stage: str):
    if stage == "raw" and "large" in case.tags:
        pytest.skip("the raw stage JITs numba's unoptimized module at O3, minutes for a kernel this large; "
                    "the optimized stage round-trips it")
    reference = compile_case(case)
    args_for_numba = case.make_args(np.random.default_rng(1))
    args_for_enzpy = case.make_args(np.random.default_rng(1))
    if case.sig is not None:
        kernel = jit_kernel(case.func, signature=case.sig, stage=stage)
    else:
        kernel = jit_kernel(case.func, args=args_for_enzpy, stage=stage)

    # The IR enzpy holds must be a fixed point of write -> parse -> write, and valid for LLVM.
    text = write_module(kernel.module)
    verify_module(kernel.module)
    assert write_module(parse_module(text)) == text
    llvm.parse_assembly(text).verify()

    expected = reference(*args_for_numba)
    actual = kernel(*args_for_enzpy)
    # Optimized code may contract or reorder float ops numba also reorders; both
    # come from the same IR, so the results are bit-identical in practice, except
    # for fastmath kernels, whose sums each pipeline may regroup its own way, and for prange
    # kernels, whose reductions numba splits over threads while enzpy's copy runs them serially.
    options = getattr(case.func, "targetoptions", {})
    reassociated = bool(options.get("fastmath") or options.get("parallel"))
    assert_same(actual, expected, f"{case.name}: return value", reassociated)
    for index, (a, e) in enumerate(zip(args_for_enzpy, args_for_numba)):
        if isinstance(e, np.ndarray):
            assert_same(a, e, f"{case.name}: argument {index} after the call", reassociated)
