"""`wrt=`: the arguments a derivative is taken with respect to (enzpy/selection.py)."""

import numpy as np
import pytest

from enzpy import differentiate


def scaled_energy(x, n, w, shift):
    # n takes part in float math: it is a constant unless passed as a float.
    total = 0.0
    for i in range(x.size):
        total += w[i] * np.sin(x[i] * n) + shift * x[i]
    return total


def moved(x, w, shift):
    return x * w + shift, np.sum(x * x)


X = np.linspace(-0.8, 0.9, 5)
W = np.linspace(0.5, 1.5, 5)


def test_without_wrt_every_float_argument_is_differentiated_and_integers_get_none():
    value, (dx, dn, dw, dshift) = differentiate(scaled_energy).value_and_grad(X, 3, W, 0.25)
    assert dn is None
    np.testing.assert_allclose(dx, W * 3 * np.cos(3 * X) + 0.25, rtol=1e-13)
    np.testing.assert_allclose(dw, np.sin(3 * X), rtol=1e-13)
    assert dshift == pytest.approx(np.sum(X), rel=1e-13)
    assert value == pytest.approx(np.sum(W * np.sin(3 * X) + 0.25 * X), rel=1e-13)


def test_wrt_one_position_returns_that_gradient_alone():
    kernel = differentiate(scaled_energy)
    value, dx = kernel.value_and_grad(X, 3, W, 0.25, wrt=0)
    np.testing.assert_allclose(dx, W * 3 * np.cos(3 * X) + 0.25, rtol=1e-13)
    assert kernel.grad(X, 3, W, 0.25, wrt=3) == pytest.approx(np.sum(X), rel=1e-13)
    dw, dshift = kernel.grad(X, 3, W, 0.25, wrt=(2, 3))
    np.testing.assert_allclose(dw, np.sin(3 * X), rtol=1e-13)
    assert dshift == pytest.approx(np.sum(X), rel=1e-13)


def test_an_integer_named_in_wrt_is_refused_by_name():
    with pytest.raises(TypeError, match=r"argument 1 \('n'\), which is an int.*pass a float"):
        differentiate(scaled_energy).value_and_grad(X, 3, W, 0.25, wrt=1)
    with pytest.raises(TypeError, match=r"argument 1 \('n'\)"):
        differentiate(scaled_energy).jacobian(X, 3, W, 0.25, wrt=(0, 1))
    with pytest.raises(ValueError, match="takes 4 arguments"):
        differentiate(scaled_energy).grad(X, 3, W, 0.25, wrt=7)


def test_the_integer_as_a_float_is_differentiated():
    dn = differentiate(scaled_energy).grad(X, 3.0, W, 0.25, wrt=1)
    assert dn == pytest.approx(np.sum(W * X * np.cos(3 * X)), rel=1e-13)


def test_vjp_with_wrt_for_scalar_and_tuple_results():
    _, pullback = differentiate(scaled_energy).vjp(X, 3, W, 0.25, wrt=2)
    np.testing.assert_allclose(pullback(2.0), 2.0 * np.sin(3 * X), rtol=1e-13)
    (result, norm), pullback = differentiate(moved).vjp(X, W, 0.5, wrt=(0, 2))
    cotangent = (np.linspace(1.0, 2.0, 5), 0.5)
    dx, dshift = pullback(cotangent)
    np.testing.assert_allclose(dx, cotangent[0] * W + 2 * X * 0.5, rtol=1e-13)
    assert dshift == pytest.approx(np.sum(cotangent[0]), rel=1e-13)
