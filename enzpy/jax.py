"""enzpy kernels in JAX: `enzpy.jax.function(kernel)` is a JAX function whose `jax.jvp` runs
enzpy's forward mode and whose `jax.grad` / `jax.vjp` run enzpy's reverse mode, under `jax.jit`
and `jax.vmap` too (`enzpy.interop.jax` has the details).

Needs JAX (`pip install "enzpy[jax]"`); `import enzpy` alone never imports it.

>>> import jax, jax.numpy as jnp
>>> import enzpy.jax
>>> @enzpy.jax.function
... def sum_of_squares(x):
...     return (x * x).sum()
>>> [float(g) for g in jax.grad(sum_of_squares)(jnp.array([1.0, 2.0]))]
[2.0, 4.0]
"""

try:
    import jax as _jax  # noqa: F401  (only to fail early, with the fix in the message)
except ImportError as error:
    raise ImportError('enzpy.jax needs JAX, which is not installed: pip install "enzpy[jax]"') from error

from .interop.jax import Function, function  # noqa: E402

__all__ = ["function", "Function"]
