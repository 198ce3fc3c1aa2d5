"""Exceptions enzpy raises; every one names what it could not handle."""


class EnzpyError(Exception):
    """Base class of every error enzpy raises on purpose."""


class UnsupportedIRError(EnzpyError):
    """The IR contains a construct the enzpy IR cannot represent."""


class FrontendError(EnzpyError):
    """numba could not compile the kernel, or the signature is malformed."""


class KernelError(EnzpyError):
    """The kernel returned a non-zero status without a Python exception to re-raise."""


class DifferentiationError(EnzpyError):
    """An operation has no differentiation rule, or cannot be differentiated safely."""
