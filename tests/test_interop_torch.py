"""enzpy.torch.function: kernels as torch.autograd.Functions (gradcheck, finite differences,
float32, devices, what is copied and what is not computed, errors, and a trained nn.Module)."""

from __future__ import annotations

import doctest
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='enzpy.torch needs PyTorch (pip install -e ".[torch]")')

import enzpy  # noqa: E402
import enzpy.interop.torch as interop_torch  # noqa: E402
import enzpy.torch  # noqa: E402
from enzpy import differentiate  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def float64(values, requires_grad=True):
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def random64(*shape, seed=0, requires_grad=True):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, dtype=torch.float64, generator=generator).requires_grad_(requires_grad)


# ---------------------------------------------------------------- kernels

def weighted_loop(x, alpha, n):
    s = 0.0
    for i in range(n):
        s += alpha * np.sin(x[i]) * x[i]
    return s


def affine_sine(a, x, y):
    return a * x + np.sin(y)


def tuple_result(x, y):
    return x * y, (np.sum(x * x), x.shape[0]), np.cos(y)


def gather_scaled(x, indices, scale, offset):
    out = np.empty(indices.shape[0])
    for i in range(indices.shape[0]):
        out[i] = scale * x[indices[i]] + offset
    return out


def writes_its_arguments(x, work, marks):
    total = 0.0
    for i in range(x.shape[0]):
        work[i] = x[i] * x[i]
        x[i] = 3.0 * x[i]
        marks[i] = i + 1
        total += work[i] * x[i]
    return total


def returns_its_argument(x):
    return x


def returns_nothing(x, out):
    for i in range(x.shape[0]):
        out[i] = x[i]


def masked_sum(x, mask):
    s = 0.0
    for i in range(x.shape[0]):
        if mask[i]:
            s += x[i] * x[i]
    return s


def count_positive(x):
    n = 0
    for i in range(x.shape[0]):
        if x[i] > 0:
            n += 1
    return n


both_modes = pytest.mark.parametrize("gradient_in_forward", [True, False], ids=["eager", "lazy"])


# ---------------------------------------------------------------- gradcheck

@both_modes
def test_gradcheck_scalar_result_loop_kernel(gradient_in_forward):
    loss = enzpy.torch.function(weighted_loop, gradient_in_forward=gradient_in_forward)
    assert gradcheck(loss, (random64(6), float64(0.7), 6))


def test_gradcheck_array_result():
    kernel = enzpy.torch.function(affine_sine)
    assert gradcheck(kernel, (float64(1.3), random64(5, seed=1), random64(5, seed=2)))
    assert gradcheck(kernel, (float64(1.3), random64(3, 4, seed=1), random64(3, 4, seed=2)))


def test_gradcheck_tuple_result():
    kernel = enzpy.torch.function(tuple_result)

    def flat(x, y):             # gradcheck takes a flat tuple of float outputs
        product, (norm, _count), cosine = kernel(x, y)
        return product, norm, cosine

    assert gradcheck(flat, (random64(4, seed=3), random64(4, seed=4)))


def test_gradcheck_float_scalar_and_int_arguments():
    kernel = enzpy.torch.function(gather_scaled)
    indices = torch.tensor([0, 2, 2, 1, 3])
    assert gradcheck(kernel, (random64(4), indices, float64(0.5), float64(-1.5)))
    assert gradcheck(lambda x: kernel(x, indices, 2.0, 1), (random64(4),))       # Python float and int


@both_modes
def test_gradcheck_kernel_that_writes_into_its_arguments(gradient_in_forward):
    kernel = enzpy.torch.function(writes_its_arguments, gradient_in_forward=gradient_in_forward)
    marks = torch.zeros(5, dtype=torch.int64)
    assert gradcheck(kernel, (random64(5, seed=5), random64(5, seed=6), marks))


def test_gradcheck_non_contiguous_inputs():
    kernel = enzpy.torch.function(affine_sine)
    matrix = random64(4, 6)
    transposed, every_other = matrix.t(), random64(6, 8, seed=1)[:, ::2]
    assert not transposed.is_contiguous() and not every_other.is_contiguous()
    assert gradcheck(kernel, (float64(0.3), transposed, every_other))


# ---------------------------------------------------------------- values and gradients

def five_point(function, x: torch.Tensor, direction: torch.Tensor, step: float = 1e-4) -> float:
    """5-point central difference of the scalar function(x) along `direction`."""
    with torch.no_grad():
        values = [function(x + multiple * step * direction).item() for multiple in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def test_tuple_result_against_five_point_differences():
    kernel = enzpy.torch.function(tuple_result)
    y = random64(6, seed=8, requires_grad=False)
    weights = random64(6, seed=9, requires_grad=False)

    def loss(x):
        product, (norm, count), cosine = kernel(x, y)
        return (weights * product).sum() + 0.5 * norm + (cosine * x).sum() * count

    x = random64(6, seed=7)
    loss(x).backward()
    direction = random64(6, seed=10, requires_grad=False) - 0.5
    reference = five_point(loss, x.detach(), direction)
    assert (x.grad * direction).sum().item() == pytest.approx(reference, rel=1e-8, abs=1e-10)


def test_scalar_kernel_against_five_point_differences_and_the_numpy_api():
    kernel = enzpy.torch.function(weighted_loop)
    x = random64(8, seed=11)
    alpha = float64(1.7)
    value = kernel(x, alpha, 8)
    (3.0 * value).backward()
    expected_value, (grad_x, grad_alpha, _) = kernel.kernel.value_and_grad(x.detach().numpy().copy(), 1.7, 8)
    assert value.item() == pytest.approx(expected_value, rel=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * grad_x, rtol=1e-14)
    assert alpha.grad.item() == pytest.approx(3.0 * grad_alpha, rel=1e-14)
    direction = random64(8, seed=12, requires_grad=False)
    reference = five_point(lambda moved: 3.0 * kernel(moved, 1.7, 8), x.detach(), direction)
    assert (x.grad * direction).sum().item() == pytest.approx(reference, rel=1e-8)


def test_matches_torch_own_gradients_and_unused_outputs_get_no_cotangent():
    kernel = enzpy.torch.function(tuple_result)
    x, y = random64(5, seed=1), random64(5, seed=2)
    _, (norm, _), _ = kernel(x, y)            # only one output is used: autograd hands None for the rest
    norm.backward()
    torch.testing.assert_close(x.grad, 2 * x.detach(), rtol=1e-14, atol=0)
    assert y.grad is None or torch.count_nonzero(y.grad) == 0

    x2, y2 = random64(5, seed=1), random64(5, seed=2)
    product, (norm, count), cosine = kernel(x2, y2)
    assert count.dtype == torch.int64 and not count.requires_grad and count.item() == 5
    (product.sum() + cosine.sum()).backward()
    torch.testing.assert_close(x2.grad, y2.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(y2.grad, x2.detach() - torch.sin(y2.detach()), rtol=1e-14, atol=0)


def test_same_tensor_twice_and_overlapping_views_add_their_gradients():
    kernel = enzpy.torch.function(affine_sine)
    x = random64(6)
    kernel(2.0, x, x).sum().backward()                 # d/dx (2x + sin x)
    torch.testing.assert_close(x.grad, 2.0 + torch.cos(x.detach()), rtol=1e-14, atol=0)

    base = random64(8, seed=3)
    kernel(2.0, base[:5], base[3:]).sum().backward()
    expected = torch.zeros(8, dtype=torch.float64)
    expected[:5] += 2.0
    expected[3:] += torch.cos(base.detach()[3:])
    torch.testing.assert_close(base.grad, expected, rtol=1e-14, atol=0)


def test_gradient_through_torch_operations_before_and_after():
    kernel = enzpy.torch.function(weighted_loop)
    w = random64(4)
    loss = kernel(w * 2.0, 1.0, 4) ** 2
    loss.backward()
    x = (w * 2.0).detach().numpy()
    value, (grad_x, _, _) = kernel.kernel.value_and_grad(x.copy(), 1.0, 4)
    np.testing.assert_allclose(w.grad.numpy(), 2 * value * grad_x * 2.0, rtol=1e-13)


def test_bool_tensor_and_integer_results():
    masked = enzpy.torch.function(masked_sum)
    x = random64(5)
    mask = torch.tensor([True, False, True, True, False])
    masked(x, mask).backward()
    torch.testing.assert_close(x.grad, 2 * x.detach() * mask, rtol=1e-14, atol=0)

    counted = enzpy.torch.function(count_positive)(x - 0.5)
    assert counted.dtype == torch.int64 and not counted.requires_grad
    assert counted.item() == int((x.detach() > 0.5).sum())


@both_modes
def test_float32_tensors_get_float32_gradients(gradient_in_forward):
    loss = enzpy.torch.function(weighted_loop, gradient_in_forward=gradient_in_forward)
    x = torch.rand(6, requires_grad=True)
    alpha = torch.tensor(0.5, requires_grad=True)
    loss(x, alpha, 6).backward()
    assert x.grad.dtype == torch.float32 and alpha.grad.dtype == torch.float32
    x64 = x.detach().double()
    expected = 0.5 * (torch.sin(x64) + x64 * torch.cos(x64))
    torch.testing.assert_close(x.grad.double(), expected, rtol=1e-5, atol=1e-6)

    array = enzpy.torch.function(affine_sine)
    x32 = torch.rand(4, requires_grad=True)
    y32 = torch.rand(4, requires_grad=True)
    out = array(torch.tensor(2.0, requires_grad=True), x32, y32)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x32.grad.dtype == torch.float32 and y32.grad.dtype == torch.float32
    torch.testing.assert_close(y32.grad, torch.cos(y32.detach()))


def test_gradients_have_the_inputs_shapes_for_non_contiguous_inputs():
    kernel = enzpy.torch.function(affine_sine)
    matrix = random64(3, 5)
    kernel(1.5, matrix.t(), matrix.t()).sum().backward()
    assert matrix.grad.shape == (3, 5)
    torch.testing.assert_close(matrix.grad, 1.5 + torch.cos(matrix.detach()), rtol=1e-14, atol=0)


# ---------------------------------------------------------------- what is copied, what is computed

@both_modes
def test_user_tensors_are_unchanged_by_a_kernel_that_writes_into_them(gradient_in_forward):
    kernel = enzpy.torch.function(writes_its_arguments, gradient_in_forward=gradient_in_forward)
    x, work = random64(5, seed=1), random64(5, seed=2)
    marks = torch.zeros(5, dtype=torch.int64)
    before = [x.detach().clone(), work.detach().clone(), marks.clone()]
    assert kernel.written_arguments([t.detach().numpy() for t in (x, work, marks)]) == {0, 1, 2}
    value = kernel(x, work, marks)
    value.backward()
    for tensor, saved in zip((x, work, marks), before):
        assert torch.equal(tensor.detach(), saved)
    x0 = before[0]
    assert value.item() == pytest.approx(float((3.0 * x0 ** 3).sum()), rel=1e-14)
    torch.testing.assert_close(x.grad, 9.0 * x0 ** 2, rtol=1e-14, atol=0)
    assert torch.count_nonzero(work.grad) == 0          # overwritten before it is read


@both_modes
def test_a_written_non_contiguous_view_is_unchanged_and_its_base_gets_the_gradient(gradient_in_forward):
    kernel = enzpy.torch.function(writes_its_arguments, gradient_in_forward=gradient_in_forward)
    base = random64(10, seed=3)
    before = base.detach().clone()
    x = base[::2]
    kernel(x, random64(5, seed=4), torch.zeros(5, dtype=torch.int32)).backward()
    assert torch.equal(base.detach(), before)
    expected = torch.zeros(10, dtype=torch.float64)
    expected[::2] = 9.0 * before[::2] ** 2
    torch.testing.assert_close(base.grad, expected, rtol=1e-14, atol=0)


def test_an_argument_returned_as_the_result_is_not_the_users_memory():
    kernel = enzpy.torch.function(returns_its_argument)
    x = random64(4)
    out = kernel(x)
    assert out.data_ptr() != x.data_ptr()
    out.detach().add_(1.0)
    assert torch.equal(x.detach(), random64(4).detach())
    kernel(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4, dtype=torch.float64))


def test_inputs_without_requires_grad_get_none_and_no_derivative_is_computed(monkeypatch):
    lazy = enzpy.torch.function(affine_sine)
    seen = []
    original = lazy.kernel.autodiff
    monkeypatch.setattr(lazy.kernel, "autodiff",
                        lambda *annotated, **options: seen.append([type(a).__name__ for a in annotated])
                        or original(*annotated, **options))
    a, x, y = float64(2.0), random64(4), random64(4, requires_grad=False)
    lazy(a, x, y).sum().backward()
    assert seen == [["Active", "Duplicated", "Const"]]
    assert y.grad is None and a.grad.item() == pytest.approx(float(x.detach().sum()))

    eager = enzpy.torch.function(gather_scaled)
    asked = []
    original_value_and_grad = eager.kernel.value_and_grad
    monkeypatch.setattr(eager.kernel, "value_and_grad",
                        lambda *args, wrt=None: asked.append(wrt) or original_value_and_grad(*args, wrt=wrt))
    indices = torch.tensor([1, 0])
    x = random64(3, requires_grad=False)
    scale = float64(0.5)
    eager(x, indices, scale, 1.0).sum()        # an array result: nothing computed in forward
    assert asked == []
    loss = enzpy.torch.function(weighted_loop)
    spied = []
    original_loop = loss.kernel.value_and_grad
    monkeypatch.setattr(loss.kernel, "value_and_grad",
                        lambda *args, wrt=None: spied.append(wrt) or original_loop(*args, wrt=wrt))
    alpha = float64(0.5)
    loss(x, alpha, 3).backward()               # x needs no gradient: only alpha is differentiated
    assert spied == [(1,)] and x.grad is None and alpha.grad is not None
    with torch.no_grad():
        assert not loss(random64(3), alpha, 3).requires_grad
    assert spied == [(1,)]                      # under no_grad forward runs the primal only
    loss(random64(3, requires_grad=False), float64(0.5, requires_grad=False), 3)
    assert spied == [(1,)]


def test_changing_an_input_in_place_before_backward_is_reported():
    kernel = enzpy.torch.function(affine_sine)
    x = random64(4)
    out = kernel(1.0, x, random64(4, seed=1))
    with torch.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_retain_graph_backward_twice_and_no_double_backward():
    kernel = enzpy.torch.function(weighted_loop)
    x = random64(4)
    value = kernel(x, 1.0, 4)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    value.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    seed = float64(1.0)                      # a seed with requires_grad: a second derivative is asked for
    (gradient,) = torch.autograd.grad(kernel(x, 1.0, 4), x, grad_outputs=seed, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gradient.sum().backward()


# ---------------------------------------------------------------- ways to make one, errors

def test_function_accepts_kernels_in_every_form():
    import numba

    python = enzpy.torch.function(affine_sine)
    assert isinstance(python.kernel, enzpy.api.Differentiable)
    differentiated = differentiate(affine_sine)
    assert enzpy.torch.function(differentiated).kernel is differentiated
    assert enzpy.torch.function(python).kernel is python.kernel
    assert enzpy.torch.function(numba.njit(affine_sine)).kernel.dispatcher is not None

    @enzpy.torch.function(gradient_in_forward=False)
    def decorated(x):
        return np.sum(x * x)

    assert not decorated.gradient_in_forward and decorated.__name__ == "decorated"
    x = random64(3)
    decorated(x).backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())
    with pytest.raises(TypeError, match="needs a kernel"):
        enzpy.torch.function(42)


@pytest.mark.parametrize("argument, message", [
    ([1.0, 2.0], r"argument 1 \('x'\) of 'affine_sine' is a list: .*torch.tensor\(values\)"),
    (np.ones(3), r"numpy float64 array: .*torch.from_numpy"),
    (torch.ones(3, dtype=torch.complex128), r"complex128 tensor: enzpy differentiates real kernels"),
    (torch.ones(3, dtype=torch.float16), r"float16 tensor: numba kernels compute in float32 or float64"),
    (torch.ones(3).to_sparse(), r"sparse_coo tensor: kernels take dense tensors"),
    (torch.ones(3, device="meta"), r"meta device"),
    (None, r"is None"),
    ("text", r"is a str"),
    (1 + 2j, r"complex: .*real ones"),
])
def test_clear_errors_for_what_a_kernel_cannot_take(argument, message):
    kernel = enzpy.torch.function(affine_sine)
    with pytest.raises(TypeError, match=message):
        kernel(1.0, argument, torch.ones(3, dtype=torch.float64))


def test_errors_for_keywords_and_a_kernel_that_returns_nothing():
    kernel = enzpy.torch.function(affine_sine)
    with pytest.raises(TypeError, match="by position"):
        kernel(1.0, x=torch.ones(2), y=torch.ones(2))
    nothing = enzpy.torch.function(returns_nothing)
    out = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="returns nothing"):
        nothing(random64(3), out)
    assert torch.count_nonzero(out) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU")
def test_cuda_tensors_get_cuda_gradients():
    kernel = enzpy.torch.function(affine_sine)
    x = random64(5).cuda().detach().requires_grad_()
    y = random64(5, seed=1).cuda().detach().requires_grad_()
    out = kernel(2.0, x, y)
    assert out.device == x.device
    out.sum().backward()
    assert x.grad.device == x.device and y.grad.device == y.device
    torch.testing.assert_close(y.grad, torch.cos(y.detach()))


# ---------------------------------------------------------------- the module, its docs, the example

def test_import_enzpy_does_not_import_torch():
    script = "import sys, enzpy, enzpy.interop; assert 'torch' not in sys.modules, 'torch imported'"
    checked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert checked.returncode == 0, checked.stderr


def test_enzpy_torch_without_torch_says_what_to_install():
    script = "import sys; sys.modules['torch'] = None; import enzpy.torch"      # None: import torch fails
    checked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert checked.returncode != 0
    assert 'pip install "enzpy[torch]"' in checked.stderr


@pytest.mark.parametrize("module", [interop_torch, enzpy.torch], ids=["interop", "public"])
def test_docstring_examples_run(module):
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_public_names_have_docstrings_with_examples():
    for name in enzpy.torch.__all__:
        documented = getattr(enzpy.torch, name)
        assert documented.__doc__ and ">>>" in documented.__doc__, name


def test_training_example_lowers_the_loss():
    example = runpy.run_path(str(ROOT / "examples" / "torch_training.py"))
    losses = example["train"](steps=80)
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))
