"""Kernels round-tripped through enzpy's IR and JIT behave like numba's own dispatcher."""

import numba
import numpy as np
import pytest

from enzpy.driver import jit_kernel


def weighted_sum_1d(x, scale):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * (i + 1)
        x[i] = x[i] * scale
    return total


def weighted_sum_2d(a):
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            total += a[i, j] * (i - 2 * j)
            a[i, j] += i * j
    return total


def weighted_sum_3d(a):
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                total += a[i, j, k] * (i + 2 * j + 3 * k)
                a[i, j, k] -= 1.0
    return total


def first_element(x, count):
    return x[0] + count


def axpy_in_place(y, alpha, x):
    for i in range(y.shape[0]):
        y[i] += alpha * x[i]


def raise_static(x):
    if x > 0:
        raise ValueError("bad", 3)
    return x


def raise_with_runtime_values(x, y):
    if x > 0:
        raise ValueError("bad", x, y > 1.0, y)
    return x


def floor_divide(a, b):
    return a // b


def remainder(a, b):
    return a % b


def multiply_add(a, b):
    return a * b + b


def doubled(a):
    return a * 2


def both_true(a, b):
    return a and not b


def greater_than_half(a):
    return a > 0.5


def jit_both_stages(function, **how):
    return [jit_kernel(function, stage=stage, **how) for stage in ("raw", "optimized")]


def assert_same_as_numba(kernel, make_arguments):
    """Call enzpy and numba on identical fresh arguments; compare results and mutations."""
    enzpy_arguments, numba_arguments = make_arguments(), make_arguments()
    enzpy_result = kernel(*enzpy_arguments)
    numba_result = kernel.captured.dispatcher(*numba_arguments)
    assert type(enzpy_result) is type(numba_result)
    if isinstance(numba_result, float):
        assert enzpy_result == pytest.approx(numba_result, rel=1e-12)
    else:
        assert enzpy_result == numba_result
    for ours, theirs in zip(enzpy_arguments, numba_arguments):
        if isinstance(theirs, np.ndarray):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    return enzpy_result, enzpy_arguments


@pytest.mark.parametrize("signature, function, arguments, result_type", [
    ("int32(int32, int32)", multiply_add, (np.int32(7), np.int32(-3)), int),
    ("int64(int64, int64)", multiply_add, (2**40, 3), int),
    ("float32(float32, float32)", multiply_add, (np.float32(1.25), np.float32(0.5)), float),
    ("float64(float64, float64)", multiply_add, (1.25, -0.75), float),
    ("boolean(boolean, boolean)", both_true, (True, False), bool),
    ("boolean(float64)", greater_than_half, (0.75,), bool),
    # numba casts to the declared return type (doubled infers int64 / float64).
    ("int32(int32)", doubled, (np.int32(21),), int),
    ("float32(float32)", doubled, (np.float32(1.5),), float),
])
def test_scalar_arguments_and_returns(signature, function, arguments, result_type):
    for kernel in jit_both_stages(function, signature=signature):
        result, _ = assert_same_as_numba(kernel, lambda: arguments)
        assert type(result) is result_type


def test_float64_and_bool_returns_are_python_objects():
    assert type(jit_kernel(multiply_add, signature="float64(float64, float64)")(1.0, 2.0)) is float
    assert jit_kernel(greater_than_half, signature="boolean(float64)")(0.25) is False


def test_compiled_from_argument_values():
    kernel = jit_kernel(multiply_add, args=(np.int32(1), np.int32(2)))
    assert kernel(np.int32(5), np.int32(6)) == 36
    vector_kernel = jit_kernel(weighted_sum_1d, args=(np.ones(4), 2.0))
    assert_same_as_numba(vector_kernel, lambda: (np.linspace(0.0, 1.0, 9), 3.0))


WEIGHTED_SUMS = {1: weighted_sum_1d, 2: weighted_sum_2d, 3: weighted_sum_3d}


@pytest.mark.parametrize("signature, make_arguments", [
    ("float64(float64[::1], float64)", lambda: (np.linspace(-1.0, 2.0, 17), 0.5)),
    ("float64(float64[:], float64)", lambda: (np.linspace(-1.0, 2.0, 34)[::-2], 0.5)),
    ("float64(float64[:], float64)", lambda: (np.arange(30.0)[3:27:3], -2.0)),
    ("float64(float64[::1, :])", lambda: (np.asfortranarray(np.arange(35.0).reshape(5, 7)),)),
    ("float64(float64[:, ::1])", lambda: (np.arange(35.0).reshape(5, 7),)),
    ("float64(float64[:, :])", lambda: (np.arange(48.0).reshape(6, 8)[::-1, 1::2],)),
    ("float64(float64[:, :, ::1])", lambda: (np.arange(60.0).reshape(3, 4, 5),)),
    ("float64(float64[::1, :, :])", lambda: (np.asfortranarray(np.arange(60.0).reshape(3, 4, 5)),)),
    ("float64(float64[:, :, :])", lambda: (np.arange(120.0).reshape(4, 6, 5)[::-1, ::2, 1:],)),
], ids=["1d-C", "1d-negative-stride", "1d-strided", "2d-F", "2d-C", "2d-negative-stride",
        "3d-C", "3d-F", "3d-negative-stride"])
def test_arrays_are_read_and_mutated_in_place(signature, make_arguments):
    array = make_arguments()[0]
    for kernel in jit_both_stages(WEIGHTED_SUMS[array.ndim], signature=signature):
        _, arguments = assert_same_as_numba(kernel, make_arguments)
        assert not np.array_equal(arguments[0], array), "the kernel must have mutated its argument"


def test_kernel_returning_none_mutates_its_argument():
    for kernel in jit_both_stages(axpy_in_place, signature="void(float64[::1], float64, float64[::1])"):
        y, x = np.arange(6.0), np.linspace(0.0, 1.0, 6)
        assert kernel(y, 2.0, x) is None
        np.testing.assert_allclose(y, np.arange(6.0) + 2.0 * np.linspace(0.0, 1.0, 6))
        assert_same_as_numba(kernel, lambda: (np.arange(6.0), -1.5, np.ones(6)))


@pytest.fixture(scope="module")
def contiguous_kernel():
    return jit_kernel(first_element, signature="float64(float64[::1], int64)")


@pytest.mark.parametrize("arguments, expected_text", [
    ((np.ones(3, np.float32), 1), ["argument 0", "'x'", "float32"]),
    ((np.ones((3, 2)), 1), ["argument 0", "'x'", "2-d"]),
    ((np.ones(6)[::2], 1), ["argument 0", "'x'", "C-contiguous"]),
    ((np.ones(3)[::-1], 1), ["argument 0", "'x'", "C-contiguous"]),
    ((np.ones(3),), ["2 arguments", "0 ('x')", "1 ('count')", "got 1"]),
    ((np.ones(3), 1, 2), ["2 arguments", "0 ('x')", "1 ('count')", "got 3"]),
    ((np.ones(3), np.ones(2)), ["argument 1", "'count'", "scalar"]),
    ((np.ones(3), "one"), ["argument 1", "'count'", "str"]),
    (([1.0, 2.0], 1), ["argument 0", "'x'", "numpy array"]),
])
def test_bad_arguments_raise_type_error_naming_the_argument(contiguous_kernel, arguments, expected_text):
    with pytest.raises(TypeError) as error:
        contiguous_kernel(*arguments)
    for text in expected_text:
        assert text in str(error.value)


def test_read_only_array_is_rejected_like_numba(contiguous_kernel):
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match=r"argument 0 \('x'\).*read-only"):
        contiguous_kernel(frozen, 1)
    with pytest.raises(TypeError):
        numba.njit("float64(float64[::1], int64)")(first_element)(frozen, 1)


def test_static_exception_is_re_raised_with_its_arguments():
    for kernel in jit_both_stages(raise_static, signature="int64(int64)"):
        assert kernel(-4) == -4
        with pytest.raises(ValueError) as error:
            kernel(1)
        assert error.value.args == ("bad", 3)


def test_exception_with_runtime_values_is_re_raised_with_them():
    for kernel in jit_both_stages(raise_with_runtime_values, signature="int64(int64, float64)"):
        with pytest.raises(ValueError) as ours:
            kernel(5, 2.5)
        with pytest.raises(ValueError) as numbas:
            kernel.captured.dispatcher(5, 2.5)
        assert ours.value.args == numbas.value.args == ("bad", 5, True, 2.5)
        assert kernel(-1, 0.0) == -1


@pytest.mark.parametrize("function, seven_by_two, message", [
    (floor_divide, -4, "division"), (remainder, 1, "modulo")])
def test_integer_division_by_zero(function, seven_by_two, message):
    for kernel in jit_both_stages(function, signature="int64(int64, int64)"):
        assert kernel(-7, 2) == seven_by_two
        with pytest.raises(ZeroDivisionError, match=message):
            kernel(1, 0)


def test_large_derivatives_get_the_lighter_post_ad_pipeline():
    """Above LARGE_DERIVATIVE_INSTRUCTIONS instructions O3's vectorizer and unroller cost more than
    they gain (passes/post_ad_large.pipeline); both pipelines exist and parse."""
    from enzpy.jit import LARGE_DERIVATIVE_INSTRUCTIONS, post_ad_pipeline
    from enzpy.passes import load_pipeline

    def module(instructions):
        body = "\n".join(f"  %v{i} = fadd double %x, 1.0" for i in range(instructions))
        return f"define double @f(double %x) {{\n  ; a comment line is no instruction\n{body}\n  ret double %x\n}}\n"
    assert post_ad_pipeline(module(10)) == "post_ad"
    assert post_ad_pipeline(module(LARGE_DERIVATIVE_INSTRUCTIONS - 1)) == "post_ad"
    assert post_ad_pipeline(module(LARGE_DERIVATIVE_INSTRUCTIONS + 1)) == "post_ad_large"
    for name in ("post_ad", "post_ad_large"):
        assert load_pipeline(name).passes
