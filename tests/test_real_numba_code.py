"""What real numba code brings along: C helpers, formatted error messages, callees
numba optimized (and vectorized) itself because they were compiled before enzpy
was imported, and library functions the kernel never calls."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest

from enzpy import DifferentiationError, Duplicated, differentiate
from enzpy.ir import read_module
from enzpy.rules import numba_helpers
from enzpy.rules.calls import INACTIVE_FUNCTIONS

REPO = str(Path(__file__).resolve().parents[1])


def test_every_c_helper_numba_binds_is_classified():
    from numba import _dynfunc, _helperlib
    from numba.core.runtime import _nrt_python

    # numba binds `numba_<name>` (core/base.py) and `NRT_<name>` (core/runtime/nrt.py).
    bound = {"numba_" + name for name in [*_helperlib.c_helpers, *_dynfunc.c_helpers]}
    bound |= {name if name.startswith("_") else "NRT_" + name for name in _nrt_python.c_helpers}
    assert bound - set(numba_helpers.HELPERS) == set()
    for helper in numba_helpers.HELPERS.values():
        assert helper.classification in numba_helpers.CLASSIFICATIONS and helper.reason
    assert numba_helpers.INACTIVE_HELPERS <= INACTIVE_FUNCTIONS
    # Helpers that copy elements of typed containers, or LAPACK, never count as inactive.
    for name in ("numba_list_getitem", "numba_dict_lookup", "numba_xgesv", "numba_ez_gesdd", "numba_cpow"):
        assert name not in INACTIVE_FUNCTIONS


def test_helpers_with_a_rule_have_one_and_the_others_have_none():
    from enzpy.ir import core
    from enzpy.ir.types import I32, FunctionType
    from enzpy.rules.calls import allocation_rule, memory_call_rule
    from enzpy.rules.lists import reallocation_rule
    from enzpy.rules.registry import scalar_rule

    # Names only: a rule is looked up by the callee's name.
    for helper in numba_helpers.HELPERS.values():
        call = core.Call(type=I32, opcode="call", callee=core.Function(helper.name, FunctionType(I32, ())))
        has_rule = any(rule is not None for rule in (scalar_rule(call), allocation_rule(call), memory_call_rule(call),
                                                     reallocation_rule(call)))
        if helper.classification == numba_helpers.NEEDS_RULE:
            assert not has_rule, f"{helper.name} has a rule now: classify it as {numba_helpers.RULE!r}"
        elif helper.classification == numba_helpers.RULE and helper.name.startswith(("numba_xx", "NRT_")) \
                and helper.name != "NRT_MemInfo_data_fast":
            assert has_rule, helper.name


def test_helper_descriptions_name_the_numpy_operation():
    assert numba_helpers.describe_helper("numba_xgesv").startswith("np.linalg.solve (numba_xgesv")
    assert "np.linalg.cholesky" in numba_helpers.describe_helper("numba_xxpotrf")
    assert "np.linalg.svd" in numba_helpers.describe_helper("numba_ez_gesdd")
    assert numba_helpers.describe_helper("my_function") is None
    # Every LAPACK helper numba binds has a numpy name; the real routines np.linalg.solve, inv,
    # det, slogdet, cholesky, eigh, svd and lstsq lower to have rules (rules/lapack.py).
    for name, operation in numba_helpers.LAPACK_OPERATIONS.items():
        assert operation.startswith("np.linalg.")
    with_rules = {"numba_xgesv", "numba_xxgetrf", "numba_ez_xxgetri", "numba_xxpotrf", "numba_ez_xxxevd",
                  "numba_ez_gesdd", "numba_ez_gelsd"}
    assert {name for name in numba_helpers.LAPACK_OPERATIONS
            if numba_helpers.classify(name).classification == numba_helpers.RULE} == with_rules


def reshape_sum(x):
    matrix = x.reshape((2, -1))
    return np.sum(matrix * matrix * np.arange(1.0, matrix.shape[1] + 1.0))


def ravel_loop(matrix):
    flat = matrix.ravel()
    total = 0.0
    for i in range(flat.shape[0]):
        total += (i + 1.0) * flat[i] ** 3
    return total


def outer_energy(a, b):
    return np.sum(np.sin(np.outer(a, b)))


def central_differences(function, args, index, step=1e-6):
    base = [a.copy() for a in args]
    gradient = np.zeros_like(base[index])
    for position in np.ndindex(gradient.shape):
        up, down = [a.copy() for a in base], [a.copy() for a in base]
        up[index][position] += step
        down[index][position] -= step
        gradient[position] = (function(*up) - function(*down)) / (2 * step)
    return gradient


@pytest.mark.parametrize("function, shapes", [(reshape_sum, [(12,)]), (ravel_loop, [(3, 4)]),
                                               (outer_energy, [(5,), (3,)])],
                         ids=["reshape", "ravel", "outer"])
def test_reshaping_kernels_differentiate(function, shapes):
    rng = np.random.default_rng(5)
    args = [rng.uniform(-1.0, 1.0, shape) for shape in shapes]
    kernel = differentiate(function)
    value, gradients = kernel.value_and_grad(*args)
    assert np.isclose(value, function(*args))
    directions = [rng.standard_normal(shape) for shape in shapes]
    for index, gradient in enumerate(gradients):
        assert np.allclose(gradient, central_differences(function, args, index), rtol=1e-6, atol=1e-8)
    _, tangent = kernel.jvp(tuple(args), tuple(directions))
    assert np.isclose(tangent, sum(np.sum(g * d) for g, d in zip(gradients, directions)), rtol=1e-12)


def test_lapack_calls_without_a_rule_are_refused_by_name():
    def qr_sum(a, b):
        return np.sum(np.linalg.qr(a)[1] @ b)

    located = r"call to np\.linalg\.qr \(numba_ez_(geqrf|xxgqr).*Python source .*test_real_numba_code\.py:{}"
    line = qr_sum.__code__.co_firstlineno + 1
    with pytest.raises(DifferentiationError, match=located.format(line)):
        differentiate(qr_sum).value_and_grad(np.eye(3) + 0.1, np.ones(3))


def checked_norm(x, n):
    if x[0] < -1e300:
        raise ValueError("bad value " + str(n) + " at " + str(x.shape[0]))
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * x[i] * n
    return total


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_a_kernel_formatting_its_error_message_differentiates(optimize):
    kernel = differentiate(checked_norm, optimize=optimize)
    x = np.linspace(0.5, 1.5, 7)
    value, (gradient, _) = kernel.value_and_grad(x, 3)
    assert np.isclose(value, 3 * np.sum(x * x)) and np.allclose(gradient, 6 * x)
    _, tangent = kernel.jvp((x, 3), (np.ones(7), None))
    assert np.isclose(tangent, np.sum(6 * x))
    bad = x.copy()
    bad[0] = -np.inf
    for mode in ("reverse", "forward"):
        with pytest.raises(ValueError, match="bad value 3 at 7"):
            if mode == "reverse":
                kernel.value_and_grad(bad, 3)
            else:
                kernel.jvp((bad, 3), (np.ones(7), None))


def test_functions_the_entry_does_not_reach_are_not_read():
    text = """
define i64 @entry(i64 %n) {
  %r = call i64 @used(i64 %n)
  ret i64 %r
}
define i64 @used(i64 %n) {
  %m = add i64 %n, 1
  ret i64 %m
}
@table = global [1 x ptr] [ptr @unused]
define void @unused(ptr %target) {
entry:
  indirectbr ptr %target, [label %a]
a:
  ret void
}
"""
    module_ref = llvm.parse_assembly(text)
    module = read_module(module_ref, roots=["entry"])
    assert set(module.functions) == {"entry", "used"} and not module.globals


def test_a_callee_compiled_before_enzpy_was_imported_differentiates():
    # numba keeps only its optimized (vectorized) module of a callee compiled before
    # enzpy's capture hook existed: the import order must be real, so a fresh interpreter.
    script = textwrap.dedent("""
        import numba, numpy as np

        @numba.njit
        def scaled_copy(x, y):
            for i in range(x.shape[0]):          # vectorized by numba's own O3
                y[i] = 2.0 * x[i] + np.sqrt(x[i])
            count = 0
            for i in range(x.shape[0]):
                count += i % 3
            return count

        @numba.njit
        def describe(n):
            return "n = " + str(n)

        scaled_copy(np.ones(64), np.zeros(64))
        describe(3)

        import enzpy
        from enzpy.driver import kernel_ir

        @numba.njit
        def energy(x):
            y = np.empty_like(x)
            count = scaled_copy(x, y)
            if x[0] < -1e300:
                raise ValueError(describe(count))
            total = 0.0
            for i in range(x.shape[0]):
                total += y[i] * y[i] + count * x[i]
            return total

        x = np.linspace(1.0, 2.0, 37)
        _, captured = kernel_ir(energy, args=(x,), stage="raw")
        assert captured.source == "numba-optimized", captured.source
        import re
        assert re.search(r"<[0-9]+ x double>", captured.text)     # the vector width depends on the CPU
        kernel = enzpy.differentiate(energy)
        value, (gradient,) = kernel.value_and_grad(x)
        assert np.isclose(value, energy(x))
        count = scaled_copy(x, np.empty_like(x))
        expected = 2 * (2.0 * x + np.sqrt(x)) * (2.0 + 0.5 / np.sqrt(x)) + count
        assert np.allclose(gradient, expected, rtol=1e-12), (gradient, expected)
        direction = np.cos(np.arange(37.0))
        assert np.isclose(kernel.jvp((x,), (direction,))[1], gradient @ direction, rtol=1e-12)
        print("OK")
    """)
    environment = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_a_resnet_block_gradient_matches_finite_differences():
    # Too slow to compile for every corpus mode (tests/kernels/stencils.py BENCHMARK_ONLY): reverse
    # mode once, against 5-point differences along random directions of every input.
    from tests.kernels.stencils import BENCHMARK_ONLY

    case = BENCHMARK_ONLY[0]
    args = case.make_args(np.random.default_rng(3))
    shadows = [np.zeros_like(a) for a in args]
    kernel = differentiate(case.func)
    kernel.autodiff(*[Duplicated(a.copy(), s) for a, s in zip(args, shadows)])
    rng = np.random.default_rng(11)
    for _ in range(3):
        directions = [rng.standard_normal(a.shape) for a in args]
        h = 1e-4

        def along(t):
            return case.func(*[a + t * d for a, d in zip(args, directions)])
        difference = (-along(2 * h) + 8 * along(h) - 8 * along(-h) + along(-2 * h)) / (12 * h)
        directional = sum(float(np.sum(s * d)) for s, d in zip(shadows, directions))
        assert abs(directional - difference) <= 1e-6 * max(1.0, abs(difference)), (directional, difference)


def test_a_library_callee_compiled_at_its_import_before_enzpy_differentiates(tmp_path):
    # The case: a library module compiles (and runs) its fastmath slice kernel when it
    # is imported, before enzpy is; a kernel of the user's calls it. Both modes.
    (tmp_path / "smoothing.py").write_text(textwrap.dedent("""
        import numba, numpy as np

        @numba.njit(fastmath=True)
        def smooth(A, B):
            B[1:-1] = 0.33333 * (A[:-2] + A[1:-1] + A[2:])

        smooth(np.random.rand(8), np.zeros(8))
    """))
    script = textwrap.dedent("""
        import numpy as np
        from smoothing import smooth
        import enzpy
        from enzpy import Const, Duplicated

        def loss(A, B, w):
            smooth(A, B)
            s = 0.0
            for i in range(B.shape[0]):
                s += w[i] * B[i] * B[i]
            return s

        rng = np.random.default_rng(0)
        A, w = rng.uniform(0.5, 1.5, 8), rng.uniform(0.5, 1.5, 8)
        kernel = enzpy.differentiate(loss)
        dA = np.zeros(8)
        kernel.autodiff(Duplicated(A.copy(), dA), Duplicated(np.zeros(8), np.zeros(8)), Const(w))
        B = np.zeros(8)
        B[1:-1] = 0.33333 * (A[:-2] + A[1:-1] + A[2:])
        expected = np.zeros(8)
        for i in range(1, 7):
            for j in (i - 1, i, i + 1):
                expected[j] += 2 * w[i] * B[i] * 0.33333
        assert np.allclose(dA, expected, rtol=1e-12), (dA, expected)
        direction = np.cos(np.arange(8.0))
        tangent = kernel.autodiff(Duplicated(A.copy(), direction), Duplicated(np.zeros(8), np.zeros(8)),
                                  Const(w), mode="forward")
        assert np.isclose(tangent, dA @ direction, rtol=1e-12), (tangent, dA @ direction)
        print("OK")
    """)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, str(tmp_path)]))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
