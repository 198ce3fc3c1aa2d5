"""BLAS calls (np.dot, @, np.vdot): what the rules emit, what reverse mode copies, what is refused.

The corpus (tests/kernels/linear_algebra.py) checks the derivatives against
finite differences in both modes; these tests check the mechanism: adjoints
only for operands that carry derivatives, copies only of operands the kernel
overwrites after the call, no leaked copy when the kernel raises, and a
DifferentiationError for complex BLAS.
"""

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from enzpy import Const, DifferentiationError, Duplicated, differentiate
from enzpy.frontend.numba import capture
from tests.kernels import linear_algebra

REPO = str(Path(__file__).resolve().parents[1])


def gradient_calls(function, annotated, cache_minimization=True) -> Counter:
    """How often the gradient of `function` for these annotations calls each function."""
    differentiable = differentiate(function, cache_minimization=cache_minimization)
    captured = capture(differentiable.dispatcher, args=tuple(a.value for a in annotated))
    # As autodiff does for arrays that do not overlap.
    _, gradient, _ = differentiable.gradient_module(captured, tuple(type(a) for a in annotated),
                                                    distinct_arguments=True)
    calls = Counter()
    for instruction in gradient.instructions():
        name = getattr(getattr(instruction, "callee", None), "name", None)
        if name is not None:
            calls[name] += 1
            if name == "NRT_Allocate" and instruction.name == "blas.copy":
                calls["copies"] += 1
    return calls


def test_an_inactive_matrix_gets_no_adjoint_code_and_no_copy():
    rng = np.random.default_rng(0)
    A, x, w = rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal(5)
    both = gradient_calls(linear_algebra.weighted_matrix_vector,
                          [Duplicated(A, np.zeros_like(A)), Duplicated(x, np.zeros_like(x)), Const(w)])
    constant_matrix = gradient_calls(linear_algebra.weighted_matrix_vector,
                                     [Const(A), Duplicated(x, np.zeros_like(x)), Const(w)])
    # The primal gemv, x's adjoint (a gemv) and A's (a rank-1 gemm); nothing copied: nothing is overwritten.
    assert (both["numba_xxgemv"], both["numba_xxgemm"], both["copies"]) == (2, 1, 0)
    assert (constant_matrix["numba_xxgemv"], constant_matrix["numba_xxgemm"], constant_matrix["copies"]) == (2, 0, 0)


def test_operands_overwritten_after_the_product_are_copied_before_it():
    rng = np.random.default_rng(1)
    x, v = rng.uniform(-1.0, 1.0, 5), rng.standard_normal(5)
    calls = gradient_calls(linear_algebra.product_of_overwritten_temporary,
                           [Duplicated(x, np.zeros_like(x)), Duplicated(v, np.zeros_like(v))])
    # numba's 2-D @ 1-D is one gemv; its temporary T is rewritten afterwards, v is not.
    assert calls["copies"] == 1 and calls["NRT_Free"] >= 1
    A = rng.standard_normal((4, 3))
    calls = gradient_calls(linear_algebra.argument_overwritten_after_product,
                           [Duplicated(A, np.zeros_like(A)), Duplicated(v[:3].copy(), np.zeros(3))])
    assert calls["copies"] == 1                     # A, scaled in place after A @ x


def test_caching_everything_copies_every_operand_read_and_agrees():
    rng = np.random.default_rng(2)
    A, B, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    gradients = []
    for minimize in (True, False):
        shadows = [np.zeros_like(A), np.zeros_like(B)]
        differentiate(linear_algebra.matrix_matrix, cache_minimization=minimize).autodiff(
            Duplicated(A.copy(), shadows[0]), Duplicated(B.copy(), shadows[1]), Const(W))
        gradients.append(shadows)
    for ours, cached in zip(*gradients):
        np.testing.assert_allclose(ours, cached, rtol=1e-13)
    assert gradient_calls(linear_algebra.matrix_matrix, [Duplicated(A, A), Duplicated(B, B), Const(W)],
                          cache_minimization=False)["copies"] > 0


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("product, routine", [("np.dot(z, z)", "numba_xxdot"), ("np.vdot(z, z)", "numba_xxdot"),
                                              ("(Z @ Z)[0, 0]", "numba_xx(dot|gemv|gemm)")])
def test_complex_blas_is_refused_naming_the_routine(product, routine, mode):
    namespace = {"np": np}
    exec(textwrap.dedent(f"""
        def complex_product(x):
            z = x * (1.0 + 2.0j)
            Z = z.reshape((2, 2))
            return ({product}).real
    """), namespace)
    x = np.linspace(0.5, 1.0, 4)
    with pytest.raises(DifferentiationError, match=f"'{routine}' \\(kind 'z'\\): complex BLAS is not supported"):
        differentiate(namespace["complex_product"]).autodiff(Duplicated(x, np.ones(4)), mode=mode)


def test_a_raising_kernel_frees_its_operand_copies():
    # NRT statistics must be on before numba starts: a fresh interpreter.
    script = textwrap.dedent("""
        import numpy as np, numba
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate

        @numba.njit
        def checked(A, x):
            y = A @ x
            A *= 2.0                               # overwritten after the product: copied before it
            s = np.dot(y, y)
            if s > 1e6:
                raise ValueError("too large")
            return s

        d = differentiate(checked)
        x = np.ones(3)
        good, bad = np.full((4, 3), 0.5), np.full((4, 3), 1e4)
        d.autodiff(Duplicated(good.copy(), np.zeros((4, 3))), Duplicated(x.copy(), np.zeros(3)))
        before = rtsys.get_allocation_stats()
        for _ in range(200):
            try:
                d.autodiff(Duplicated(bad.copy(), np.zeros((4, 3))), Duplicated(x.copy(), np.zeros(3)))
            except ValueError as error:
                assert "too large" in str(error)
            else:
                raise AssertionError("no exception")
            d.autodiff(Duplicated(good.copy(), np.zeros((4, 3))), Duplicated(x.copy(), np.zeros(3)))
        after = rtsys.get_allocation_stats()
        assert after.alloc - before.alloc >= 400, after.alloc - before.alloc   # a copy per call at least
        assert after.alloc - before.alloc == after.free - before.free, (before, after)
        assert after.mi_alloc - before.mi_alloc == after.mi_free - before.mi_free, (before, after)
        shadow_A, shadow_x = np.zeros((4, 3)), np.zeros(3)
        d.autodiff(Duplicated(good.copy(), shadow_A), Duplicated(x.copy(), shadow_x))
        y = good @ x
        assert np.allclose(shadow_A, 2.0 * np.outer(y, x)) and np.allclose(shadow_x, 2.0 * good.T @ y)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
