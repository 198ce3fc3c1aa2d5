"""llvmlite JIT and a thin wrapper that calls numba-convention entry points.

`compile_module` optimizes (post-AD pipeline by default) and JITs a module;
`NumbaEntryPoint` marshals numpy arrays and scalars into numba's exploded
argument layout, calls the function, and turns its status into a return value
or the Python exception numba would raise.
"""

from __future__ import annotations

import ctypes
import numbers
import pickle
import re
import struct

import llvmlite.binding as llvm
import numpy as np

from .checkpointing.marker import STEP_COUNT_MISMATCH
from .checkpointing.plan import PLAN_FAILED, left_over_snapshots, raise_plan_failure, remove_left_over_snapshots
from .errors import EnzpyError, KernelError
from .mpi import requests as mpi_requests
from .frontend.numba import ArgumentSpec, CallingConvention
from .passes import load_pipeline, target_machine

_CTYPES = {"ptr": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
           "i16": ctypes.c_int16, "i8": ctypes.c_int8, "i1": ctypes.c_bool,
           "double": ctypes.c_double, "float": ctypes.c_float}
_STATUS_OK, _STATUS_NONE = 0, -2


LARGE_DERIVATIVE_INSTRUCTIONS = 10_000
"""Above this many instructions a derivative module gets `post_ad_large` (O2, no vectorization or
unrolling) instead of `post_ad` (O3): see passes/post_ad_large.pipeline for what was measured."""


def post_ad_pipeline(text: str) -> str:
    """The post-AD pipeline for a derivative module's text: by its size in instructions (lines in
    function bodies; one pass over the text, a few ms for the largest modules)."""
    instructions = text.count("\n  ") - text.count("\n  ;")
    return "post_ad_large" if instructions > LARGE_DERIVATIVE_INSTRUCTIONS else "post_ad"


class CompiledModule:
    """A module JIT-compiled by MCJIT; keeps the engine (and so the code) alive."""

    def __init__(self, module: llvm.ModuleRef | str, pipeline: str | None = "post_ad",
                 keep_object_code: bool = False, entries: tuple[str, ...] | None = None):
        """`entries`: the only functions called from outside; every other definition becomes
        internal, so the pipeline may inline it away and drop it (a derivative module holds
        the primal kernel and its callees, which the derivative has inlined: optimizing and
        compiling them again cost a quarter of a large kernel's compile)."""
        if isinstance(module, str):
            module = llvm.parse_assembly(module)
        if entries is not None:
            internalize_all_but(module, entries)
        module.verify()
        if pipeline is not None:
            module = load_pipeline(pipeline).run(module)
        self.module = module
        _check_symbols_resolve(module)
        self.engine = llvm.create_mcjit_compiler(module, target_machine(shared=False))
        self.object_code: bytes | None = None
        """The machine code MCJIT emitted, when `keep_object_code` (`disk_cache` stores it)."""
        if keep_object_code:
            self.engine.set_object_cache(notify_func=self._keep_object_code)
        self.engine.finalize_object()
        self.engine.run_static_constructors()
        self.environments = _bind_numba_environments(self.engine, module)

    def _keep_object_code(self, module, buffer) -> None:
        self.object_code = bytes(buffer)

    @classmethod
    def from_object_code(cls, object_code: bytes, environment_names=()) -> "CompiledModule":
        """Load machine code kept by an earlier `keep_object_code` compile (another process's):
        MCJIT resolves its relocations against this process's symbols."""
        loaded = cls.__new__(cls)
        loaded.module = llvm.parse_assembly("")
        loaded.engine = llvm.create_mcjit_compiler(loaded.module, target_machine(shared=False))
        loaded.engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        loaded.engine.finalize_object()
        loaded.object_code = object_code
        loaded.environments = _bind_environments_by_name(loaded.engine, environment_names)
        return loaded

    def global_address(self, name: str) -> int:
        """Address of a global variable of the compiled module."""
        address = self.engine.get_global_value_address(name)
        if not address:
            raise EnzpyError(f"global {name!r} is not in the compiled module")
        return address

    def address(self, name: str) -> int:
        address = self.engine.get_function_address(name)
        if not address:
            raise EnzpyError(f"function {name!r} is not in the compiled module")
        return address


def internalize_all_but(module: llvm.ModuleRef, entries) -> None:
    """Give every function defined in `module` internal linkage, except `entries`."""
    kept = set(entries)
    for function in module.functions:
        if not function.is_declaration and function.name not in kept and \
                function.linkage == llvm.Linkage.external:
            function.linkage = llvm.Linkage.internal


def _check_symbols_resolve(module: llvm.ModuleRef) -> None:
    """Raise for a called function that neither the module nor the process defines.

    MCJIT gives up resolving relocations at the first symbol it cannot find and
    leaves the rest at address 0: an unrelated call (`free`) then jumps to 0.
    """
    missing = [f.name for f in module.functions if f.is_declaration and not f.name.startswith("llvm.")
               and llvm.address_of_symbol(f.name) is None]
    if not missing:
        return
    text = str(module)
    # A declaration nobody calls costs nothing; its own `declare` line is one mention.
    used = [name for name in missing if len(re.findall(rf'@"?{re.escape(name)}"?[(,) ]', text)) > 1]
    if used:
        raise EnzpyError(f"the compiled code calls {', '.join(sorted(used))}, which neither the module "
                         "nor the running process defines")


def _bind_numba_environments(engine, module: llvm.ModuleRef) -> list:
    """Point each `NumbaEnv` global at numba's live Environment, as numba's codegen does.

    Code that boxes values (a dynamic exception's arguments) stops with
    "missing Environment" while the global is NULL. The returned list keeps
    the environments alive: numba only holds them weakly by name.
    """
    return _bind_environments_by_name(engine, [variable.name for variable in module.global_variables
                                               if variable.name.startswith("_ZN08NumbaEnv")])


def _bind_environments_by_name(engine, names) -> list:
    from numba.core.environment import lookup_environment

    environments = []
    for name in names:
        environment = lookup_environment(name)
        if environment is not None:
            ctypes.c_void_p.from_address(engine.get_global_value_address(name)).value = id(environment)
            environments.append(environment)
    return environments


class _ExceptionInfo(ctypes.Structure):
    # numba's excinfo_t: {i8* serialized, i32 size, i8* hash-or-args, i8* builder, i32 alloc}
    _fields_ = [("serialized", ctypes.c_void_p), ("size", ctypes.c_int32),
                ("extra", ctypes.c_void_p), ("builder", ctypes.c_void_p), ("allocated", ctypes.c_int32)]


def array_parameters(spec: ArgumentSpec, value, data: int | None = None) -> list:
    """The 5 + 2*ndim parameters numba passes for one array (meminfo and parent are NULL).

    `data` replaces the data pointer: a shadow array shares shape and strides.
    """
    check_array(spec, value)
    pointer = value.ctypes.data if data is None else data
    return [None, None, value.size, value.itemsize, pointer, *value.shape, *value.strides]


def check_array(spec: ArgumentSpec, value, role: str = "argument") -> None:
    """Raise a clear error unless `value` fits the array type the kernel was compiled for."""
    if type(value) is np.ndarray and value.dtype == spec.dtype and value.ndim == spec.ndim \
            and (value.flags.writeable or not spec.numba_type.mutable) \
            and (spec.layout != "C" or value.flags.c_contiguous) and (spec.layout != "F" or value.flags.f_contiguous):
        return                            # the common case, checked without building messages
    where = f"{role} {spec.position} ({spec.name!r})"
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(value).__name__}")
    if value.dtype != spec.dtype or value.ndim != spec.ndim:
        raise TypeError(f"{where}: expected a {spec.ndim}-d {spec.dtype} array, "
                        f"got a {value.ndim}-d {value.dtype} array")
    if spec.numba_type.mutable and not value.flags.writeable:
        # numba rejects these too; the kernel may write through the pointer.
        raise TypeError(f"{where}: the kernel was compiled for a writeable array, got a read-only one")
    if spec.layout == "C" and not value.flags.c_contiguous:
        raise TypeError(f"{where}: the kernel was compiled for a C-contiguous array")
    if spec.layout == "F" and not value.flags.f_contiguous:
        raise TypeError(f"{where}: the kernel was compiled for a Fortran-contiguous array")


def scalar_parameter(spec: ArgumentSpec, value):
    """A Python / numpy scalar converted as numba converts it for this argument."""
    where = f"argument {spec.position} ({spec.name!r})"
    if isinstance(value, np.ndarray):
        if value.ndim > 0:
            raise TypeError(f"{where}: expected a scalar, got an array")
        value = value[()]
    if not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"{where}: expected a {spec.dtype} scalar, got {type(value).__name__}")
    if spec.dtype.kind == "b":
        return bool(value)
    if spec.dtype.kind in "iu":
        return int(value)
    return float(value)


class NumbaEntryPoint:
    """Call a JIT-compiled function that follows numba's calling convention."""

    def __init__(self, compiled: CompiledModule, convention: CallingConvention, name: str | None = None):
        self.compiled = compiled
        self.convention = convention
        parameter_ctypes = [_ctype(t) for t in convention.parameter_types]
        prototype = ctypes.CFUNCTYPE(ctypes.c_int32, *parameter_ctypes)
        self.function = prototype(compiled.address(name or convention.entry))

    def __call__(self, *args):
        specs = self.convention.arguments
        if len(args) != len(specs):
            expected = ", ".join(f"{spec.position} ({spec.name!r})" for spec in specs)
            raise TypeError(f"kernel takes {len(specs)} arguments [{expected}], got {len(args)}")
        parameters = []
        for spec, value in zip(specs, args):
            if spec.is_array:
                parameters.extend(array_parameters(spec, value))
            else:
                parameters.append(scalar_parameter(spec, value))
        return self.call_raw(parameters)

    def call_raw(self, parameters: list):
        """Call with already exploded parameters (without retptr / excinfo)."""
        result = ctypes.create_string_buffer(16)
        exception_info = ctypes.c_void_p(0)
        status = self.function(ctypes.addressof(result), ctypes.addressof(exception_info), *parameters)
        if left_over_snapshots():
            remove_left_over_snapshots()       # a checkpointed loop's disk files, if the kernel raised
        if mpi_requests.ERRORS:
            mpi_requests.raise_pending_error()      # a nonblocking MPI derivative's callback failed
        if status not in (_STATUS_OK, _STATUS_NONE):
            raise_kernel_exception(status, exception_info.value)
        return decode_return(self.convention.return_type, result) if status == _STATUS_OK else None


def _ctype(llvm_type: str):
    try:
        return _CTYPES[llvm_type]
    except KeyError:
        raise EnzpyError(f"cannot pass a parameter of LLVM type {llvm_type} from Python") from None


def decode_return(numba_type, buffer) -> object:
    """Read the value the kernel stored through retptr."""
    from numba.core import types

    if numba_type == types.none:
        return None
    if isinstance(numba_type, types.Boolean):
        return bool(buffer.raw[0])
    if numba_type == types.float64:
        return struct.unpack_from("=d", buffer)[0]
    dtype = np.dtype(str(numba_type))
    # numba boxes every scalar result as a Python int / float (float32 included).
    return np.frombuffer(buffer.raw[:dtype.itemsize], dtype)[0].item()


def raise_kernel_exception(status: int, exception_info: int | None):
    """Re-raise the exception numba's kernel described through excinfo."""
    if status == -3:
        raise StopIteration
    if status == PLAN_FAILED:
        raise_plan_failure()
    if status == STEP_COUNT_MISMATCH:
        raise KernelError("a checkpoint_range loop's step did not run the loop's trips one by one "
                          "(an enzpy bug: please report it with the kernel)")
    if status >= 1 and exception_info:
        info = _ExceptionInfo.from_address(exception_info)
        payload = ctypes.string_at(info.serialized, info.size)
        try:
            exception_class, exception_args, location = pickle.loads(payload)
        except Exception:
            raise KernelError(f"kernel raised an exception enzpy cannot decode (status {status})") from None
        if info.builder:
            exception_args = _with_runtime_arguments(exception_args, info)
        raise exception_class(*exception_args)
    raise KernelError(f"kernel failed with status {status}")


def _with_runtime_arguments(static_arguments: tuple, info: _ExceptionInfo) -> tuple:
    """Fill the placeholders of a dynamic exception as numba's CPython wrapper does.

    The kernel stored its runtime values in a native struct (`extra`) and a
    function (`builder`) that boxes them into a tuple; the pickled arguments
    hold an llvmlite value in place of each runtime one.
    """
    from llvmlite import ir

    unwrap = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p)(info.builder)
    runtime_values = iter(unwrap(info.extra))
    return tuple(next(runtime_values) if isinstance(argument, ir.Value) else argument
                 for argument in static_arguments)
