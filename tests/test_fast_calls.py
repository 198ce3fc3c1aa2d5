"""`value_and_grad`'s compiled trampoline (`enzpy.fast_calls`) computes what the general path does.

From the third call with the same argument types, `value_and_grad` goes through a
numba-compiled trampoline; these tests compare it with the general path
(`autodiff` with fresh shadows, which never takes the trampoline), with finite
differences, and check every case that must fall back.
"""

import numba
import numpy as np
import pytest

import enzpy
from enzpy import Active, Const, Duplicated, fast_calls


@numba.njit
def weighted(a, b, c, d, w, n):
    s = 0.0
    for i in range(n):
        s += np.sin(a[i]) * b[i] * w + c[i] * d[i] * d[i]
    return s


@numba.njit
def single(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            raise ValueError("negative entry")
        s += w * x[i] * x[i]
    return s


def general(kernel, args):
    """value_and_grad's answer computed by autodiff, which never takes the trampoline."""
    annotated = [Duplicated(a, np.zeros_like(a)) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else Active(a) if isinstance(a, (float, np.floating)) else Const(a) for a in args]
    active = iter(enzpy.differentiate(kernel).autodiff(*annotated))
    return tuple(a.shadow if isinstance(a, Duplicated) else next(active) if isinstance(a, Active) else None
                 for a in annotated)


def spy(monkeypatch):
    """Record what each trampoline call answered (None: it fell back)."""
    answers = []
    original = fast_calls.value_and_grad

    def recording(fast, args):
        answers.append(original(fast, args))
        return answers[-1]

    monkeypatch.setattr(fast_calls, "value_and_grad", recording)
    return answers


def arguments(dtype=np.float64):
    rng = np.random.default_rng(3)
    return tuple(rng.uniform(0.1, 1.0, 9).astype(dtype) for _ in range(4)) + (dtype(0.7), 9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_trampoline_gives_the_general_paths_gradients(monkeypatch, dtype):
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(weighted)
    args = arguments(dtype)
    for _ in range(4):
        value, gradients = kernel.value_and_grad(*args)
    assert any(answer is not None for answer in answers), "the trampoline was never taken"
    expected = general(weighted, args)
    tolerance = 1e-15 if dtype == np.float64 else 1e-6
    assert value == pytest.approx(weighted(*args), rel=tolerance)
    for got, want in zip(gradients, expected):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
            assert np.asarray(got).dtype == np.asarray(want).dtype


def test_the_trampoline_matches_finite_differences(monkeypatch):
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(weighted)
    args = arguments()
    for _ in range(3):
        kernel.value_and_grad(*args)
    value, gradients = kernel.value_and_grad(*args)
    assert answers and answers[-1] is not None
    a, b, c, d, w, n = args
    direction = [np.random.default_rng(k).standard_normal(9) for k in range(4)] + [0.3]
    h = 1e-3

    def at(t):
        shifted = [x + t * v for x, v in zip(args[:4], direction[:4])] + [w + t * direction[4], n]
        return weighted(*shifted)

    finite = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    directional = sum(np.dot(g, v) for g, v in zip(gradients[:4], direction[:4])) + gradients[4] * direction[4]
    assert directional == pytest.approx(finite, rel=1e-9)


def test_each_call_gets_fresh_gradient_arrays():
    kernel = enzpy.differentiate(single)
    x = np.linspace(0.1, 1.0, 5)
    results = [kernel.value_and_grad(x, 2.0)[1][0] for _ in range(5)]
    assert len({id(r) for r in results}) == 5
    for r in results:
        np.testing.assert_allclose(r, 4.0 * x, rtol=1e-15)


def test_overlapping_arrays_fall_back_to_the_general_path(monkeypatch):
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(weighted)
    args = arguments()
    for _ in range(4):
        kernel.value_and_grad(*args)
    assert answers[-1] is not None
    shared = np.linspace(0.1, 1.0, 9)
    overlapping = (shared, shared, args[2], args[3], args[4], 9)
    count = len(answers)
    value, gradients = kernel.value_and_grad(*overlapping)
    assert len(answers) == count + 1 and answers[-1] is None   # taken, and it refused
    # d/dx of sin(x) x w: the two arguments are one array, one derivative per byte.
    np.testing.assert_allclose(gradients[0], (np.cos(shared) * shared + np.sin(shared)) * 0.7, rtol=1e-14)
    assert gradients[1] is gradients[0] or np.shares_memory(gradients[0], gradients[1])


def test_a_raising_kernel_raises_its_own_error_on_the_fast_path():
    kernel = enzpy.differentiate(single)
    x = np.linspace(0.1, 1.0, 5)
    for _ in range(4):
        kernel.value_and_grad(x, 2.0)
    assert any(type(f) is fast_calls.FastGradient for f in kernel._fast_gradients.values())
    with pytest.raises(ValueError, match="negative entry"):
        kernel.value_and_grad(-x, 2.0)


def test_strided_arrays_take_the_general_path(monkeypatch):
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(single)
    x = np.linspace(0.1, 1.0, 10)
    for _ in range(4):
        np.testing.assert_allclose(kernel.value_and_grad(x[::2], 2.0)[1][0], 4.0 * x[::2], rtol=1e-15)
    assert answers == []
    assert fast_calls.call_key((x[::2], 2.0)) is None
    assert fast_calls.call_key((x, 2**64)) is None            # numba would not type it int64
    assert fast_calls.call_key((x, 2.0), wrt=[0]) is None     # a list: the general path says what wrt may be


def test_wrt_gets_a_trampoline_of_its_own_with_the_rest_constant(monkeypatch):
    """wrt=1 and wrt=(0,) each get their own trampoline; the arguments they leave out get no shadow
    (Const), and the answers are the general path's, narrowed as `selection.selected` narrows."""
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(weighted)
    args = arguments()
    expected = general(weighted, args)
    for _ in range(5):
        value, dw = kernel.value_and_grad(*args, wrt=4)
        assert dw == pytest.approx(expected[4], rel=1e-14)
        value, (da, dd) = kernel.value_and_grad(*args, wrt=(0, 3))
        np.testing.assert_allclose(da, expected[0], rtol=1e-14)
        np.testing.assert_allclose(dd, expected[3], rtol=1e-14)
    assert len([a for a in answers if a is not None]) == 4          # calls 4 and 5 of each
    kinds = {key: fast.kinds for key, fast in kernel._fast_gradients.items() if type(fast) is fast_calls.FastGradient}
    # (The caches are the dispatcher's: other tests' trampolines for `weighted` may be there too.)
    assert {(Const, Const, Const, Const, Active, Const),
            (Duplicated, Const, Const, Duplicated, Const, Const)} <= set(kinds.values())
    with pytest.raises(TypeError, match="wrt names argument 5"):
        kernel.value_and_grad(*args, wrt=5)                        # an integer: refused as before


@numba.njit(parallel=True)
def parallel_sum(x):
    s = 0.0
    for i in numba.prange(x.shape[0]):
        s += x[i] * x[i]
    return s


def test_prange_kernels_keep_the_general_path():
    kernel = enzpy.differentiate(parallel_sum)
    x = np.linspace(0.0, 1.0, 64)
    for _ in range(4):
        np.testing.assert_allclose(kernel.value_and_grad(x)[1][0], 2.0 * x, rtol=1e-14)
    assert all(f is None or isinstance(f, int) for f in kernel._fast_gradients.values())


@numba.njit
def counts_then_raises(x, calls, w):
    calls[0] += 1                        # an integer array the kernel writes before it may raise
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] < 0.0:
            raise ValueError("negative entry")
        s += w * x[i] * x[i]
    return s


def test_a_raising_call_on_the_fast_path_runs_the_kernel_once(monkeypatch):
    answers = spy(monkeypatch)
    kernel = enzpy.differentiate(counts_then_raises)
    x, calls = np.linspace(0.1, 1.0, 5), np.zeros(1, dtype=np.int64)
    for _ in range(4):
        kernel.value_and_grad(x, calls, 2.0)
    assert answers and answers[-1] is not None
    before = calls[0]
    with pytest.raises(ValueError, match="negative entry"):
        kernel.value_and_grad(-x, calls, 2.0)
    assert calls[0] == before + 1
