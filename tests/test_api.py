"""The public API (`enzpy.api`): value_and_grad / grad / autodiff semantics, caching, errors, memory.

Every derivative is checked against an analytic formula or 5-point finite
differences of the plain numba kernel (run on copies, so in-place kernels are
differentiated with respect to their arguments' values on entry).
"""

import inspect
import math
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from llvmlite import ir as llvm_ir
from numba.core import types as numba_types
from numba.core.extending import intrinsic

import enzpy
from enzpy import Active, Const, DifferentiationError, Duplicated, DuplicatedNoNeed, differentiate
from enzpy.api import Differentiable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- helpers


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def finite_difference(function, args, index, step=1e-4):
    """5-point central differences of `function(*copies of args)` w.r.t. args[index] (float64)."""
    def at(shift):
        moved = _copy(args)
        moved[index] = moved[index] + shift
        return float(function(*moved))

    value = args[index]
    if not isinstance(value, np.ndarray):
        return (at(-2 * step) - 8 * at(-step) + 8 * at(step) - at(2 * step)) / (12 * step)
    gradient = np.zeros(value.shape)
    for position in np.ndindex(value.shape):
        unit = np.zeros(value.shape)
        unit[position] = 1.0
        gradient[position] = (at(-2 * step * unit) - 8 * at(-step * unit) + 8 * at(step * unit)
                              - at(2 * step * unit)) / (12 * step)
    return gradient


def assert_close(actual, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol)


def counting(differentiable):
    """Count the gradients `differentiable` compiles (wraps the instance's `_compile`)."""
    calls = []
    original = differentiable._compile

    def _compile(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    differentiable._compile = _compile
    return calls


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- kernels


@numba.njit
def sum_squares(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


@numba.njit
def mixed(x, k, a, n, flag, mask):
    """a * sum_i k[i] * x[i]^2 * (n if flag) over the entries where mask holds."""
    s = 0.0
    for i in range(x.shape[0]):
        if mask[i]:
            s += k[i] * x[i] * x[i]
    s *= a
    if flag:
        s *= n
    return s


@numba.njit
def inplace(x, a):
    """Overwrites x; the result depends on the values on entry nonlinearly."""
    for i in range(x.shape[0]):
        x[i] = a * np.sin(x[i]) * x[i]
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i] + x[i]
    return s


@numba.njit
def axpy_out(out, x, y, a):
    """An output buffer: out = a x + y^2 (no return value)."""
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i] * y[i]


@numba.njit
def out_and_return(out, x):
    """Writes out = exp(x) and returns sum(x^3)."""
    s = 0.0
    for i in range(x.shape[0]):
        out[i] = np.exp(x[i])
        s += x[i] ** 3
    return s


@numba.njit
def scalars(a, n, b, flag, c):
    s = a * 2.0 + 3.0 * b * b + c ** 3
    if flag:
        s *= n
    return s


@numba.njit
def with_temporary(x):
    t = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        t[i] = np.exp(x[i])
    s = 0.0
    for i in range(x.shape[0]):
        s += t[i] * x[i]
    return s


@numba.njit
def fill_sin(out, x, c):
    for i in range(x.shape[0]):
        out[i] = np.sin(x[i]) * c


@numba.njit
def scaled_sin(u, c):
    return math.sin(u) * c


@numba.njit
def calls_helpers(x, c):
    out = np.empty_like(x)
    fill_sin(out, x, c)
    s = 0.0
    for i in range(out.shape[0]):
        s += out[i] * out[i] + scaled_sin(x[i], c)
    return s


@numba.njit
def cube_sum_2d(a, w):
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += w[j] * a[i, j] ** 3
    return s


@numba.njit
def weighted_float32(x, a):
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += a * x[i] * x[i]
    return s


# ---------------------------------------------------------------- value_and_grad / grad


def test_value_and_grad_sum_of_squares():
    x = np.array([1.0, -2.0, 0.5, 3.0])
    d = differentiate(sum_squares)
    value, (gx,) = d.value_and_grad(x)
    assert value == sum_squares(x)
    assert isinstance(gx, np.ndarray) and gx.shape == x.shape and gx.dtype == x.dtype
    assert_close(gx, 2 * x)
    (gx2,) = d.grad(x)
    assert_close(gx2, 2 * x)
    assert d(x) == sum_squares(x)      # calling runs the primal


def test_grads_one_entry_per_argument_none_for_int_and_bool():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5)
    k = np.array([1, 2, 3, 4, 5])
    mask = np.array([True, False, True, True, False])
    args = (x, k, 1.5, 3, True, mask)
    value, grads = differentiate(mixed).value_and_grad(*args)
    assert_close(value, mixed(*args))
    assert len(grads) == 6
    gx, gk, ga, gn, gflag, gmask = grads
    assert gk is None and gn is None and gflag is None and gmask is None
    assert isinstance(ga, float)
    assert_close(gx, 1.5 * 3 * 2 * k * x * mask)
    assert_close(ga, finite_difference(mixed, list(args), 2), rtol=1e-7)


def test_inplace_mutation_matches_plain_call_and_grad_is_wrt_entry_values():
    x0 = np.array([0.3, -1.2, 2.0, 0.7])
    x, reference = x0.copy(), x0.copy()
    expected_value = inplace(reference, 1.3)
    value, (gx, ga) = differentiate(inplace).value_and_grad(x, 1.3)
    assert value == expected_value
    np.testing.assert_array_equal(x, reference)      # mutated exactly as a plain call would
    assert_close(gx, finite_difference(inplace, [x0, 1.3], 0), rtol=1e-7)
    assert_close(ga, finite_difference(inplace, [x0, 1.3], 1), rtol=1e-7)


def test_2d_arrays():
    rng = np.random.default_rng(1)
    a, w = rng.standard_normal((3, 4)), rng.standard_normal(4)
    ga, gw = differentiate(cube_sum_2d).grad(a, w)
    assert ga.shape == (3, 4) and gw.shape == (4,)
    assert_close(ga, 3 * w * a ** 2)
    assert_close(gw, (a ** 3).sum(axis=0))


def test_kernel_with_np_empty_inside():
    x = np.array([0.1, 0.7, -1.2, 2.0])
    (gx,) = differentiate(with_temporary).grad(x)
    assert_close(gx, np.exp(x) * (1 + x))


def test_calls_to_other_njit_functions():
    x, c = np.array([0.3, -0.8, 1.1]), 1.7
    value, (gx, gc) = differentiate(calls_helpers).value_and_grad(x, c)
    assert_close(value, calls_helpers(x, c))
    assert_close(gx, 2 * c * c * np.sin(x) * np.cos(x) + c * np.cos(x))
    assert_close(gc, 2 * c * np.sum(np.sin(x) ** 2) + np.sum(np.sin(x)))


def test_float32_kernel():
    x = np.array([0.5, 1.5, -2.0], dtype=np.float32)
    a = np.float32(0.75)
    value, (gx, ga) = differentiate(weighted_float32).value_and_grad(x, a)
    assert gx.dtype == np.float32 and gx.shape == x.shape
    assert isinstance(ga, float)
    assert_close(value, weighted_float32(x, a), rtol=1e-6)
    assert_close(gx, 2 * 0.75 * x.astype(np.float64), rtol=1e-6)
    assert_close(ga, np.sum(x.astype(np.float64) ** 2), rtol=1e-6)


def test_grad_of_strided_1d_view():
    base = np.arange(10.0) / 3
    view = base[::2]
    (gv,) = differentiate(sum_squares).grad(view)
    assert gv.shape == view.shape
    assert_close(gv, 2 * view)
    np.testing.assert_array_equal(base, np.arange(10.0) / 3)


def test_grad_of_strided_2d_view():
    base = np.arange(30.0).reshape(5, 6) / 10
    view, w = base[::2, ::3], np.array([1.0, -2.0])
    ga, gw = differentiate(cube_sum_2d).grad(view, w)
    assert ga.shape == view.shape
    assert_close(ga, 3 * w * view ** 2)
    assert_close(gw, (view ** 3).sum(axis=0))


def test_grad_of_transposed_2d_view():
    a = np.arange(12.0).reshape(3, 4) / 7
    w = np.array([0.5, -1.0, 2.0])
    ga, gw = differentiate(cube_sum_2d).grad(a.T, w)
    assert ga.shape == (4, 3)
    assert_close(ga, 3 * w * a.T ** 2)


def test_autodiff_strided_view_with_strided_shadow():
    base = np.arange(10.0) / 3
    shadow_base = np.ones(10)
    view, shadow = base[::2], shadow_base[::2]
    assert differentiate(sum_squares).autodiff(Duplicated(view, shadow)) == ()
    assert_close(shadow_base[::2], 1 + 2 * view)
    assert_close(shadow_base[1::2], np.ones(5))        # the entries between are not touched

    base2 = np.arange(30.0).reshape(5, 6) / 10
    shadow2 = np.zeros((5, 6))
    w = np.array([1.0, -2.0])
    differentiate(cube_sum_2d).autodiff(Duplicated(base2[::2, ::3], shadow2[::2, ::3]), Const(w))
    assert_close(shadow2[::2, ::3], 3 * w * base2[::2, ::3] ** 2)
    shadow2[::2, ::3] = 0.0
    assert not shadow2.any()


# ---------------------------------------------------------------- autodiff


def test_duplicated_accumulates_into_nonzero_shadow():
    x = np.array([1.0, -2.0, 0.5])
    dx = np.array([10.0, 20.0, 30.0])
    result = differentiate(sum_squares).autodiff(Duplicated(x, dx))
    assert result == ()
    assert_close(dx, [10.0, 20.0, 30.0] + 2 * x)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])


def test_active_derivatives_returned_in_argument_order():
    d = differentiate(scalars)
    # s = n (2a + 3b^2 + c^3)
    assert_close(d.autodiff(Active(1.0), Const(4), Active(2.0), Const(True), Active(0.5)),
                 (8.0, 48.0, 3.0))
    assert_close(d.autodiff(Active(1.0), 4, Const(2.0), True, Active(0.5)), (8.0, 3.0))
    assert_close(d.autodiff(Const(1.0), 4, Active(2.0), False, Const(0.5)), (12.0,))
    assert d.autodiff(Const(1.0), 4, Const(2.0), True, Const(0.5)) == ()


def test_seed_scales_every_derivative():
    d = differentiate(mixed)
    x, k, mask = np.array([0.5, -1.5, 2.0]), np.array([1, 2, 3]), np.array([True, True, False])
    dx1 = np.zeros(3)
    (ga1,) = d.autodiff(Duplicated(x, dx1), Const(k), Active(1.5), 2, True, mask)
    dx2 = np.zeros(3)
    (ga2,) = d.autodiff(Duplicated(x, dx2), Const(k), Active(1.5), 2, True, mask, seed=2.5)
    assert_close(dx2, 2.5 * dx1)
    assert_close(ga2, 2.5 * ga1)
    assert_close(dx1, 1.5 * 2 * 2 * k * x * mask)


def test_output_buffer_adjoint_is_consumed():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    out = np.zeros(3)
    dout = np.array([1.0, 10.0, 100.0])
    dx, dy = np.full(3, 0.25), np.zeros(3)
    (da,) = differentiate(axpy_out).autodiff(Duplicated(out, dout), Duplicated(x, dx), Duplicated(y, dy),
                                             Active(2.0))
    reference = np.zeros(3)
    axpy_out(reference, x, y, 2.0)
    np.testing.assert_array_equal(out, reference)
    # L = <dout, a x + y^2>
    assert_close(da, np.dot([1.0, 10.0, 100.0], x))
    assert_close(dx, 0.25 + 2.0 * np.array([1.0, 10.0, 100.0]))
    assert_close(dy, 2 * y * np.array([1.0, 10.0, 100.0]))
    assert not dout.any()        # consumed: out's values on entry do not influence anything


def test_seed_and_output_buffer_together():
    x = np.array([0.2, -0.4, 1.1])
    w = np.array([1.0, -2.0, 0.5])
    out, dout, dx = np.zeros(3), w.copy(), np.zeros(3)
    differentiate(out_and_return).autodiff(Duplicated(out, dout), Duplicated(x, dx), seed=2.5)
    # L = 2.5 sum(x^3) + <w, exp(x)>
    assert_close(dx, 2.5 * 3 * x ** 2 + w * np.exp(x))
    assert_close(out, np.exp(x))
    assert not dout.any()


def test_inplace_argument_shadow_is_adjoint_of_final_contents():
    x0 = np.array([0.3, -1.2, 2.0])
    w = np.array([1.0, -0.5, 2.0])
    x, dx = x0.copy(), w.copy()
    (da,) = differentiate(inplace).autodiff(Duplicated(x, dx), Active(1.3), seed=0.75)

    def objective(x, a):
        x = x.copy()
        return 0.75 * inplace(x, a) + np.dot(w, x)

    reference = x0.copy()
    inplace(reference, 1.3)
    np.testing.assert_array_equal(x, reference)
    assert_close(dx, finite_difference(objective, [x0, 1.3], 0), rtol=1e-7)
    assert_close(da, finite_difference(objective, [x0, 1.3], 1), rtol=1e-7)


def test_duplicated_no_need_gives_the_same_derivatives():
    x = np.array([0.2, -0.4, 1.1])
    d = differentiate(out_and_return)
    out1, dout1, dx1 = np.zeros(3), np.ones(3), np.zeros(3)
    d.autodiff(Duplicated(out1, dout1), Duplicated(x, dx1), seed=1.5)
    out2, dout2, dx2 = np.zeros(3), np.ones(3), np.zeros(3)
    assert d.autodiff(DuplicatedNoNeed(out2, dout2), DuplicatedNoNeed(x, dx2), seed=1.5) == ()
    assert_close(dx2, dx1)
    assert_close(dx2, 1.5 * 3 * x ** 2 + np.exp(x))
    np.testing.assert_array_equal(x, [0.2, -0.4, 1.1])


def test_const_array_gets_no_derivative():
    x, k = np.array([1.0, 2.0, 3.0]), np.array([1, 1, 1])
    mask = np.ones(3, dtype=np.bool_)
    (ga,) = differentiate(mixed).autodiff(Const(x), Const(k), Active(2.0), 1, False, mask)
    assert_close(ga, np.sum(x * x))
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def test_autodiff_rejects_other_modes():
    with pytest.raises(ValueError, match="'sideways'"):
        differentiate(sum_squares).autodiff(Duplicated(np.ones(2), np.zeros(2)), mode="sideways")


# ---------------------------------------------------------------- caching


def fresh_dispatcher(kernel):
    """A dispatcher of its own: compiled derivatives are shared per dispatcher, and these
    tests count what one Differentiable compiles."""
    return numba.njit(getattr(kernel, "py_func", kernel))


def test_gradients_are_cached_per_argument_types():
    d = differentiate(fresh_dispatcher(sum_squares))
    compiles = counting(d)
    d.grad(np.array([1.0, 2.0]))
    first = dict(d._gradients)
    (g,) = d.grad(np.array([3.0, 4.0, 5.0]))        # same types, other size and values
    assert_close(g, [6.0, 8.0, 10.0])
    assert len(compiles) == 1 and len(d._gradients) == 1
    assert all(d._gradients[key] is first[key] for key in first)
    d.autodiff(Duplicated(np.ones(4), np.zeros(4)))  # same types and activities as grad
    assert len(compiles) == 1

    (g32,) = d.grad(np.array([1.0, 2.0], dtype=np.float32))
    assert g32.dtype == np.float32
    assert len(compiles) == 2 and len(d._gradients) == 2
    d.grad(np.array([7.0], dtype=np.float32))
    assert len(compiles) == 2

    d.grad(np.arange(6.0)[::2].copy())
    assert len(compiles) == 2                        # contiguous float64 again: cached


def test_separate_differentiables_do_not_share_a_stale_cache():
    # A cached gradient must not be reused for a different activity pattern.
    d = differentiate(fresh_dispatcher(scalars))
    assert_close(d.autodiff(Active(1.0), 2, Active(2.0), True, Const(0.5)), (4.0, 24.0))
    assert_close(d.autodiff(Const(1.0), 2, Active(2.0), True, Active(0.5)), (24.0, 1.5))
    assert len(d._gradients) == 2


# ---------------------------------------------------------------- errors


def test_shadow_of_wrong_shape_names_the_argument_and_runs_nothing():
    x0 = np.array([0.3, -1.2, 2.0])
    d = differentiate(inplace)
    for _ in range(2):                 # before and after the gradient is compiled and cached
        x = x0.copy()
        bad = np.full(4, 7.0)
        with pytest.raises((ValueError, TypeError, DifferentiationError)) as info:
            d.autodiff(Duplicated(x, bad), Active(1.3))
        message = str(info.value)
        assert "argument 0" in message and "'x'" in message
        np.testing.assert_array_equal(x, x0)         # the primal did not run
        np.testing.assert_array_equal(bad, 7.0)
        d.autodiff(Duplicated(x0.copy(), np.zeros(3)), Active(1.3))

    x = np.zeros(3)
    with pytest.raises((ValueError, TypeError, DifferentiationError)) as info:
        differentiate(axpy_out).autodiff(Duplicated(np.zeros(3), np.zeros(3)), Duplicated(x, np.zeros((3, 1))),
                                         Const(np.ones(3)), Active(1.0))
    assert "argument 1" in str(info.value) and "'x'" in str(info.value)
    with pytest.raises((ValueError, TypeError, DifferentiationError)) as info:
        differentiate(axpy_out).autodiff(Duplicated(np.zeros(3), np.zeros(3)), Const(x),
                                         Duplicated(np.ones(3), np.zeros(3, dtype=np.float32)), Active(1.0))
    assert "argument 2" in str(info.value) and "'y'" in str(info.value)


def test_duplicated_on_integer_array_raises():
    k = np.array([1, 2, 3])
    x = np.array([1.0, 2.0, 3.0])
    mask = np.ones(3, dtype=np.bool_)
    d = differentiate(mixed)
    with pytest.raises(DifferentiationError, match="'k'"):
        d.autodiff(Duplicated(x, np.zeros(3)), Duplicated(k, np.zeros(3, dtype=np.int64)), Const(1.0), 1, True,
                   mask)
    with pytest.raises(DifferentiationError, match="'mask'"):
        d.autodiff(Duplicated(x, np.zeros(3)), Const(k), Const(1.0), 1, True,
                   Duplicated(mask, np.zeros(3, dtype=np.bool_)))
    np.testing.assert_array_equal(k, [1, 2, 3])
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def test_active_on_array_or_integer_raises():
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(DifferentiationError, match="'x'"):
        differentiate(sum_squares).autodiff(Active(x))
    with pytest.raises(DifferentiationError, match="'n'"):
        differentiate(scalars).autodiff(Active(1.0), Active(4), Const(2.0), True, Const(0.5))
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


@intrinsic
def canonicalize(typingctx, value):
    """llvm.canonicalize: a float operation enzpy has no rule for."""
    def codegen(context, builder, signature, args):
        double = llvm_ir.DoubleType()
        function = builder.module.declare_intrinsic("llvm.canonicalize", [double],
                                                    llvm_ir.FunctionType(double, [double]))
        return builder.call(function, args)
    return numba_types.float64(numba_types.float64), codegen


@numba.njit
def uses_canonicalize(x):
    s = 0.0
    for i in range(x.shape[0]):
        x[i] = x[i] * 2.0
        s += canonicalize(x[i] * x[i])  # unsupported-op
    return s


@numba.njit
def uses_complex_power(x):
    s = 0.0
    for i in range(x.shape[0]):
        z = complex(x[i], 0.5)
        s += (z ** complex(1.5, 0.25)).real  # unsupported-op
    return s


UNSUPPORTED = [(uses_canonicalize, "llvm.canonicalize"), (uses_complex_power, "numba_cpow")]


@pytest.mark.parametrize("kernel, operation", UNSUPPORTED, ids=["llvm.canonicalize", "numba_cpow"])
def test_unsupported_operation_raises_naming_operation_and_function(kernel, operation):
    x = np.array([0.5, 1.5])
    with pytest.raises(DifferentiationError) as info:
        differentiate(kernel).grad(x)
    message = str(info.value)
    assert operation in message
    assert kernel.__name__ in message
    lines, first = inspect.getsourcelines(kernel.py_func)
    line = first + next(i for i, text in enumerate(lines) if "# unsupported-op" in text)
    assert f"Python source {inspect.getsourcefile(kernel.py_func)}:{line}" in message
    np.testing.assert_array_equal(x, [0.5, 1.5])       # nothing ran


def test_missing_rule_message_says_not_implemented():
    with pytest.raises(DifferentiationError, match="not implemented"):
        differentiate(uses_canonicalize).grad(np.array([0.5, 1.5]))


@numba.njit
def bit_hack(x):
    # Reinterpreting a float's bits: not differentiable; must not give a silent zero.
    bits = np.float64(x[0]).view(np.int64)
    return np.int64(bits + 1).view(np.float64)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_float_through_integer_bits_raises(optimize):
    with pytest.raises(DifferentiationError, match=r"Python source .*test_api.py:\d+"):
        differentiate(bit_hack, optimize=optimize).grad(np.array([1.3]))


# ---------------------------------------------------------------- memory


def test_repeated_gradient_calls_do_not_grow_memory():
    d = differentiate(with_temporary)
    x = np.linspace(-1.0, 1.0, 1000)      # a leaked shadow of t alone would be 80 MB over 10,000 calls
    dx = np.zeros_like(x)
    for _ in range(300):
        d.grad(x)
        d.autodiff(Duplicated(x, dx))
    before = resident_bytes()
    for _ in range(10_000):
        d.grad(x)
    after_grad = resident_bytes()
    for _ in range(5_000):
        d.autodiff(Duplicated(x, dx))
    after_autodiff = resident_bytes()
    assert after_grad - before < 4 * 2 ** 20, f"RSS grew by {(after_grad - before) / 2 ** 20:.1f} MiB"
    assert after_autodiff - after_grad < 4 * 2 ** 20, \
        f"RSS grew by {(after_autodiff - after_grad) / 2 ** 20:.1f} MiB"
    assert_close(d.grad(x)[0], np.exp(x) * (1 + x))


# ---------------------------------------------------------------- decorator forms


@differentiate
def decorated_plain(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += np.sin(x[i])
    return s


@differentiate
@numba.njit
def decorated_njit(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] ** 3
    return s


def test_decorator_forms():
    x = np.array([0.1, -0.5, 2.0])
    assert isinstance(decorated_plain, enzpy.api.Differentiable)
    assert_close(decorated_plain(x), np.sum(np.sin(x)))
    assert_close(decorated_plain.grad(x)[0], np.cos(x))
    assert_close(decorated_njit.grad(x)[0], 3 * x ** 2)
    assert decorated_plain.__name__ == "decorated_plain"


OPTIMIZE_FALSE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from enzpy import Duplicated, differentiate

    @differentiate(optimize=False)
    def sum_squares(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * x[i]
        return s

    assert sum_squares.optimize is False
    x = np.array([1.0, -2.0, 0.5, 3.0])
    value, (gx,) = sum_squares.value_and_grad(x)
    assert value == 14.25, value
    np.testing.assert_allclose(gx, 2 * x, rtol=1e-12)
    dx = np.ones(4)
    sum_squares.autodiff(Duplicated(x, dx), seed=2.0)
    np.testing.assert_allclose(dx, 1 + 4 * x, rtol=1e-12)
    print("OK")
""")


def test_optimize_false_sum_of_squares_in_subprocess():
    # In a subprocess: a crash of the unoptimized path must not take pytest down.
    result = subprocess.run([sys.executable, "-c", OPTIMIZE_FALSE_SCRIPT], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), \
        f"exit status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_a_shadow_that_is_the_array_itself_is_refused_and_the_input_kept():
    @differentiate
    def square_in_place(y):
        total = 0.0
        for i in range(y.size):
            y[i] = y[i] * y[i]
            total += y[i]
        return total

    y = np.full(3, 2.0)
    for mode in ("reverse", "forward"):
        with pytest.raises(ValueError, match=r"argument 0 \('y'\): the shadow shares memory"):
            square_in_place.autodiff(Duplicated(y, y), mode=mode)
        with pytest.raises(ValueError, match="shares memory"):
            square_in_place.autodiff(Duplicated(y, y[::-1]), mode=mode)
    np.testing.assert_array_equal(y, np.full(3, 2.0))


def test_njit_code_calls_a_differentiated_kernel_like_the_numba_function():
    @differentiate
    def weighted_square_sum(x):
        total = 0.0
        for i in range(x.size):
            total += (i + 1.0) * x[i] * x[i]
        return total

    @numba.njit
    def caller(x):
        return 2.0 * weighted_square_sum(x)

    x = np.array([0.5, -1.0, 2.0])
    assert caller(x) == pytest.approx(2.0 * weighted_square_sum(x))
    # ... and what calls it differentiates too.
    value, (gradient,) = differentiate(caller.py_func).value_and_grad(x)
    np.testing.assert_allclose(gradient, 4.0 * np.arange(1.0, 4.0) * x, rtol=1e-14)


def test_the_main_job_says_plainly_that_the_derivatives_match():
    completed = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "examples",
                                                             "gradient.py")],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert sum(line.endswith("-> match") for line in lines) == 2, completed.stdout
    assert lines[-1] == "all derivatives match finite differences"


def sine_energy(x):
    return np.sum(np.sin(x) * x)


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain function", "njit dispatcher"])
def test_a_fresh_differentiate_of_the_same_kernel_compiles_nothing_again(monkeypatch, wrapped):
    kernel = numba.njit(lambda x: np.sum(np.sin(x) * x)) if wrapped else sine_energy
    x = np.linspace(0.0, 1.0, 7)
    first = differentiate(kernel).value_and_grad(x)

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")
    monkeypatch.setattr(Differentiable, "_compile", no_compiling)
    monkeypatch.setattr(Differentiable, "_compile_forward", no_compiling)
    again = differentiate(kernel).value_and_grad(x)
    assert again[0] == first[0]
    np.testing.assert_array_equal(again[1][0], first[1][0])
    with pytest.raises(AssertionError, match="compiled again"):
        differentiate(kernel, optimize=False).value_and_grad(x)     # other options: its own compile
