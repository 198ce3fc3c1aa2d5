"""Forward mode through the public API: jvp, vector mode, jacobian, autodiff(mode="forward"), emit.

Derivatives are checked against 5-point finite differences of the plain numba
kernel (on copies, so in-place kernels are differentiated with respect to
their arguments' values on entry) or against reverse mode.
"""

import math
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from enzpy import Active, Const, DifferentiationError, Duplicated, differentiate
from enzpy.cli import main
from tests.adbench.data import adbench_dir, read_ba, read_values
from tests.adbench.objectives import ba_residuals

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copies(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def directional_difference(function, args, tangents, step=1e-4):
    """5-point d/ds function(args + s * tangents) at 0; function returns a float or an array."""
    def at(shift):
        moved = [a + shift * t if t is not None else a for a, t in zip(copies(args), tangents)]
        moved = [m.astype(a.dtype) if isinstance(a, np.ndarray) else m for m, a in zip(moved, args)]
        return np.asarray(function(*moved), dtype=np.float64)

    return (at(-2 * step) - 8 * at(-step) + 8 * at(step) - at(2 * step)) / (12 * step)


def assert_close(actual, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol)


# ---------------------------------------------------------------- kernels


@numba.njit
def weighted_sines(x, a, n):
    s = 0.0
    for i in range(n):
        s += a * math.sin(x[i]) + x[i] * x[i] * x[i]
    return s


@numba.njit
def square_in_place(x, a):
    for i in range(x.shape[0]):
        # reads the entry it overwrote one step earlier: a recurrence through memory
        x[i] = a * x[i] * x[i] + 0.5 * math.sin(x[i - 1] if i > 0 else 0.0)


@numba.njit
def smoothed_output(out, x, c):
    """Writes out from x through a scratch allocation; returns nothing."""
    scratch = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        scratch[i] = math.tanh(c * x[i])
    for i in range(x.shape[0]):
        out[i] = scratch[i] * scratch[i - 1] if i > 0 else scratch[0]


@numba.njit
def float32_energy(x, a):
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += a * x[i] * x[i] + np.float32(math.cos(x[i]))
    return s


@numba.njit
def temporaries_in_loop(x):
    s = 0.0
    for k in range(4):
        t = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            t[i] = math.exp(x[i]) * (k + 1)
        u = t.copy()
        s += np.sum(u * x)
    return s


def ba_problem(rng, cameras=3, points=5, observations=9):
    cams = rng.uniform(-0.5, 0.5, (cameras, 11))
    cams[:, 3:6] = rng.uniform(-1.0, 1.0, (cameras, 3))
    cams[:, 6] = rng.uniform(0.8, 1.2, cameras)
    x = rng.uniform(-1.0, 1.0, (points, 3))
    x[:, 2] += 6.0                         # in front of every camera
    w = rng.uniform(0.5, 1.5, observations)
    obs = np.stack([np.arange(observations) % cameras, np.arange(observations) % points], axis=1).astype(np.int64)
    feats = rng.uniform(-1.0, 1.0, (observations, 2))
    return [cams, x, w, obs, feats, np.zeros((observations, 2)), np.zeros(observations)]


# ---------------------------------------------------------------- jvp


def test_jvp_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, tx = rng.standard_normal(6), rng.standard_normal(6)
    value, tangent = differentiate(weighted_sines).jvp((x, 1.7, 6), (tx, -0.4, None))
    assert_close(value, weighted_sines(x, 1.7, 6), rtol=1e-14)
    expected = directional_difference(weighted_sines, [x, 1.7, 6], [tx, -0.4, None])
    assert_close(tangent, expected, rtol=1e-8)
    assert isinstance(tangent, float)


def test_jvp_width_k_equals_k_single_jvps():
    rng = np.random.default_rng(1)
    d = differentiate(weighted_sines)
    x = rng.standard_normal(5)
    tx, ta = rng.standard_normal((4, 5)), rng.standard_normal(4)
    value, tangents = d.jvp((x, 0.3, 5), (tx, ta, None), width=4)
    assert tangents.shape == (4,)
    for lane in range(4):
        single_value, single = d.jvp((x, 0.3, 5), (tx[lane], ta[lane], None))
        assert single_value == value
        assert_close(tangents[lane], single, rtol=1e-13)


def test_jvp_width_on_output_arrays_and_allocation():
    rng = np.random.default_rng(2)
    d = differentiate(smoothed_output)
    x, out = rng.standard_normal(7), np.zeros(7)
    tx = rng.standard_normal((3, 7))
    value, tangents = d.jvp((out, x, 0.8), (None, tx, None), width=3)
    assert value is None and tangents[2] is None
    assert tangents[0].shape == (3, 7)
    for lane in range(3):
        def outputs(out, x, c):
            smoothed_output(out, x, c)
            return out
        expected = directional_difference(outputs, [np.zeros(7), x, 0.8], [None, tx[lane], None])
        assert_close(tangents[0][lane], expected, rtol=1e-8)
        assert_close(tangents[1][lane], tx[lane], rtol=0, atol=0)      # x is only read


def test_jvp_leaves_tangents_alone_and_mutates_arguments_like_a_call():
    x = np.array([0.5, -0.25, 1.5])
    tx = np.array([1.0, 2.0, 3.0])
    reference = x.copy()
    square_in_place(reference, 2.0)
    _, (x_tangent, _) = differentiate(square_in_place).jvp((x, 2.0), (tx, None))
    np.testing.assert_array_equal(x, reference)
    np.testing.assert_array_equal(tx, [1.0, 2.0, 3.0])
    def final(x, a):
        square_in_place(x, a)
        return x
    assert_close(x_tangent, directional_difference(final, [np.array([0.5, -0.25, 1.5]), 2.0], [tx, None]),
                 rtol=1e-8)


def test_jvp_on_strided_view_with_contiguous_tangent():
    base = np.linspace(-1.0, 1.0, 12)
    view = base[::3]
    tangent = np.array([1.0, -2.0, 0.5, 3.0])
    _, derivative = differentiate(weighted_sines).jvp((view, 1.1, 4), (tangent, None, None))
    expected = directional_difference(weighted_sines, [view.copy(), 1.1, 4], [tangent, None, None])
    assert_close(derivative, expected, rtol=1e-8)


def test_jvp_float32():
    x = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    tx = np.array([1.0, 0.5, -1.0], dtype=np.float32)
    value, tangent = differentiate(float32_energy).jvp((x, np.float32(1.5)), (tx, 0.25))
    expected = np.sum((2 * 1.5 * x.astype(np.float64) - np.sin(x.astype(np.float64))) * tx) \
        + 0.25 * np.sum(x.astype(np.float64) ** 2)
    assert_close(tangent, expected, rtol=1e-5)


def fresh_dispatcher(kernel):
    """A dispatcher of its own: compiled derivatives are shared per dispatcher, and these
    tests count what one Differentiable compiles."""
    return numba.njit(getattr(kernel, "py_func", kernel))


def test_jvp_compiles_once_per_width():
    d = differentiate(fresh_dispatcher(weighted_sines))
    x = np.ones(3)
    d.jvp((x, 1.0, 3), (x, None, None))
    d.jvp((2 * x, 3.0, 3), (x, None, None))
    assert len(d._tangents) == 1
    d.jvp((x, 1.0, 3), (np.ones((2, 3)), None, None), width=2)
    assert len(d._tangents) == 2 and not d._gradients


def test_vector_mode_computes_each_partial_once():
    """Width 4 adds multiply-adds per lane, not partials: cos (sin's partial) appears as often as at width 1."""
    from enzpy.frontend.numba import capture
    from enzpy.ir import core

    d = differentiate(weighted_sines)
    captured = capture(d.dispatcher, args=(np.ones(3), 1.0, 3))
    def tangent_function(width):
        return d.tangent_module(captured, (Duplicated, Active, Const), width)[1]

    def cosines(function):
        return sum(1 for i in function.instructions()
                   if isinstance(i, core.Call) and i.callee.name == "llvm.cos.f64")

    def multiplies(function):
        return sum(1 for i in function.instructions() if i.opcode == "fmul")

    assert cosines(tangent_function(4)) == cosines(tangent_function(1)) >= 1
    assert multiplies(tangent_function(4)) > multiplies(tangent_function(1))
    _, function, _ = d.tangent_module(captured, (Duplicated, Active, Const), 4)
    shadows = [a for a in function.arguments if a.name.startswith("shadow.")]
    tangents = [a for a in function.arguments if a.name.startswith("tangent.")]
    assert len(shadows) == 4 and len(tangents) == 4 and function.arguments[-1].name == "return.tangents"


# ---------------------------------------------------------------- errors


def test_bad_tangents_name_the_argument_and_run_nothing():
    d = differentiate(square_in_place)
    x = np.array([0.5, 1.0, 1.5])
    for bad, width in ((np.ones(4), None), (np.ones((2, 3)), None), (np.ones(3), 2), ("no", None)):
        with pytest.raises((ValueError, TypeError)) as info:
            d.jvp((x, 2.0), (bad, None), width=width)
        assert "argument 0" in str(info.value) and "'x'" in str(info.value)
    with pytest.raises((ValueError, TypeError)) as info:
        d.jvp((x, 2.0), (None, np.ones(2)))
    assert "argument 1" in str(info.value) and "'a'" in str(info.value)
    with pytest.raises(TypeError, match="'n'"):
        differentiate(weighted_sines).jvp((x, 2.0, 3), (None, None, 1.0))
    with pytest.raises(ValueError, match="one tangent per argument"):
        d.jvp((x, 2.0), (None,))
    np.testing.assert_array_equal(x, [0.5, 1.0, 1.5])


@numba.njit
def uses_unsupported(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += (complex(x[i], 0.5) ** complex(1.5, 0.25)).real
    return s


def test_unsupported_operation_raises_in_forward_mode():
    x = np.array([0.5, 1.5])
    with pytest.raises(DifferentiationError) as info:
        differentiate(uses_unsupported).jvp((x,), (np.ones(2),))
    message = str(info.value)
    assert "numba_cpow" in message and "uses_unsupported" in message
    assert "Python source" in message and "test_forward_api.py" in message
    np.testing.assert_array_equal(x, [0.5, 1.5])


@numba.njit
def overwrites_float_bits(x):
    x.view(np.int64)[1] = 4611686018427387904       # the bits of 2.0
    return x[1] * x[0]


def test_float_memory_written_as_integer_bits_raises_in_forward_mode():
    # The shadow would keep x[1]'s old tangent: refuse instead of returning x[0] * t[1] too much.
    with pytest.raises(DifferentiationError, match="raw bits"):
        differentiate(overwrites_float_bits).jvp((np.array([1.5, 3.0]),), (np.array([1.0, 1.0]),))


# ---------------------------------------------------------------- autodiff(mode="forward")


def test_autodiff_forward_duplicated_in_place_gives_jacobian_column():
    x0 = np.array([0.3, -0.7, 1.2, 0.1])
    d = differentiate(square_in_place)
    def final(x, a):
        square_in_place(x, a)
        return x
    for column in range(4):
        x, dx = x0.copy(), np.zeros(4)
        dx[column] = 1.0
        assert d.autodiff(Duplicated(x, dx), Const(1.5), mode="forward") is None
        unit = np.zeros(4)
        unit[column] = 1.0
        assert_close(dx, directional_difference(final, [x0, 1.5], [unit, None]), rtol=1e-8)
        expected = x0.copy()
        square_in_place(expected, 1.5)
        np.testing.assert_array_equal(x, expected)


def test_autodiff_forward_scalars_active_is_tangent_one_duplicated_is_given_tangent():
    x = np.array([0.2, 0.4, -0.9])
    d = differentiate(weighted_sines)
    by_active = d.autodiff(Const(x), Active(2.0), Const(3), mode="forward")
    by_duplicated = d.autodiff(Const(x), Duplicated(2.0, 0.5), Const(3), mode="forward")
    assert_close(by_active, np.sum(np.sin(x)), rtol=1e-13)
    assert_close(by_duplicated, 0.5 * np.sum(np.sin(x)), rtol=1e-13)


def test_autodiff_forward_does_not_leak_shadow_allocations():
    script = textwrap.dedent("""
        import math, numpy as np, numba
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate

        @numba.njit
        def temporaries_in_loop(x):
            s = 0.0
            for k in range(4):
                t = np.empty(x.shape[0])
                for i in range(x.shape[0]):
                    t[i] = math.exp(x[i]) * (k + 1)
                u = t.copy()
                s += np.sum(u * x)
            return s

        d = differentiate(temporaries_in_loop)
        x = np.linspace(-1.0, 1.0, 50)
        d.autodiff(Duplicated(x, np.ones(50)), mode="forward")
        d.jvp((x,), (np.ones((4, 50)),), width=4)
        before = rtsys.get_allocation_stats()
        for _ in range(10_000):
            d.autodiff(Duplicated(x, np.ones(50)), mode="forward")
        for _ in range(1_000):
            d.jvp((x,), (np.ones((4, 50)),), width=4)
        after = rtsys.get_allocation_stats()
        allocated, freed = after.mi_alloc - before.mi_alloc, after.mi_free - before.mi_free
        assert allocated >= 10_000 * 8, allocated         # the shadows are really NRT allocations
        assert allocated == freed, (allocated, freed)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_autodiff_forward_with_allocations_matches_reverse():
    x = np.linspace(-1.0, 1.0, 9)
    tx = np.cos(np.arange(9.0))
    d = differentiate(temporaries_in_loop)
    forward = d.autodiff(Duplicated(x.copy(), tx.copy()), mode="forward")
    (gradient,) = d.grad(x)
    assert_close(forward, gradient @ tx, rtol=1e-12)


# ---------------------------------------------------------------- jacobian


def test_jacobian_of_scalar_function_is_the_gradient_in_both_modes():
    x = np.array([0.3, -1.1, 0.7, 2.0])
    d = differentiate(weighted_sines)
    gradient_x, gradient_a, _ = d.grad(x, 0.9, 4)
    for mode in ("auto", "forward", "reverse"):
        jacobian = d.jacobian(x, 0.9, 4, mode=mode)
        assert jacobian.shape == (1, 5)
        assert_close(jacobian[0], np.append(gradient_x, gradient_a), rtol=1e-12)
    assert_close(d.jacobian(x, 0.9, 4, wrt=1), [[gradient_a]], rtol=1e-12)
    # One output, five inputs: "auto" takes reverse mode.
    automatic = differentiate(fresh_dispatcher(weighted_sines))
    automatic.jacobian(x, 0.9, 4)
    assert automatic._gradients and not automatic._tangents
    np.testing.assert_array_equal(x, [0.3, -1.1, 0.7, 2.0])


def test_jacobian_of_output_array_kernel_matches_finite_differences():
    x = np.array([0.3, -1.1, 0.7])
    d = differentiate(smoothed_output)
    def outputs(x, c):
        out = np.zeros(3)
        smoothed_output(out, x, c)
        return out
    expected = np.column_stack([directional_difference(outputs, [x, 0.6], [unit, None]) for unit in np.eye(3)])
    expected = np.column_stack([expected, directional_difference(outputs, [x, 0.6], [None, 1.0])])
    for mode in ("forward", "reverse"):
        assert_close(d.jacobian(np.zeros(3), x, 0.6, wrt=(1, 2), mode=mode), expected, rtol=1e-7)
    # One input, three outputs: "auto" takes forward mode, and compiles nothing for reverse.
    automatic = differentiate(fresh_dispatcher(smoothed_output))
    assert_close(automatic.jacobian(np.zeros(3), x, 0.6, wrt=2), expected[:, 3:], rtol=1e-7)
    assert automatic._tangents and not automatic._gradients


def test_bundle_adjustment_jacobian_forward_equals_reverse():
    rng = np.random.default_rng(4)
    args = ba_problem(rng)
    d = differentiate(ba_residuals)
    assert d.written_arguments(args) == {5, 6}
    forward = d.jacobian(*args, wrt=(0, 1, 2), mode="forward")
    reverse = d.jacobian(*args, wrt=(0, 1, 2), mode="reverse")
    rows, columns = 2 * 9 + 9, 3 * 11 + 5 * 3 + 9
    assert forward.shape == reverse.shape == (rows, columns)
    assert np.count_nonzero(forward) > 100
    np.testing.assert_allclose(forward, reverse, rtol=1e-10, atol=1e-12)
    # A few columns against finite differences, to rule out a shared mistake.
    def residuals(cams, x, w):
        outputs = copies(args)
        outputs[:3] = cams, x, w
        ba_residuals(*outputs)
        return np.concatenate([outputs[5].ravel(), outputs[6]])
    sizes = [a.size for a in args[:3]]
    for column in (0, 4, 9, 35, columns - 1):
        tangents = [np.zeros(a.shape) for a in args[:3]]
        owner = int(np.searchsorted(np.cumsum(sizes), column, side="right"))
        tangents[owner].flat[column - sum(sizes[:owner])] = 1.0
        assert_close(forward[:, column], directional_difference(residuals, args[:3], tangents), rtol=1e-6)


@pytest.mark.skipif(adbench_dir() is None, reason="ADBench reference data not found")
def test_bundle_adjustment_forward_jacobian_matches_adbench_reference():
    """ADBench's BA Jacobian (its non-zeros, row by row) from forward mode, ADBench's tolerance."""
    instance = read_ba(adbench_dir() / "ba_test.txt")
    p = instance.w.size
    args = [instance.cams, instance.x, instance.w, instance.obs, instance.feats, np.zeros((p, 2)), np.zeros(p)]
    jacobian = differentiate(ba_residuals).jacobian(*args, wrt=(0, 1, 2), mode="forward")
    assert jacobian.shape == (30, 62)
    n, m = instance.cams.shape[0], instance.x.shape[0]
    pattern = []
    for i in range(p):
        camera, point = instance.obs[i]
        columns = [*range(11 * camera, 11 * camera + 11),
                   *range(11 * n + 3 * point, 11 * n + 3 * point + 3), 11 * n + 3 * m + i]
        pattern += [columns, columns]
    pattern += [[11 * n + 3 * m + i] for i in range(p)]
    non_zeros = np.concatenate([jacobian[row, columns] for row, columns in enumerate(pattern)])
    expected = read_values(adbench_dir() / "ba_test_jacobian_values.txt")
    assert np.all(np.abs(non_zeros - expected) <= 1e-8 * np.maximum(1.0, np.abs(expected)))
    assert np.count_nonzero(jacobian) == np.count_nonzero(non_zeros)      # nothing off the pattern


def test_jacobian_rejects_non_float_wrt():
    with pytest.raises(TypeError, match="'n'"):
        differentiate(weighted_sines).jacobian(np.ones(3), 1.0, 3, wrt=2)


# ---------------------------------------------------------------- enzpy emit --mode forward


def test_emit_mode_forward_writes_the_tangent_function(tmp_path, capsys):
    kernel = tmp_path / "kernels.py"
    kernel.write_text(textwrap.dedent("""
        import math
        def energy(x, a):
            s = 0.0
            for i in range(x.shape[0]):
                s += a * math.sin(x[i])
            return s
    """))
    output = tmp_path / "energy_forward.ll"
    status = main(["emit", f"{kernel}:energy", "--sig", "float64(float64[::1], float64)", "--mode", "forward",
                   "-o", str(output)])
    assert status == 0, capsys.readouterr().err
    text = output.read_text()
    import llvmlite.binding as llvm
    llvm.parse_assembly(text).verify()
    header = next(line for line in text.splitlines() if line.startswith("define i32 @enzpy.forward."))
    assert "ptr %shadow.0.arg.x.4" in header and "double %tangent.0.arg.a" in header
    assert "ptr %return.tangents" in header


def test_emit_mode_forward_with_width_repeats_each_derivative_parameter(tmp_path, capsys):
    kernel = tmp_path / "kernels.py"
    kernel.write_text("def scaled_sum(x, a):\n    s = 0.0\n    for i in range(x.shape[0]):\n"
                      "        s += a * x[i]\n    return s\n")
    output = tmp_path / "width4.ll"
    status = main(["emit", f"{kernel}:scaled_sum", "--sig", "float64(float64[::1], float64)", "--mode", "forward",
                   "--width", "4", "-o", str(output)])
    assert status == 0, capsys.readouterr().err
    header = next(line for line in output.read_text().splitlines() if line.startswith("define i32 @enzpy.forward"))
    for lane in range(4):
        assert f"ptr %shadow.{lane}.arg.x.4" in header and f"double %tangent.{lane}.arg.a" in header
    assert main(["emit", f"{kernel}:scaled_sum", "--sig", "float64(float64[::1], float64)", "--mode", "reverse",
                 "--width", "4"]) == 2
    assert "--width is for --mode forward" in capsys.readouterr().err
