"""enzpy: automatic differentiation of numba kernels on optimized LLVM IR."""

from .errors import DifferentiationError, EnzpyError, FrontendError, KernelError, UnsupportedIRError  # noqa: F401

__version__ = "0.1.0"
