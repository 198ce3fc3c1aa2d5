"""enzpy kernels as PyTorch autograd functions: `enzpy.torch.function(kernel)`.

    import enzpy.torch
    energy = enzpy.torch.function(kernel)        # or @enzpy.torch.function on the def
    loss = energy(x, alpha, n)                   # tensors and Python numbers in, tensors out
    loss.backward()                              # enzpy's reverse mode fills x.grad, alpha.grad

One call goes through `EnzpyKernel`, a `torch.autograd.Function`:

- forward makes each tensor a numpy array with `.detach().numpy()`: the tensor's own memory
  for a contiguous CPU tensor, a contiguous CPU copy otherwise (its gradient goes back to the
  tensor's device). A 0-d tensor becomes a number of its dtype (a float scalar argument).
  Arrays the kernel may write (`Differentiable.written_arguments`) and arrays that share memory
  with another argument are copied first: the user's tensors are never changed, and each
  argument is a value of its own, as autograd sees it (autograd adds the gradients of two
  arguments that are one tensor).
- a kernel that returns a float: when an input needs a gradient, forward runs enzpy's gradient
  (`value_and_grad`) at once. The reverse call runs the kernel anyway, and the gradient of a
  scalar is linear in its seed, so backward only scales it. `gradient_in_forward=False` runs
  the primal in forward and the gradient in backward instead (for a forward pass whose
  backward may never come).
- a kernel that returns arrays or tuples: forward runs the kernel and returns its leaves as
  tensors; backward runs reverse mode (`autodiff` with Duplicated shadows) seeded with the
  leaves' cotangents, zeros where autograd has none.
- backward returns gradients of the inputs' dtypes and devices, and None, without computing
  anything for them, for inputs that need none (integer and bool tensors, Python numbers,
  requires_grad=False).

Backward is `once_differentiable`: enzpy's reverse mode runs in numpy, outside autograd's
graph, so a second derivative (`create_graph=True` then backward again) raises. torch.func
transforms (`torch.func.grad`, `vmap`) are not supported: torch refuses them for a Function
without `setup_context`.
"""

from __future__ import annotations

import numpy as np
import torch
from numba.core import types as numba_types
from numba.np.numpy_support import as_dtype
from torch.autograd.function import once_differentiable

from .. import results
from ..annotations import Active, Const, Duplicated
from ..api import Differentiable, differentiate

_NUMBERS = (bool, int, float, np.bool_, np.integer, np.floating)
"""Python and numpy numbers a kernel takes as they are (no gradient: they are not tensors)."""


def function(kernel=None, *, gradient_in_forward: bool = True):
    """`kernel` as a function of torch tensors whose gradients enzpy's reverse mode computes.

    `kernel` is a `differentiate`d kernel (`enzpy.api.Differentiable`), a numba dispatcher or
    a plain Python function (differentiated here); `@enzpy.torch.function` works on a `def`.
    The result takes tensors and Python numbers, positionally, and returns tensors: a 0-d
    tensor for a kernel that returns a number, a tensor per array, tuples of them for tuples.
    Float tensors that require grad get gradients (float32 ones float32 gradients, on their
    device); a 0-d tensor is passed to the kernel as a number, so a learnable scalar is a 0-d
    tensor. Integer and bool tensors and Python numbers get none. The tensors passed in are
    never written, even where the kernel writes into its arguments (those get copies).

    For a kernel that returns a float, forward computes the gradient too when an input needs
    one (backward then only scales it by the incoming gradient): the reverse call runs the
    kernel anyway. `gradient_in_forward=False` leaves the gradient to backward. Backward is
    `once_differentiable`: no double backward.

    >>> import numpy as np
    >>> import torch
    >>> import enzpy.torch
    >>> @enzpy.torch.function
    ... def energy(x, alpha, n):
    ...     s = 0.0
    ...     for i in range(n):
    ...         s += alpha * x[i] * x[i]
    ...     return s
    >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    >>> loss = energy(x, alpha, 2)
    >>> loss.item()
    2.5
    >>> loss.backward()
    >>> x.grad, alpha.grad
    (tensor([1., 2.], dtype=torch.float64), tensor(5., dtype=torch.float64))
    >>> wave = enzpy.torch.function(lambda a, x: a * np.sin(x))      # array results
    >>> y = wave(2.0, torch.zeros(3, requires_grad=True))
    >>> y.sum().backward()
    """
    if kernel is None:
        return lambda later: function(later, gradient_in_forward=gradient_in_forward)
    if isinstance(kernel, KernelFunction):
        kernel = kernel.kernel
    elif not isinstance(kernel, Differentiable):
        if not callable(kernel):
            raise TypeError(f"enzpy.torch.function needs a kernel: a differentiate()d kernel, a numba "
                            f"dispatcher or a Python function, got {type(kernel).__name__}")
        kernel = differentiate(kernel)
    return KernelFunction(kernel, gradient_in_forward=gradient_in_forward)


class KernelFunction:
    """A kernel called on torch tensors, differentiable by autograd (made by `function`).

    `kernel` is the `enzpy.api.Differentiable` underneath, for enzpy's own API on numpy arrays.

    >>> import numpy as np
    >>> import torch
    >>> import enzpy.torch
    >>> scaled = enzpy.torch.function(lambda x, a: (a * x, np.sum(x * x)))
    >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> y, norm = scaled(x, 3.0)                  # a tuple result: a tuple of tensors
    >>> (y.sum() + norm).backward()
    >>> x.grad
    tensor([5., 7.], dtype=torch.float64)
    >>> scaled.kernel.vjp(np.array([1.0, 2.0]), 3.0)[0]
    (array([3., 6.]), 5.0)
    """

    def __init__(self, kernel: Differentiable, gradient_in_forward: bool = True):
        self.kernel = kernel
        self.gradient_in_forward = gradient_in_forward
        """For a float result: compute the gradient in forward (see `function`)."""
        self.__name__ = kernel.__name__
        self.__doc__ = kernel.__doc__ or type(self).__doc__
        self._facts_cache: dict[tuple, tuple] = {}
        """Argument types -> (positions of the arrays the kernel may write, numba's result type)."""
        self._layouts: dict[object, results.ResultLayout] = {}
        """numba's result type -> its layout (structured results only)."""
        self._result_dtypes: dict[object, np.dtype] = {}
        """numba's result type -> its numpy dtype (results that are numbers)."""

    def __call__(self, *args, **keywords):
        if keywords:
            raise TypeError(f"{self.__name__!r} takes its arguments by position (as numba kernels do), got "
                            f"keywords {', '.join(keywords)}")
        # Inside forward autograd has turned grad mode off; whether it is on here decides whether
        # forward computes a scalar result's gradient at once (not under torch.no_grad()).
        call = _Call(self, torch.is_grad_enabled())
        outputs = EnzpyKernel.apply(call, *args)
        if call.layout is None or call.single_leaf:
            return outputs
        return call.layout.build(list(outputs))

    def __repr__(self) -> str:
        return f"enzpy.torch.function({self.__name__})"

    def written_arguments(self, values) -> frozenset[int]:
        """Positions of the arrays (any dtype) the kernel may write, for these kernel arguments
        (numpy arrays and numbers); from enzpy's analysis of the kernel, cached per types.

        >>> import numpy as np
        >>> import enzpy.torch
        >>> def double_in_place(x):
        ...     for i in range(x.shape[0]):
        ...         x[i] *= 2.0
        ...     return x.sum()
        >>> enzpy.torch.function(double_in_place).written_arguments([np.ones(3)])
        frozenset({0})
        """
        return self._facts(values)[0]

    def _facts(self, values) -> tuple:
        """(written_arguments, numba's result type) for these kernel arguments, cached per types:
        enzpy's own lookups type every argument with numba, which costs more than a small call."""
        key = _types_key(values)
        facts = self._facts_cache.get(key)
        if facts is None:
            try:
                written = self.kernel.written_arguments(values, floats_only=False)
            except Exception:
                # The analysis only saves copies: where it cannot run (the kernel does not compile for
                # these types: the result type below reports that), every array is taken as written.
                written = frozenset(i for i, v in enumerate(values) if isinstance(v, np.ndarray))
            facts = self._facts_cache[key] = (written, self.kernel._result_type(values))
        return facts

    def _result_dtype(self, return_type) -> np.dtype:
        dtype = self._result_dtypes.get(return_type)
        if dtype is None:
            dtype = self._result_dtypes[return_type] = np.dtype(as_dtype(return_type))
        return dtype

    def _layout(self, return_type) -> results.ResultLayout:
        layout = self._layouts.get(return_type)
        if layout is None:
            layout = self._layouts[return_type] = results.result_layout(return_type, self.__name__)
        return layout


class EnzpyKernel(torch.autograd.Function):
    """The autograd function of every `KernelFunction` call: apply(call, *args), where `call`
    is the call's `_Call` (its state between forward and backward); outputs are the leaves
    of the kernel's result.

    >>> import torch
    >>> import enzpy.torch
    >>> square = enzpy.torch.function(lambda x: x * x)
    >>> square(torch.ones(2, requires_grad=True)).grad_fn.name()
    'EnzpyKernelBackward'
    """

    @staticmethod
    def forward(ctx, call, *args):
        # Outputs the loss does not use get None, not zeros: nothing to allocate, and None is what
        # enzpy takes for a leaf without cotangent.
        ctx.set_materialize_grads(False)
        ctx.enzpy_call = call
        return call.forward(ctx, args)

    @staticmethod
    @once_differentiable
    def backward(ctx, *output_gradients):
        call = ctx.enzpy_call
        if all(g is None for g in output_gradients):
            return (None,) * (1 + len(call.tensors))
        return (None, *call.backward(ctx, output_gradients))


class _Call:
    """One call of a KernelFunction: its arguments as the kernel takes them, and what backward needs."""

    def __init__(self, wrapper: KernelFunction, grad_enabled: bool):
        self.wrapper = wrapper
        self.grad_enabled = grad_enabled
        self.layout: results.ResultLayout | None = None
        """The result's layout (arrays, tuples); None for a number."""
        self.single_leaf = False
        """The result is one array: forward returns one tensor, not a tuple."""
        self.values: list = []
        """The kernel's arguments; for backward, None where it reads the saved tensor again."""
        self.tensors: list = []
        """The tensor each argument came from (None for numbers)."""
        self.copy_again: set[int] = set()
        """Arguments backward copies from their saved tensors (arrays the kernel writes)."""
        self.saved_positions: list[int] = []
        self.shapes: list = []
        self.gradients: list | bool | None = None
        """A float result's gradients computed in forward (then saved: True); None: backward computes them."""

    # -- forward

    def forward(self, ctx, args):
        kernel = self.wrapper.kernel
        values, private = [], set()
        for index, argument in enumerate(args):
            value, copied = _kernel_argument(kernel, index, argument)
            values.append(value)
            self.tensors.append(argument if isinstance(argument, torch.Tensor) else None)
            if copied:
                private.add(index)
        self.device = _common_device(kernel, self.tensors)
        # Copies have the types of what they copy (contiguous arrays): the facts hold for both.
        written, return_type = self.wrapper._facts(values)
        _copy_written_and_overlapping(values, written, private)
        needs = ctx.needs_input_grad[1:]
        if isinstance(return_type, numba_types.NoneType):
            raise TypeError(f"kernel {kernel.__name__!r} returns nothing: enzpy.torch.function needs a kernel that "
                            "returns its results (a number, arrays, or a tuple of them); the tensors passed in "
                            "are never written, so what the kernel writes into them is lost")
        if results.is_structured(return_type):
            self.layout = self.wrapper._layout(return_type)
            self.single_leaf = len(self.layout.leaves) == 1 and not self.layout.leaves[0].path
            value = kernel(*values)
            self.shapes = results.leaf_shapes(self.layout, value)
            outputs = self._leaf_tensors(ctx, self.layout.leaf_values(value), values)
            result = outputs[0] if self.single_leaf else tuple(outputs)
        else:
            dtype = self.wrapper._result_dtype(return_type)
            if dtype.kind == "f" and any(needs) and self.grad_enabled and self.wrapper.gradient_in_forward:
                value = self._value_and_gradients(values, needs)
            else:
                value = kernel(*values)
            result = self._to_device(torch.from_numpy(np.asarray(value, dtype=dtype)))
            if dtype.kind != "f":
                ctx.mark_non_differentiable(result)
        if self.gradients is not None:
            # Saved, not kept on `self`: autograd drops saved tensors after backward (unless
            # retain_graph), so AccumulateGrad can take a gradient as x.grad instead of copying it.
            ctx.save_for_backward(*self.gradients)
            self.gradients = True
        elif any(needs):
            self._keep_for_backward(ctx, values, written, private)
        return result

    def _value_and_gradients(self, values, needs):
        """The value; the gradients of the inputs that need them, as tensors, in self.gradients."""
        positions = [i for i, need in enumerate(needs) if need]
        # From the third call with the same types and wrt, value_and_grad takes enzpy's compiled
        # trampoline (fast_calls); the inputs that need no gradient are Const there.
        value, selected_gradients = self.wrapper.kernel.value_and_grad(*values, wrt=tuple(positions))
        gradients = [None] * len(values)
        for position, gradient in zip(positions, selected_gradients):
            gradients[position] = gradient
        self.gradients = [self._gradient_tensor(i, g) if need else None
                          for i, (need, g) in enumerate(zip(needs, gradients))]
        return value

    def _leaf_tensors(self, ctx, leaves, values) -> list:
        """The result's leaves as tensors; integer and bool ones marked non-differentiable."""
        arrays = [v for v in values if isinstance(v, np.ndarray)]
        tensors, non_differentiable = [], []
        for leaf, item in zip(self.layout.leaves, leaves):
            if leaf.ndim is None:
                item = np.asarray(item, dtype=leaf.dtype)
            elif any(np.may_share_memory(item, other) for other in arrays) or any(s < 0 for s in item.strides):
                # A kernel may return an argument or a view of one: the output must not be the user's
                # tensor's memory (nor a copy backward reads). torch.from_numpy refuses negative strides.
                item = item.copy()
            arrays.append(item)        # two leaves that are one array become two tensors
            tensor = self._to_device(torch.from_numpy(item))
            tensors.append(tensor)
            if not leaf.is_float:
                non_differentiable.append(tensor)
        if non_differentiable:
            ctx.mark_non_differentiable(*non_differentiable)
        return tensors

    def _keep_for_backward(self, ctx, values, written, private) -> None:
        """Save what backward reads: the user's tensors themselves where the kernel reads them (autograd
        then reports an in-place change before backward), our own copies the kernel did not write."""
        saved = []
        for index, (value, tensor) in enumerate(zip(values, self.tensors)):
            if not isinstance(value, np.ndarray):
                continue
            if index in written:
                # The kernel wrote into its copy: backward copies the values on entry again.
                self.copy_again.add(index)
            elif index in private:
                continue
            values[index] = None
            self.saved_positions.append(index)
            saved.append(tensor)
        ctx.save_for_backward(*saved)
        self.values = values

    # -- backward

    def backward(self, ctx, output_gradients) -> list:
        needs = ctx.needs_input_grad[1:]
        if self.gradients is not None:
            return [_scaled(g, output_gradients[0]) if g is not None else None for g in ctx.saved_tensors]
        values = list(self.values)
        for index, tensor in zip(self.saved_positions, ctx.saved_tensors):
            values[index] = _kernel_argument(self.wrapper.kernel, index, tensor, copy=index in self.copy_again)[0]
        annotated = []
        for value, need in zip(values, needs):
            if not need:
                annotated.append(Const(value))
            elif isinstance(value, np.ndarray):
                annotated.append(Duplicated(value, np.zeros_like(value)))
            else:
                annotated.append(Active(value))
        active = iter(self.wrapper.kernel.autodiff(*annotated, seed=self._seed(output_gradients)))
        gradients = []
        for index, annotation in enumerate(annotated):
            if isinstance(annotation, Duplicated):
                gradients.append(self._gradient_tensor(index, annotation.shadow))
            elif isinstance(annotation, Active):
                gradients.append(self._gradient_tensor(index, next(active)))
            else:
                gradients.append(None)
        return gradients

    def _seed(self, output_gradients):
        """The cotangent of the kernel's result, as enzpy's reverse mode takes it."""
        if self.layout is None:
            return float(output_gradients[0])
        leaves = []
        for leaf, shape, gradient in zip(self.layout.leaves, self.shapes, output_gradients):
            if not leaf.is_float:
                leaves.append(None)
            elif gradient is None:
                # autodiff takes a scalar leaf's None as zero; an array leaf's seed carries its shape.
                leaves.append(None if leaf.ndim is None else np.zeros(shape, dtype=leaf.dtype))
            else:
                leaves.append(_numpy_view(gradient))
        return leaves[0] if self.single_leaf else self.layout.build(leaves)

    def _gradient_tensor(self, index: int, gradient) -> torch.Tensor:
        """A gradient from enzpy as a tensor of the input's dtype, on the input's device."""
        tensor = self.tensors[index]
        if isinstance(gradient, np.ndarray):
            gradient = torch.from_numpy(gradient)
            return gradient if tensor.device.type == "cpu" else gradient.to(tensor.device)
        return tensor.new_full((), gradient)        # the input's dtype and device

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.device.type == "cpu" else tensor.to(self.device)


# ---------------------------------------------------------------- arguments

def _kernel_argument(kernel: Differentiable, index: int, value, copy: bool = False):
    """(what the kernel gets for argument `value`, whether it is a copy of our own).

    A tensor becomes a numpy array sharing its memory where that is possible (a contiguous CPU
    tensor) and `copy` is not asked for, a contiguous CPU copy otherwise; a 0-d tensor a numpy
    number of its dtype. Anything else a kernel cannot take raises a TypeError that names it.
    """
    if isinstance(value, torch.Tensor):
        problem = _tensor_problem(value)
        if problem:
            raise TypeError(f"{_argument(kernel, index)} is {problem}")
        tensor = value.detach()
        copied = False
        if tensor.is_neg():                      # a lazily negated view: numpy cannot read it
            tensor, copied = tensor.resolve_neg(), True
        if tensor.device.type != "cpu" or not tensor.is_contiguous() or (copy and not copied):
            tensor = tensor.to(device="cpu", memory_format=torch.contiguous_format, copy=not copied)
            copied = True
        try:
            array = tensor.numpy()
        except TypeError as error:               # dtypes numpy has no counterpart for
            raise TypeError(f"{_argument(kernel, index)} is a {value.dtype} tensor, which numpy (and so numba) "
                            f"cannot hold: {error}") from None
        if array.ndim == 0:
            return array[()], True
        return array, copied
    if isinstance(value, _NUMBERS):
        return value, False
    raise TypeError(f"{_argument(kernel, index)} is {_kind(value)}: enzpy.torch.function takes tensors and "
                    f"Python numbers{_hint(value)}")


_KERNEL_DTYPES = frozenset({torch.float64, torch.float32, torch.int64, torch.int32, torch.int16, torch.int8,
                            torch.uint8, torch.bool})
"""Tensor dtypes numba kernels take as they are (the common case, checked first: calls are small)."""


def _tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why a kernel cannot take this tensor, or None."""
    if tensor.dtype in _KERNEL_DTYPES and tensor.layout is torch.strided and not tensor.is_meta:
        return None
    if tensor.layout is not torch.strided:
        return f"a {tensor.layout} tensor: kernels take dense tensors (tensor.to_dense())"
    if tensor.is_quantized:
        return "a quantized tensor: kernels take float and integer tensors (tensor.dequantize())"
    if tensor.is_complex():
        return (f"a {tensor.dtype} tensor: enzpy differentiates real kernels; pass the real and imaginary "
                "parts as real tensors (torch.view_as_real(z) makes them one tensor with a last axis of 2)")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return (f"a {tensor.dtype} tensor: numba kernels compute in float32 or float64; convert it "
                "(tensor.float() or tensor.double()) and back")
    if tensor.device.type == "meta":
        return "a tensor on the meta device, which holds no values"
    return None


def _types_key(values) -> tuple:
    """What decides the numba types of kernel arguments (a Python int's type depends on its size)."""
    return tuple((v.dtype, v.ndim, v.flags.c_contiguous, v.flags.f_contiguous) if type(v) is np.ndarray
                 else (int, -2**63 <= v < 2**63) if type(v) is int else type(v) for v in values)


def _common_device(kernel: Differentiable, tensors) -> torch.device:
    """The device of the tensor arguments (outputs go there): all must share one, as for torch's operations."""
    device, first = None, None
    for index, tensor in enumerate(tensors):
        if tensor is None:
            continue
        if device is None:
            device, first = tensor.device, index
        elif tensor.device != device:
            raise ValueError(f"the tensors passed to {kernel.__name__!r} must be on one device: argument {first} is "
                             f"on {device}, {_argument(kernel, index)} on {tensor.device}")
    return device if device is not None else torch.device("cpu")


def _copy_written_and_overlapping(values: list, written, private: set) -> None:
    """Replace, in place, the arrays the kernel may write and those that share memory with an
    earlier argument by copies of their own (recorded in `private`).

    The first keeps the user's tensors unchanged. The second makes each argument a separate
    value: enzpy's derivative is with respect to memory (arguments that overlap share one
    gradient there), while autograd gives each argument its own gradient and adds them.
    """
    kept = []
    for index, value in enumerate(values):
        if not isinstance(value, np.ndarray) or index in private:
            continue
        if index in written or any(np.may_share_memory(value, values[other]) for other in kept):
            values[index] = value.copy()
            private.add(index)
        else:
            kept.append(index)


def _numpy_view(tensor: torch.Tensor) -> np.ndarray:
    """A gradient tensor as a numpy array (enzpy copies seeds before it uses them)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    return tensor.numpy()


def _scaled(gradient: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """A gradient computed with seed 1, for the seed autograd hands backward (same dtype as before)."""
    if seed.device.type == "cpu" and seed.item() == 1.0:
        return gradient            # loss.backward()'s seed: no multiplication, no new tensor
    scaled = gradient * seed.to(gradient.device)
    return scaled if scaled.dtype == gradient.dtype else scaled.to(gradient.dtype)


def _argument(kernel: Differentiable, index: int) -> str:
    return f"argument {index} ({kernel._argument_name(index)!r}) of {kernel.__name__!r}"


def _kind(value) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    if isinstance(value, np.ndarray):
        name = f"numpy {value.dtype} array"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _hint(value) -> str:
    """What to pass instead, where there is an obvious answer."""
    if isinstance(value, np.ndarray):
        return " (torch.from_numpy(array) makes a tensor that shares the array's memory)"
    if isinstance(value, (list, tuple)):
        return " (torch.tensor(values) makes a tensor of a list; each argument is one tensor)"
    if isinstance(value, complex):
        return " (real ones: enzpy differentiates real kernels)"
    return ""
