"""`on_cpu(kernel)[grid, block](*args)` and `differentiate(kernel)[grid, block](*annotated)`.

A kernel is compiled once per argument types (and annotations, for a
derivative): the per-thread function of the mode (cuda/compile.py) -> the
barrier lowering (cuda/barriers.py) -> a block driver (cuda/launch.py) -> the
post-AD pipeline and the JIT. The shared memory and its shadow are buffers the
driver makes per block; an Active scalar's adjoint is summed by each thread
into its worker's accumulator, and the workers' sums are added here.
"""

from __future__ import annotations

import ctypes
import re
import weakref
from dataclasses import dataclass

import numpy as np

from ..aliasing import arrays_are_distinct
from ..annotations import Active, Const, Duplicated
from ..ir import write_module
from ..jit import CompiledModule, _ctype, array_parameters, check_array, scalar_parameter
from .barriers import lower_barriers
from .capture import CapturedCudaKernel, python_function
from .compile import AdjointSharing, define_atomic_adds, keep_only_reachable, thread_function
from .launch import DRIVER_DECLARATIONS, block_driver, grid_shape, run_grid, worker_count

@dataclass
class _Compiled:
    """One compiled launchable function (primal, tangent or gradient) and its layout."""

    compiled: CompiledModule
    driver: object
    """ctypes function: i32 (i64 first, i64 last, ptr launch, parameters...)."""
    kernel: CapturedCudaKernel
    duplicated: tuple[int, ...] = ()
    """Argument positions with shadows, in the order of their shadow parameters."""
    active: tuple[int, ...] = ()
    """Argument positions of Active scalars (reverse: adjoint outputs; forward: tangents)."""
    shadowed_shared: bool = False
    privatized: tuple[int, ...] = ()
    """Argument positions whose shadow each worker has a copy of (summed after the launch)."""
    module_text: str = ""


PRIVATE_SHADOW_BYTES = 1 << 28
"""At most this many bytes of per-worker shadow copies; beyond, adjoints are added atomically."""

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Python function -> key -> _Compiled."""


def on_cpu(kernel) -> "CpuKernel":
    """The kernel run on CPU threads: `on_cpu(kernel)[griddim, blockdim](*args)` as numba.cuda runs
    it, on numpy arrays (each block on one CPU thread, blocks in parallel).

    >>> import numpy as np
    >>> from numba import cuda
    >>> import enzpy.cuda
    >>> @cuda.jit
    ... def saxpy(a, x, y, out):
    ...     i = cuda.grid(1)
    ...     if i < x.shape[0]:
    ...         out[i] = a * x[i] + y[i]
    >>> x, y, out = np.array([1.0, 2.0, 3.0]), np.ones(3), np.zeros(3)
    >>> enzpy.cuda.on_cpu(saxpy)[1, 32](2.0, x, y, out)      # one block of 32 threads
    >>> out
    array([3., 5., 7.])
    """
    return CpuKernel(kernel)


def differentiate(kernel) -> "DifferentiableKernel":
    """Derivatives of a kernel: `differentiate(kernel)[griddim, blockdim](*annotated, mode="reverse")`.

    Arguments are `Duplicated(array, shadow)`, `Const(value)` (plain values are Const) or
    `Active(float)`. Reverse mode adds each array's adjoint into its shadow (the shadow of an
    array the kernel writes holds the adjoint of its final contents on entry) and returns the
    Active scalars' derivatives in order. Forward mode (`mode="forward"`) writes into each shadow
    the tangent of what its array holds after the kernel, given the shadows' tangents of the
    inputs on entry (Active scalars have tangent 1, `Duplicated(x, dx)` for a scalar tangent
    dx), and returns None.

    >>> import numpy as np
    >>> from numba import cuda
    >>> import enzpy.cuda
    >>> from enzpy import Active, Const, Duplicated
    >>> @cuda.jit
    ... def saxpy(a, x, y, out):
    ...     i = cuda.grid(1)
    ...     if i < x.shape[0]:
    ...         out[i] = a * x[i] + y[i]
    >>> d_saxpy = enzpy.cuda.differentiate(saxpy)[1, 32]
    >>> x, dx = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    >>> out, dout = np.zeros(3), np.ones(3)           # dout: the adjoint of out's final contents
    >>> d_saxpy(Active(2.0), Duplicated(x, dx), Const(np.ones(3)), Duplicated(out, dout))
    (6.0,)
    >>> dx, dout
    (array([2., 2., 2.]), array([0., 0., 0.]))
    >>> tout = np.zeros(3)                            # forward mode: receives out's tangent
    >>> d_saxpy(Active(2.0), Duplicated(x, np.zeros(3)), np.ones(3), Duplicated(out, tout), mode="forward")
    >>> tout                                          # d out / d a (Active: tangent 1)
    array([1., 2., 3.])
    """
    return DifferentiableKernel(kernel)


class CpuKernel:
    def __init__(self, kernel):
        self.function = python_function(kernel)
        self.__name__ = self.function.__name__

    def __getitem__(self, configuration) -> "_Configured":
        return _Configured(self, configuration)

    def _run(self, grid, block, dynamic_shared, args):
        compiled = _compiled_for(self.function, "primal", args, tuple(Const for _ in args))
        parameters = _primal_parameters(compiled.kernel, args)
        shared = compiled.kernel.static_shared_bytes + dynamic_shared
        run_grid(compiled.driver, grid, block, shared, lambda worker: parameters, dynamic_shared)


class DifferentiableKernel(CpuKernel):
    def _run(self, grid, block, dynamic_shared, args, mode="reverse"):
        annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in args]
        values = [a.value for a in annotated]
        kinds = tuple(type(a) for a in annotated)
        if mode not in ("reverse", "forward"):
            raise ValueError(f"mode must be 'reverse' or 'forward', not {mode!r}")
        _check_shadows(self.function, annotated)
        workers = worker_count(grid[0] * grid[1] * grid[2])
        sharing = AdjointSharing(
            one_dimensional=grid[1:] == (1, 1) and block[1:] == (1, 1), serial=workers == 1,
            privatized=workers > 1 and (workers - 1) * sum(a.shadow.nbytes for a in annotated if isinstance(
                a, Duplicated) and isinstance(a.shadow, np.ndarray)) <= PRIVATE_SHADOW_BYTES)
        compiled = _compiled_for(self.function, mode, values, kinds, arrays_are_distinct(_arrays(annotated)),
                                 sharing if mode == "reverse" else AdjointSharing())
        convention = compiled.kernel.captured.convention
        primal = _primal_parameters(compiled.kernel, values)
        shared = compiled.kernel.static_shared_bytes + dynamic_shared
        if mode == "forward":
            parameters = primal + [annotated[p].shadow.ctypes.data for p in compiled.duplicated]
            if compiled.shadowed_shared:
                parameters.append(None)           # the driver's per-block shadow of the shared memory
            for position in compiled.active:
                annotation = annotated[position]
                parameters.append(float(annotation.shadow) if isinstance(annotation, Duplicated) else 1.0)
            run_grid(compiled.driver, grid, block, shared, lambda worker: parameters, dynamic_shared)
            return None
        # Each worker adds into its own copy of the privatized shadows (worker 0: the user's), and
        # into its own cache line of Active accumulators (neighbours in one line would bounce it).
        copies = {p: [annotated[p].shadow] + [np.zeros_like(annotated[p].shadow) for _ in range(workers - 1)]
                  for p in compiled.privatized}
        outputs = [np.zeros((workers, 64 // convention.arguments[p].dtype.itemsize), convention.arguments[p].dtype)
                   for p in compiled.active]

        def parameters_for(worker):
            parameters = primal + [(copies[p][worker] if p in copies else annotated[p].shadow).ctypes.data
                                   for p in compiled.duplicated]
            if compiled.shadowed_shared:
                parameters.append(None)
            return parameters + [output[worker].ctypes.data for output in outputs]

        run_grid(compiled.driver, grid, block, shared, parameters_for, dynamic_shared)
        for shadows in copies.values():
            for copy in shadows[1:]:
                shadows[0] += copy
        return tuple(output[:, 0].sum().item() for output in outputs)


class _Configured:
    """A kernel with its launch configuration, as `kernel[griddim, blockdim]` is in numba.cuda."""

    def __init__(self, kernel: CpuKernel, configuration):
        if not isinstance(configuration, tuple) or not 2 <= len(configuration) <= 4:
            raise ValueError("launch as kernel[griddim, blockdim] (or [griddim, blockdim, stream, "
                             f"sharedmem]), got {configuration!r}")
        self.kernel = kernel
        self.grid = grid_shape(configuration[0], "griddim")
        self.block = grid_shape(configuration[1], "blockdim")
        self.dynamic_shared = int(configuration[3]) if len(configuration) == 4 else 0

    def __call__(self, *args, **options):
        return self.kernel._run(self.grid, self.block, self.dynamic_shared, args, **options)


def _arrays(annotated) -> list:
    arrays = [a.value for a in annotated if isinstance(a.value, np.ndarray)]
    return arrays + [a.shadow for a in annotated if isinstance(a, Duplicated) and isinstance(a.shadow, np.ndarray)]


def _check_shadows(function, annotated) -> None:
    for index, annotation in enumerate(annotated):
        if isinstance(annotation, Duplicated) and isinstance(annotation.value, np.ndarray):
            shadow = annotation.shadow
            if not isinstance(shadow, np.ndarray) or shadow.shape != annotation.value.shape \
                    or shadow.dtype != annotation.value.dtype or shadow.strides != annotation.value.strides:
                raise ValueError(f"argument {index} of {function.__name__!r}: the shadow must be an array of "
                                 f"the array's shape, dtype and layout ({annotation.value.dtype} "
                                 f"{annotation.value.shape}); use np.zeros_like")
            if np.may_share_memory(shadow, annotation.value):
                raise ValueError(f"argument {index} of {function.__name__!r}: the shadow shares memory with "
                                 "the array itself; pass a separate array (np.zeros_like(x))")


def _argument_types(values) -> tuple:
    from numba import typeof

    try:
        return tuple(typeof(v) for v in values)
    except Exception as error:
        raise TypeError(f"cannot type the kernel's arguments for numba: {error}") from None


def _primal_parameters(kernel: CapturedCudaKernel, values) -> list:
    convention = kernel.captured.convention
    if len(values) != len(convention.arguments):
        raise TypeError(f"kernel {kernel.name!r} takes {len(convention.arguments)} arguments, got {len(values)}")
    parameters = []
    for spec, value in zip(convention.arguments, values):
        if spec.is_array:
            check_array(spec, value)
            parameters.extend(array_parameters(spec, value)[:])
        else:
            parameters.append(scalar_parameter(spec, value))
    parameters.append(None)                     # the shared memory: the driver's, per block
    return parameters


def _compiled_for(function, mode: str, values, kinds, distinct: bool = True,
                  sharing: AdjointSharing = AdjointSharing()) -> _Compiled:
    types = _argument_types(values)
    key = (mode, types, tuple(k.__name__ for k in kinds), distinct, sharing)
    cache = _COMPILED.setdefault(function, {})
    if key not in cache:
        cache[key] = _compile(function, mode, types, kinds, distinct, sharing)
    return cache[key]


def _compile(function, mode: str, types, kinds, distinct: bool, sharing: AdjointSharing) -> _Compiled:
    built = thread_function(function, mode, types, kinds, distinct, sharing)
    module, convention = built.module, built.kernel.captured.convention
    parameter_types = tuple(str(t) for t in built.function.function_type.params)
    stepped = lower_barriers(module, built.function, f"enzpy.cuda.step.{mode}.{convention.entry}")
    keep_only_reachable(module, stepped.step)
    define_atomic_adds(module)
    driver_name = f"enzpy.cuda.blocks.{mode}.{convention.entry}"
    text = write_module(module)
    text += "".join(line + "\n" for line in DRIVER_DECLARATIONS.strip().splitlines()
                    if not re.search(rf'^(declare|define)[^@]*@"?{_declared_name(line)}"?\(', text, re.M))
    text += block_driver(driver_name, stepped, parameter_types, built.shared_parameters)
    compiled = CompiledModule(text, pipeline="post_ad")
    # The driver takes retptr and excinfo too (it makes its own): they are passed as None.
    prototype = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                 *[_ctype(t) for t in parameter_types])
    driver = prototype(compiled.address(driver_name))
    return _Compiled(compiled, _with_private_parameters(driver), built.kernel, built.duplicated, built.active,
                     built.shadowed_shared, built.privatized, text)


def _with_private_parameters(driver):
    """The driver called without retptr and excinfo (it makes its own)."""
    def call(first, last, launch, *parameters):
        return driver(first, last, launch, None, None, *parameters)
    return call


def _declared_name(line: str) -> str:
    return re.escape(line.split("@", 1)[1].split("(", 1)[0])
