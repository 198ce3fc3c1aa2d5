"""enzpy kernels in PyTorch: `enzpy.torch.function(kernel)` is a function of tensors that
autograd differentiates with enzpy's reverse mode (`enzpy.interop.torch` has the details).

Needs PyTorch (`pip install "enzpy[torch]"`); `import enzpy` alone never imports it.

>>> import torch
>>> import enzpy.torch
>>> @enzpy.torch.function
... def sum_of_squares(x):
...     return (x * x).sum()
>>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
>>> sum_of_squares(x).backward()
>>> x.grad
tensor([2., 4.], dtype=torch.float64)
"""

try:
    import torch as _torch  # noqa: F401  (only to fail early, with the fix in the message)
except ImportError as error:
    raise ImportError('enzpy.torch needs PyTorch, which is not installed: pip install "enzpy[torch]"') from error

from .interop.torch import EnzpyKernel, KernelFunction, function  # noqa: E402

__all__ = ["EnzpyKernel", "KernelFunction", "function"]
