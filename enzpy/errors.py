"""Exceptions enzpy raises; every one names what it could not handle."""


class EnzpyError(Exception):
    """Base class of every error enzpy raises on purpose.

    >>> import enzpy
    >>> [issubclass(error, enzpy.EnzpyError) for error in (enzpy.DifferentiationError,
    ...     enzpy.FrontendError, enzpy.KernelError, enzpy.UnsupportedIRError)]
    [True, True, True, True]

    .. code-block:: python

        try:
            gradient = enzpy.differentiate(kernel).grad(x)
        except enzpy.EnzpyError as error:      # refused: the message says what and where
            gradient = fallback(x)
    """


class UnsupportedIRError(EnzpyError):
    """The IR contains a construct the enzpy IR cannot represent.

    Raised while reading LLVM IR (numba's, or clang's for `enzpy opt`) into
    enzpy's IR; the message names the instruction or type.

    .. code-block:: python

        from enzpy.driver import kernel_ir

        try:
            module, captured = kernel_ir(kernel, args=(x,), stage="optimized")
        except enzpy.UnsupportedIRError as error:
            print(error)          # e.g. an instruction kind the reader does not know
    """


class FrontendError(EnzpyError):
    """numba could not compile the kernel, or the signature is malformed; also a kernel whose
    result a derivative cannot take (a list), and CUDA constructs the CPU path cannot run.

    >>> import numpy as np
    >>> import enzpy
    >>> def pair(x):
    ...     return [x[0], x[1]]
    >>> enzpy.differentiate(pair).grad(np.ones(2))
    Traceback (most recent call last):
        ...
    enzpy.errors.FrontendError: kernel returns list(float64)<iv=None>: this derivative needs ...
    """


class KernelError(EnzpyError):
    """The kernel returned a non-zero status without a Python exception to re-raise.

    An exception the kernel raises itself (`raise ValueError(...)`) comes out
    as that exception; KernelError is for failures with nothing to re-raise,
    such as threads of a CUDA block waiting at different barriers:

    .. code-block:: python

        @cuda.jit
        def divergent(x, out):
            i = cuda.grid(1)
            if cuda.threadIdx.x < 4:
                cuda.syncthreads()          # half the block waits here ...
                out[i] = x[i]
            else:
                out[i] = 2.0 * x[i]
                cuda.syncthreads()          # ... the other half here

        enzpy.cuda.on_cpu(divergent)[1, 8](np.ones(8), np.zeros(8))   # KernelError: ... different barriers
    """


class DifferentiationError(EnzpyError):
    """An operation has no differentiation rule, or cannot be differentiated safely.

    The message names the operation, the kernel and (where numba's debug
    information has it) the Python source line, then says what to do.

    >>> import numpy as np
    >>> import enzpy
    >>> def total(x):
    ...     return np.sum(x)
    >>> try:
    ...     enzpy.differentiate(total).autodiff(enzpy.Active(np.ones(3)))
    ... except enzpy.DifferentiationError as error:
    ...     print(str(error).splitlines()[0])
    argument 0 ('x'): Active needs a float scalar, got array(float64, 1d, C): in kernel ...
    """
