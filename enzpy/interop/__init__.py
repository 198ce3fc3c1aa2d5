"""enzpy kernels inside other frameworks' automatic differentiation.

`torch.py` makes a kernel a `torch.autograd.Function` (public name: `enzpy.torch.function`);
`jax.py` makes it a JAX primitive (`enzpy.jax.function`). Nothing is imported here, so that
`import enzpy` never imports PyTorch or JAX: each framework is loaded only by the module that
needs it.
"""
