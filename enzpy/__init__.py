"""enzpy: automatic differentiation of numba kernels on optimized LLVM IR."""

from .errors import DifferentiationError, EnzpyError, FrontendError, KernelError, UnsupportedIRError  # noqa: F401

__version__ = "0.1.0"

from .frontend.numba import install_capture_hook  # noqa: E402

install_capture_hook()   # as early as possible, so kernels compiled from now on can be captured

from . import rules  # noqa: E402,F401  (registers the differentiation rules)
from .api import Active, Const, Duplicated, DuplicatedNoNeed, differentiate  # noqa: E402,F401
from .checkpointing import Online, Periodic, Revolve, checkpoint_range  # noqa: E402,F401
from .checkpointing.loop import checkpointed  # noqa: E402,F401
from .numba_calls import autodiff  # noqa: E402,F401  (also callable inside @njit code)
from .custom_rules import custom_vjp  # noqa: E402,F401

__all__ = [
    # differentiating a kernel
    "differentiate", "autodiff", "custom_vjp",
    # activity annotations
    "Const", "Active", "Duplicated", "DuplicatedNoNeed",
    # checkpointed time loops
    "checkpoint_range", "checkpointed", "Revolve", "Periodic", "Online",
    # errors
    "EnzpyError", "DifferentiationError", "FrontendError", "KernelError", "UnsupportedIRError",
]
"""The public names (documented in docs/api/reference.rst; `tests/test_docs.py` checks each has an
example). `install_capture_hook` is called at import and is not part of the API."""
