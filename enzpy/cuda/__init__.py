"""CUDA-style kernels (numba.cuda) on CPU threads, and their derivatives.

    enzpy.cuda.on_cpu(kernel)[griddim, blockdim](*args)
    enzpy.cuda.differentiate(kernel)[griddim, blockdim](*annotated, mode="reverse" | "forward")

capture.py (NVVM IR without a GPU -> host module), threads.py (what a kernel may
contain; float atomics as rule calls), barriers.py (a thread's code as a
resumable step function, split at barriers), launch.py (the block driver and
the launch on CPU threads), api.py (the two entry points). The derivative
rules of barriers and atomics are in rules/cuda.py.
"""

from .api import CpuKernel, DifferentiableKernel, differentiate, on_cpu  # noqa: F401
