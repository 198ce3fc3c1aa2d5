"""enzpy.jax.function: kernels as JAX functions, forward mode for jax.jvp, reverse mode for jax.grad.

Checked against JAX's own gradient checker (check_grads, both modes), 5-point finite
differences, the forward/reverse identity <J t, c> = <t, J^T c>, and under jit, vmap, float32,
integer arguments, kernels that write their arguments, and a small training loop.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason='enzpy.jax needs JAX: pip install "enzpy[jax]"')
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import enzpy.jax  # noqa: E402
from enzpy import differentiate  # noqa: E402
from enzpy.interop import jax as interop_jax  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def float64():
    """float64 as numba computes (put back afterwards: other test modules share the process)."""
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


# ---------------------------------------------------------------- kernels

def energy(x, a, n):
    s = 0.0
    for i in range(n):
        s += a * x[i] * x[i] + np.sin(x[i])
    return s


def affine(a, x, y):
    return a * x + np.sin(y)


def moments(x, y):
    return x * y, np.sum(x * x) + 2.0 * y[0]


def counted(x, n):
    """A tuple with an integer leaf: it has no derivative."""
    return x * 3.0, n * 2


def gather(x, indices):
    s = 0.0
    for i in range(indices.shape[0]):
        s += x[indices[i]] ** 3
    return s


def overwrite(x):
    x[0] = 3.0 * x[0]
    return np.sum(x * x)


def predict(w, b, features):
    out = np.empty(features.shape[0])
    for i in range(features.shape[0]):
        s = b
        for j in range(features.shape[1]):
            s += features[i, j] * w[j]
        out[i] = np.tanh(s)
    return out


def tile(x, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = x[i % x.shape[0]] * 2.0
    return out


def nothing(x):
    x[0] = 1.0


def random_array(shape, seed=0, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(dtype))


def five_point(function, x, direction, step=1e-3):
    """The directional derivative of `function` at x along `direction`, 5-point central differences."""
    def at(t):
        return np.asarray(function(x + t * direction))
    return (-at(2 * step) + 8 * at(step) - 8 * at(-step) + at(-2 * step)) / (12 * step)


# ---------------------------------------------------------------- JAX's gradient checker

def test_check_grads_scalar_loop_kernel():
    f = enzpy.jax.function(energy)
    check_grads(lambda x, a: f(x, a, 5), (random_array(5), 0.7), order=1, modes=("fwd", "rev"))


def test_check_grads_array_result():
    f = enzpy.jax.function(affine)
    check_grads(f, (1.3, random_array(6, 1), random_array(6, 2)), order=1, modes=("fwd", "rev"))


def test_check_grads_tuple_result():
    f = enzpy.jax.function(moments)
    check_grads(f, (random_array(4, 3), random_array(4, 4)), order=1, modes=("fwd", "rev"))


def test_check_grads_with_an_integer_argument():
    indices = jnp.array([0, 2, 2, 3])
    f = enzpy.jax.function(gather)
    check_grads(lambda x: f(x, indices), (random_array(4, 5),), order=1, modes=("fwd", "rev"))
    g = enzpy.jax.function(counted)
    check_grads(lambda x: g(x, 3)[0], (random_array(3, 6),), order=1, modes=("fwd", "rev"))


# ---------------------------------------------------------------- integers: float0 and symbolic zeros

def test_integer_arguments_and_results_get_no_tangent():
    x, indices = random_array(4, 7), jnp.array([1, 1, 3])
    f = enzpy.jax.function(gather)
    value, pullback = jax.vjp(f, x, indices)
    gradient_x, gradient_indices = pullback(jnp.ones(()))
    assert gradient_indices.dtype == jax.dtypes.float0 and gradient_indices.shape == (3,)
    expected = np.zeros(4)
    np.add.at(expected, np.asarray(indices), 3 * np.asarray(x)[np.asarray(indices)] ** 2)
    np.testing.assert_allclose(gradient_x, expected, rtol=1e-12)
    float0_tangent = np.zeros(indices.shape, dtype=jax.dtypes.float0)
    _, tangent = jax.jvp(f, (x, indices), (jnp.ones(4), float0_tangent))
    np.testing.assert_allclose(tangent, expected.sum(), rtol=1e-12)
    g = enzpy.jax.function(counted)
    (doubled, twice), (t_doubled, t_twice) = jax.jvp(lambda x: g(x, 4), (x,), (jnp.ones(4),))
    assert int(twice) == 8 and t_twice.dtype == jax.dtypes.float0
    np.testing.assert_allclose(t_doubled, 3.0 * np.ones(4))


def test_arguments_jax_does_not_differentiate_cost_nothing(monkeypatch):
    """jax.grad(argnums=0): the float scalar is Const for enzpy (a symbolic-zero tangent)."""
    kernel = differentiate(energy)
    seen = []
    original = kernel._reverse          # what autodiff and value_and_grad's general path both call
    monkeypatch.setattr(kernel, "_reverse", lambda annotated, **k: seen.append([type(x).__name__ for x in annotated])
                        or original(annotated, **k))
    f = enzpy.jax.function(kernel)
    x = random_array(3, 8)
    gradient = jax.grad(f)(x, 0.5, 3)
    np.testing.assert_allclose(gradient, 2 * 0.5 * np.asarray(x) + np.cos(np.asarray(x)), rtol=1e-12)
    assert seen == [["Duplicated", "Const", "Const"]]


# ---------------------------------------------------------------- jit, vmap

def test_jit_of_grad_and_value_and_grad():
    f = enzpy.jax.function(energy)
    x = random_array(8, 9)
    analytic = (2 * 0.25 * np.asarray(x) + np.cos(np.asarray(x)), float(np.sum(np.asarray(x) ** 2)))
    gradient = jax.jit(jax.grad(f, argnums=(0, 1)), static_argnums=2)(x, 0.25, 8)
    np.testing.assert_allclose(gradient[0], analytic[0], rtol=1e-12)
    np.testing.assert_allclose(gradient[1], analytic[1], rtol=1e-12)
    value, (gx, ga) = jax.jit(jax.value_and_grad(lambda x, a: f(x, a, 8), argnums=(0, 1)))(x, 0.25)
    np.testing.assert_allclose(value, energy(np.asarray(x), 0.25, 8), rtol=1e-12)
    np.testing.assert_allclose(gx, analytic[0], rtol=1e-12)


def test_vmap_of_values_and_gradients():
    f = enzpy.jax.function(affine)
    xs, y = random_array((5, 3), 10), random_array(3, 11)
    batched = jax.vmap(f, in_axes=(None, 0, None))(2.0, xs, y)
    np.testing.assert_allclose(batched, [affine(2.0, np.asarray(row), np.asarray(y)) for row in xs], rtol=1e-12)
    along_columns = jax.jit(jax.vmap(f, in_axes=(None, 1, None)))(2.0, xs.T, y)
    np.testing.assert_allclose(along_columns, batched, rtol=1e-12)

    g = enzpy.jax.function(energy)
    per_row = jax.jit(jax.vmap(jax.grad(g, argnums=(0, 1)), in_axes=(0, None, None)), static_argnums=2)(xs, 0.5, 3)
    for row, gx, ga in zip(xs, *per_row):
        single = jax.grad(g, argnums=(0, 1))(row, 0.5, 3)
        np.testing.assert_allclose(gx, single[0], rtol=1e-12)
        np.testing.assert_allclose(ga, single[1], rtol=1e-12)
    # vmap inside grad (the map's own transpose), and scalar a batched too
    total = jax.grad(lambda xs, a: jnp.sum(jax.vmap(g, in_axes=(0, 0, None))(xs, a, 3)), argnums=(0, 1))
    gx, ga = total(xs, jnp.full(5, 0.5))
    np.testing.assert_allclose(gx, per_row[0], rtol=1e-12)
    np.testing.assert_allclose(ga, per_row[1], rtol=1e-12)


def test_jacobians_both_ways():
    f = enzpy.jax.function(affine)
    x, y = random_array(4, 12), random_array(4, 13)
    forward = jax.jacfwd(f, argnums=(1, 2))(1.5, x, y)
    reverse = jax.jit(jax.jacrev(f, argnums=(1, 2)))(1.5, x, y)
    np.testing.assert_allclose(forward[0], 1.5 * np.eye(4), rtol=1e-12)
    np.testing.assert_allclose(forward[1], np.diag(np.cos(np.asarray(y))), rtol=1e-12)
    for a, b in zip(forward, reverse):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ---------------------------------------------------------------- against finite differences and itself

def test_against_five_point_finite_differences():
    f = enzpy.jax.function(energy)
    x = random_array(6, 14)
    gradient_x, gradient_a = jax.grad(f, argnums=(0, 1))(x, 0.8, 6)
    for i in range(6):
        unit = jnp.zeros(6).at[i].set(1.0)
        np.testing.assert_allclose(gradient_x[i], five_point(lambda z: f(z, 0.8, 6), x, unit), rtol=1e-8)
    np.testing.assert_allclose(gradient_a, five_point(lambda a: f(x, a, 6), 0.8, 1.0), rtol=1e-8)
    g = enzpy.jax.function(moments)
    y, direction = random_array(6, 15), random_array(6, 16)
    _, (t_product, t_sum) = jax.jvp(lambda x: g(x, y), (x,), (direction,))
    expected_product, expected_sum = five_point(lambda z: np.concatenate([np.ravel(v) for v in g(z, y)]), x, direction)[:6], \
        five_point(lambda z: g(z, y)[1], x, direction)
    np.testing.assert_allclose(t_product, expected_product, rtol=1e-8)
    np.testing.assert_allclose(t_sum, expected_sum, rtol=1e-8)


def test_forward_and_reverse_agree():
    """<J t, c> = <t, J^T c>: jax.jvp runs enzpy's forward mode, jax.vjp its reverse mode."""
    f = enzpy.jax.function(moments)
    primals = (random_array(7, 17), random_array(7, 18))
    tangents = (random_array(7, 19), random_array(7, 20))
    cotangents = (random_array(7, 21), jnp.asarray(0.37))
    _, jt = jax.jvp(f, primals, tangents)
    _, pullback = jax.vjp(f, *primals)
    jtc = pullback(cotangents)
    left = sum(float(jnp.vdot(a, b)) for a, b in zip(jt, cotangents))
    right = sum(float(jnp.vdot(a, b)) for a, b in zip(tangents, jtc))
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left))


def test_reverse_mode_for_grad_and_forward_mode_for_jvp(monkeypatch):
    """jax.grad of 10 inputs is one reverse call, not 10 forward columns; jax.jvp one forward call."""
    kernel = differentiate(energy)
    calls = {"jvp": 0, "value_and_grad": 0, "autodiff": 0}
    for name in calls:
        method = getattr(kernel, name)

        def counting(*args, _method=method, _name=name, **kwargs):
            calls[_name] += 1
            return _method(*args, **kwargs)
        monkeypatch.setattr(kernel, name, counting)
    f = enzpy.jax.function(kernel)
    x = random_array(10, 22)
    jax.jit(jax.grad(f, argnums=(0, 1)), static_argnums=2)(x, 0.5, 10)
    assert calls == {"jvp": 0, "value_and_grad": 1, "autodiff": 0}
    jax.jit(lambda x, t: jax.jvp(lambda z: f(z, 0.5, 10), (x,), (t,)))(x, x)
    assert calls == {"jvp": 1, "value_and_grad": 1, "autodiff": 0}


# ---------------------------------------------------------------- dtypes and arguments

def test_float32():
    f = enzpy.jax.function(affine)
    x, y = random_array(5, 23, np.float32), random_array(5, 24, np.float32)
    a = jnp.float32(0.5)
    assert f(a, x, y).dtype == jnp.float32
    gradient = jax.jit(jax.grad(lambda a, x, y: jnp.sum(f(a, x, y)), argnums=(0, 1, 2)))(a, x, y)
    assert [g.dtype for g in gradient] == [jnp.float32] * 3
    np.testing.assert_allclose(gradient[2], np.cos(np.asarray(y)), rtol=1e-6)
    check_grads(f, (a, x, y), order=1, modes=("fwd", "rev"), eps=1e-2)


def test_without_x64_results_come_back_in_float32():
    jax.config.update("jax_enable_x64", False)
    try:
        f = enzpy.jax.function(energy)      # s = 0.0 accumulates in float64 inside the kernel
        x = jnp.arange(3.0)
        value = f(x, 0.5, 3)
        assert x.dtype == jnp.float32 and value.dtype == jnp.float32
        gradient = jax.jit(jax.grad(f), static_argnums=2)(x, 0.5, 3)
        assert gradient.dtype == jnp.float32
        np.testing.assert_allclose(gradient, np.asarray(x) + np.cos(np.asarray(x)), rtol=1e-6)
    finally:
        jax.config.update("jax_enable_x64", True)


def test_python_floats_traced_or_constant():
    f = enzpy.jax.function(energy)
    x = random_array(4, 25)
    gradient_a = jax.grad(f, argnums=1)(x, 0.5, 4)
    np.testing.assert_allclose(gradient_a, float(np.sum(np.asarray(x) ** 2)), rtol=1e-12)
    constant = jax.jit(lambda x: f(x, 0.5, 4))(x)
    traced = jax.jit(f, static_argnums=2)(x, 0.5, 4)
    np.testing.assert_allclose(constant, traced, rtol=1e-15)
    np.testing.assert_allclose(f(np.asarray(x), np.float64(0.5), 4), traced, rtol=1e-15)


def test_kernel_writing_its_argument_sees_a_copy():
    f = enzpy.jax.function(overwrite)
    x = random_array(4, 26)
    before = np.array(x)
    value, gradient = jax.jit(jax.value_and_grad(f))(x)
    np.testing.assert_array_equal(np.asarray(x), before)
    np.testing.assert_allclose(value, 9 * before[0] ** 2 + np.sum(before[1:] ** 2), rtol=1e-12)
    np.testing.assert_allclose(gradient, np.concatenate([[18 * before[0]], 2 * before[1:]]), rtol=1e-12)
    _, tangent = jax.jvp(f, (x,), (jnp.ones(4),))
    np.testing.assert_allclose(tangent, np.sum(gradient), rtol=1e-12)
    numpy_input = np.array(before)
    f(numpy_input)
    np.testing.assert_array_equal(numpy_input, before)


def test_one_array_passed_twice():
    """XLA may hand the callback one buffer twice; JAX's two arguments still get their own derivatives."""
    f = enzpy.jax.function(affine)
    x = random_array(5, 27)
    both = jax.jit(jax.grad(lambda x: jnp.sum(f(2.0, x, x))))(x)
    np.testing.assert_allclose(both, 2.0 + np.cos(np.asarray(x)), rtol=1e-12)
    separately = jax.jit(jax.grad(lambda x, y: jnp.sum(f(2.0, x, y)), argnums=(0, 1)))(x, x)
    np.testing.assert_allclose(separately[0], 2.0 * np.ones(5), rtol=1e-12)
    np.testing.assert_allclose(separately[1], np.cos(np.asarray(x)), rtol=1e-12)


# ---------------------------------------------------------------- a training loop

def test_gradient_descent_lowers_the_loss():
    model = enzpy.jax.function(predict)
    features = random_array((32, 3), 28)
    targets = jnp.tanh(features @ jnp.array([0.5, -1.0, 2.0]) + 0.3)

    def loss(parameters):
        w, b = parameters
        return jnp.mean((model(w, b, features) - targets) ** 2)

    @jax.jit
    def step(parameters):
        value, (gw, gb) = jax.value_and_grad(loss)(parameters)
        w, b = parameters
        return (w - 0.5 * gw, b - 0.5 * gb), value

    parameters = (jnp.zeros(3), jnp.asarray(0.0))
    losses = []
    for _ in range(30):
        parameters, value = step(parameters)
        losses.append(float(value))
    assert losses[-1] < 0.2 * losses[0]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(losses, losses[1:]))


# ---------------------------------------------------------------- limits, errors, fallbacks

def test_second_derivatives_are_refused():
    f = enzpy.jax.function(energy)
    with pytest.raises(NotImplementedError, match="first derivatives only"):
        jax.hessian(lambda x: f(x, 0.5, 3))(random_array(3, 29))
    with pytest.raises(NotImplementedError, match="first derivatives only"):
        jax.jvp(jax.grad(lambda x: f(x, 0.5, 3)), (random_array(3, 29),), (jnp.ones(3),))


def test_a_kernel_without_result_is_refused():
    with pytest.raises(TypeError, match="returns nothing"):
        enzpy.jax.function(nothing)(jnp.ones(2))


def test_result_shape_from_a_traced_integer():
    x = jnp.arange(3.0)
    expected = 2.0 * np.array([0, 1, 2, 0, 1])
    f = enzpy.jax.function(tile)
    np.testing.assert_allclose(jax.jit(lambda x: f(x, 5))(x), expected)         # a Python int: static
    np.testing.assert_allclose(jax.jit(f, static_argnums=1)(x, 5), expected)
    with pytest.raises(ValueError, match="depends on the value of the traced integer argument"):
        jax.jit(f)(x, 5)                                                         # traced: unknown here
    given = enzpy.jax.function(tile, result_shape=jax.ShapeDtypeStruct((5,), jnp.float64))
    np.testing.assert_allclose(jax.jit(given)(x, 5), expected)
    wrong = enzpy.jax.function(tile, result_shape=jax.ShapeDtypeStruct((4,), jnp.float64))
    with pytest.raises(Exception, match="result_shape"):
        jax.block_until_ready(jax.jit(wrong)(x, 5))


def test_pure_callback_lowering_gives_the_same_derivatives():
    f = enzpy.jax.function(affine)
    x, y = random_array(4, 30), random_array(4, 31)
    interop_jax.use_host_callback("pure_callback")
    try:
        through_public = jax.jit(jax.grad(lambda a, x, y: jnp.sum(f(a, x, y)), argnums=(0, 1, 2)))(1.5, x, y)
    finally:
        interop_jax.use_host_callback()
    expected = jax.grad(lambda a, x, y: jnp.sum(f(a, x, y)), argnums=(0, 1, 2))(1.5, x, y)
    for a, b in zip(through_public, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_decorator_and_differentiated_kernels():
    @enzpy.jax.function
    def square_sum(x):
        return np.sum(x * x)

    assert square_sum.__name__ == "square_sum" and isinstance(square_sum.kernel, enzpy.api.Differentiable)
    np.testing.assert_allclose(jax.grad(square_sum)(jnp.arange(3.0)), [0.0, 2.0, 4.0])
    kernel = differentiate(affine)
    assert enzpy.jax.function(kernel).kernel is kernel


def test_import_enzpy_does_not_import_jax_and_enzpy_jax_says_how_to_install():
    code = ("import sys, enzpy\n"
            "assert 'jax' not in sys.modules, 'import enzpy imported jax'\n"
            "sys.modules['jax'] = None\n"
            "try:\n"
            "    import enzpy.jax\n"
            "except ImportError as error:\n"
            "    assert 'pip install \"enzpy[jax]\"' in str(error), error\n"
            "else:\n"
            "    raise AssertionError('no ImportError')\n")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


def test_docstring_examples():
    for module in (enzpy.jax, interop_jax):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, module.__name__
