"""Lists beyond the corpus (tests/kernels/lists.py): what is refused, and what stays untouched."""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from enzpy import DifferentiationError, Duplicated, differentiate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def typed_list_of_pairs(x):
    pairs = numba.typed.List()
    for i in range(x.size - 1):
        pairs.append((x[i], x[i + 1]))
    total = 0.0
    for a, b in pairs:
        total += a * b
    return total


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_a_typed_list_of_tuples_is_refused_by_name(mode):
    # Its items are (float, float) structs: without a rule the derivative would silently be 0.
    kernel = differentiate(typed_list_of_pairs)
    with pytest.raises(DifferentiationError, match=r"l\.append\(v\) \(numba\.typed\.List\)"):
        if mode == "reverse":
            kernel.value_and_grad(np.ones(3))
        else:
            kernel.jvp([np.ones(3)], [np.ones(3)])


def test_lists_of_arrays_release_every_shadow_array_in_both_modes():
    # Forward mode hands the shadow arrays to the shadow list's reference counting;
    # reverse mode frees them after the reverse sweep. Either way none may be kept.
    script = textwrap.dedent("""
        import numba, numpy as np
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate

        @numba.njit
        def typed(x):
            parts = numba.typed.List()
            parts.append(x)
            for i in range(3):
                parts.append(np.sin(parts[-1]) * (i + 1.0))
            total = 0.0
            for part in parts:
                total += np.sum(part * part)
            return total

        @numba.njit
        def reflected(x):
            parts = [x * 1.0]
            for i in range(3):
                parts.append(np.sin(parts[-1]) * (i + 1.0))
            total = 0.0
            for part in parts:
                total += np.sum(part * part)
            return total

        x = np.linspace(-1.0, 1.0, 20)
        for kernel in (typed, reflected):
            d = differentiate(kernel)
            calls = (lambda: d.value_and_grad(x), lambda: d.autodiff(Duplicated(x, np.ones(20)), mode="forward"))
            for name, call in zip(("reverse", "forward"), calls):
                call()
                before = rtsys.get_allocation_stats()
                for _ in range(200):
                    call()
                after = rtsys.get_allocation_stats()
                allocated, freed = after.mi_alloc - before.mi_alloc, after.mi_free - before.mi_free
                assert allocated >= 200 * 6, (kernel.__name__, name, allocated)
                assert allocated == freed, (kernel.__name__, name, allocated, freed)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def reflected_list_growing_and_shrinking(x):
    stack = []
    for round_ in range(3):
        for v in x:
            stack.append(v * (round_ + 1.0))
        while len(stack) > 2:
            top = stack.pop()
            stack[-1] += np.sin(top)
    return stack[0] * stack[1]


def test_lists_that_grow_and_shrink_repeatedly_match_finite_differences_and_keep_the_input():
    x = np.array([0.3, -0.7, 1.1, 0.5])
    kept = x.copy()
    kernel = differentiate(reflected_list_growing_and_shrinking)
    value, (gradient,) = kernel.value_and_grad(x)
    np.testing.assert_array_equal(x, kept)
    primal = numba.njit(reflected_list_growing_and_shrinking)
    step = 1e-4
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = step
        values = [primal(x + s * e) for s in (-2, -1, 1, 2)]
        finite_difference = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
        assert gradient[i] == pytest.approx(finite_difference, rel=1e-7, abs=1e-9)
    tangent = kernel.autodiff(Duplicated(x.copy(), np.eye(4)[1]), mode="forward")
    assert tangent == pytest.approx(gradient[1], rel=1e-12)
