"""Interprocedural AD (enzpy/ad/calls.py): calls to defined functions that stay calls.

Each kernel is checked as the corpus checks its kernels (the helpers of
test_reverse_corpus and test_forward_corpus): reverse and forward mode against
5-point finite differences on optimized and unoptimized IR, and forward against
reverse (<J t, c> = <t, J^T c>). The kernels are the corpus's recursive ones
(tests/kernels/calls_that_stay_calls.py), a few more here (numba's recursive
call through an unresolved symbol, recursion returning new arrays, a debug
build, deep recursion), and the corpus's kernels with helpers
(tests/kernels/calls.py) with the helpers kept as calls by a pipeline.
Then: the calls really stay calls, one derivative per callee and activity
signature (a recursive derivative calls itself), and kernels that raise across
such calls free what the derivative allocated and leave the shadows alone.
"""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import enzpy.api
from enzpy import Duplicated, differentiate
from enzpy.ad.calls import differentiable_callee
from enzpy.driver import optimize, to_ir
from enzpy.frontend.numba import capture
from enzpy.ir import core
from tests import test_forward_corpus, test_reverse_corpus
from tests.kernels import calls as helper_calls, calls_that_stay_calls
from tests.kernels.case import Case

REPO = Path(__file__).resolve().parents[1]
KEEP_CALLS = str(REPO / "tests" / "pipelines" / "keep_calls.pipeline")


@numba.njit
def power_sum(x, n):
    if n == 0:
        return 0.0
    return x ** n + power_sum(x, n - 1)


def literal_recursion(x):
    # A literal 5 specializes power_sum; its call of the int64 version goes through the
    # symbol numba resolves at run time (`.numba.unresolved$...`).
    return power_sum(x[0], 5) * x[1]


@numba.njit
def merge_sort(x):
    n = x.shape[0]
    if n <= 1:
        return x.copy()
    middle = n // 2
    left, right = merge_sort(x[:middle]), merge_sort(x[middle:])
    out = np.empty(n)
    i = j = 0
    for k in range(n):
        if j >= right.shape[0] or (i < left.shape[0] and left[i] <= right[j]):
            out[k] = left[i]
            i += 1
        else:
            out[k] = right[j]
            j += 1
    return out


def sorted_weights(x):
    ordered = merge_sort(x)
    total = 0.0
    for i in range(ordered.shape[0]):
        total += (i + 1) * ordered[i] * math.sin(ordered[i])
    return total


@numba.njit(debug=True)
def debug_helper(x, i):
    return math.sin(x[i]) * x[i] + x[i - 1]


@numba.njit(debug=True)
def debug_build(x):
    # numba marks every function of a debug build noinline: the helper stays a call.
    total = 0.0
    for i in range(1, x.shape[0]):
        total += debug_helper(x, i)
    return total


@numba.njit
def deep_sum(x, n):
    if n == 0:
        return 0.0
    return math.sin(x * (n * 1e-3)) + deep_sum(x, n - 1)


def deep_recursion(x):
    return deep_sum(x[0], 2000)


EXTRA_CASES = [
    Case("literal_recursion", literal_recursion, lambda rng: (rng.uniform(0.5, 1.5, 2),),
         tags=frozenset({"call", "recursion"})),
    Case("recursion_returning_arrays", sorted_weights, lambda rng: (rng.uniform(-1.0, 1.0, 11),),
         tags=frozenset({"call", "recursion", "alloc", "branch"})),
    Case("debug_build", debug_build, lambda rng: (rng.uniform(-1.0, 1.0, 7),), tags=frozenset({"call", "loop"})),
    Case("deep_recursion", deep_recursion, lambda rng: (rng.uniform(0.5, 1.5, 1),),
         tags=frozenset({"call", "recursion", "math"})),
]
CASES = calls_that_stay_calls.CASES + EXTRA_CASES


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reverse_matches_finite_differences(case: Case, optimize: bool):
    test_reverse_corpus.check_against_finite_differences(case, optimize)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_matches_finite_differences(case: Case, optimize: bool):
    test_forward_corpus.test_forward_matches_finite_differences(case, optimize)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_agrees_with_reverse(case: Case):
    test_forward_corpus.test_forward_agrees_with_reverse(case)


def calls_that_stay(function, args, pipeline="pre_ad") -> set[str]:
    """Names of the defined functions the kernel's IR still calls after `pipeline`."""
    module = optimize(to_ir(capture(function, args=args)), pipeline)
    return {i.callee.name for f in module.functions.values() for i in f.instructions()
            if differentiable_callee(i) is not None}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_calls_stay_calls_after_the_pre_ad_pipeline(case: Case):
    # Otherwise the tests above would test inlined code.
    assert calls_that_stay(case.func, case.make_args(np.random.default_rng(3)))


def test_a_recursive_callee_gets_one_derivative_that_calls_itself():
    case = {c.name: c for c in CASES}["recursive_tree_sum"]
    d = differentiate(case.func)
    captured = capture(d.dispatcher, args=case.make_args(np.random.default_rng(3)))
    module, _, _ = d.gradient_module(captured, (Duplicated,))
    augmented = [f for name, f in module.functions.items() if name.startswith("enzpy.augmented.")]
    reverse = [f for name, f in module.functions.items() if name.startswith("enzpy.reverse.call.")
               and not name.endswith(".discard")]
    assert len(augmented) == 1 and len(reverse) == 1
    assert sum(i.callee is augmented[0] for i in augmented[0].instructions() if hasattr(i, "callee")) == 2
    assert sum(i.callee is reverse[0] for i in reverse[0].instructions() if hasattr(i, "callee")) == 2
    module, _, _ = d.tangent_module(captured, (Duplicated,), width=2)
    tangents = [f for name, f in module.functions.items() if name.startswith("enzpy.tangent")]
    assert len(tangents) == 1
    assert sum(i.callee is tangents[0] for i in tangents[0].instructions() if hasattr(i, "callee")) == 2


def test_numbas_unresolved_recursive_call_becomes_a_direct_call():
    x = np.array([1.3, 0.5])
    module = to_ir(capture(literal_recursion, args=(x,)))
    indirect = [i for f in module.functions.values() for i in f.instructions()
                if isinstance(i, core.Call) and not isinstance(i.callee, core.Function)]
    assert not indirect
    value, (gradient,) = differentiate(literal_recursion).value_and_grad(x)
    powers = sum(x[0] ** k for k in range(1, 6))
    assert value == pytest.approx(powers * x[1], rel=1e-14)
    np.testing.assert_allclose(gradient, [sum(k * x[0] ** (k - 1) for k in range(1, 6)) * x[1], powers],
                               rtol=1e-14)


@pytest.fixture
def keep_calls(monkeypatch):
    """Differentiate with the pre-AD pipeline that keeps the program's own callees as calls."""
    monkeypatch.setattr(enzpy.api, "optimize",
                        lambda module, pipeline: optimize(module, KEEP_CALLS if pipeline == "pre_ad" else pipeline))


@pytest.mark.parametrize("case", helper_calls.CASES, ids=lambda case: case.name)
def test_helpers_kept_as_calls(case: Case, keep_calls):
    assert calls_that_stay(case.func, case.make_args(np.random.default_rng(3)), KEEP_CALLS)
    test_reverse_corpus.check_against_finite_differences(case, True)
    test_forward_corpus.check_against_finite_differences(case, True)
    test_forward_corpus.test_forward_agrees_with_reverse(case)


def test_raising_across_calls_frees_what_the_derivative_allocated_and_leaves_the_shadows_alone():
    # NRT statistics must be on before numba starts: a fresh interpreter.
    script = textwrap.dedent("""
        import math, numpy as np, numba
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate
        from enzpy.driver import jit_kernel

        @numba.njit
        def checked_power(x, n):           # raises at the bottom of the recursion
            if n == 0:
                if x > 5.0:
                    raise ValueError("too large")
                return 1.0
            return x * checked_power(x, n - 1)

        def inner_raises(x):
            t = np.empty(x.shape[0])       # has a shadow; numba itself leaks t when a callee raises
            s = 0.0
            for i in range(x.shape[0]):
                t[i] = x[i] * 2.0
                s += checked_power(t[i], 3)
            return s

        @numba.njit
        def averaged(x, depth):            # allocates an array (and a shadow) at every level
            if depth == 0:
                return x[0] * x[0]
            y = np.empty(x.shape[0])
            for i in range(x.shape[0]):
                y[i] = math.sin(x[i]) + x[i]
            return y[-1] + averaged(y, depth - 1)

        def outer_raises(x):               # raises after the callee returned: its frames are discarded
            s = averaged(x, 4)
            if s > 1e3:
                raise ValueError("too large")
            return s

        def leak(call):
            before = rtsys.get_allocation_stats()
            for _ in range(100):
                try:
                    call()
                except ValueError as error:
                    assert "too large" in str(error)
                else:
                    raise AssertionError("no exception")
            after = rtsys.get_allocation_stats()
            return after.mi_alloc - before.mi_alloc, after.mi_free - before.mi_free

        for kernel, good, bad in [(inner_raises, np.full(4, 0.1), np.full(4, 30.0)),
                                  (outer_raises, np.full(4, 0.1), np.full(4, 1e4))]:
            primal = jit_kernel(kernel, args=(bad.copy(),))
            allocated, freed = leak(lambda: primal(bad.copy()))
            primal_leak = allocated - freed
            d = differentiate(kernel)
            for mode in ("reverse", "forward"):
                d.autodiff(Duplicated(good.copy(), np.ones(4)), mode=mode)
                shadows = []
                def call():
                    shadows.append(np.full(4, 3.0))
                    d.autodiff(Duplicated(bad.copy(), shadows[-1]), mode=mode)
                allocated, freed = leak(call)
                assert all((s == 3.0).all() for s in shadows), (kernel.__name__, mode)
                assert allocated > primal_leak, (kernel.__name__, mode, allocated)      # the shadows
                # Reverse mode releases all it kept; forward mode's shadows live as long as their
                # primals, so numba's own leak (t, when a callee raises) is mirrored.
                expected = primal_leak if mode == "reverse" else 2 * primal_leak
                assert allocated - freed == expected, (kernel.__name__, mode, allocated, freed, primal_leak)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
