"""MPI routines and handles in numba's IR, recognized by address.

A numba-mpi call is an indirect call through a pointer numba keeps in a
global of its own:

    @numba.dynamic.globals.7f.. = linkonce global ptr inttoptr (i64 <address> to ptr)
    %f = load ptr, ptr @numba.dynamic.globals.7f..
    %status = call i32 %f(ptr %buffer, ptr %result, i32 %count, i32 %type, i32 %op, i32 %comm)

`name_mpi_calls` asks `dladdr` which symbol `<address>` is; an MPI routine
(`MPI_*`, or `PMPI_*`: MPICH's `MPI_*` are weak aliases of those, and dladdr
may answer either) becomes a direct call of a declaration with the `MPI_*`
name, and the name is registered with LLVM at that address, so the JIT links
the derivative's own MPI calls to the same library. Datatype, operation and
communicator arguments are loads from mpi4py's handle objects at fixed
addresses (`load i64, ptr inttoptr (i64 <address> to ptr)`, truncated for
MPICH's int handles): `constant_handle` reads them at compile time. Addresses
hold within one process only, which is where enzpy compiles and runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re

import llvmlite.binding as llvm

from ..ir import core
from ..ir.types import FunctionType


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


@functools.lru_cache(maxsize=1)
def _dladdr():
    library = ctypes.CDLL(ctypes.util.find_library("dl") or None)
    function = library.dladdr
    function.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    function.restype = ctypes.c_int
    return function


@functools.lru_cache(maxsize=None)
def _symbol_and_library(address: int) -> tuple[str | None, str | None]:
    info = _DlInfo()
    if not _dladdr()(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_sname \
            or info.dli_saddr != address:
        return None, None
    return info.dli_sname.decode(), info.dli_fname.decode() if info.dli_fname else None


def symbol_at(address: int) -> str | None:
    """The exported symbol whose code starts at `address`, or None."""
    return _symbol_and_library(address)[0]


DERIVATIVE_ROUTINES = ("MPI_Send", "MPI_Recv", "MPI_Sendrecv", "MPI_Allreduce", "MPI_Reduce", "MPI_Bcast",
                       "MPI_Comm_rank", "MPI_Comm_size", "MPI_Isend", "MPI_Irecv", "MPI_Wait", "MPI_Barrier")
"""Routines derivative code calls, whether or not the kernel does."""


LIBRARY: list[str] = []
"""Path of the MPI library the kernels call (the last one registered)."""


@functools.lru_cache(maxsize=None)
def _register_library(path: str) -> None:
    """Make LLVM link the derivative code's MPI calls to the library the kernel calls."""
    LIBRARY.append(path)
    library = ctypes.CDLL(path)
    for name in DERIVATIVE_ROUTINES:
        routine = getattr(library, name, None)
        if routine is not None:
            llvm.add_symbol(name, ctypes.cast(routine, ctypes.c_void_p).value)


def mpi_routine_at(address: int) -> str | None:
    """`MPI_Send` for the address of MPI_Send or PMPI_Send; None if not an MPI routine."""
    name = symbol_at(address)
    if name is None:
        return None
    if name.startswith("PMPI_"):
        name = name[1:]
    return name if name.startswith("MPI_") else None


_CONSTANT_ADDRESS = re.compile(r"inttoptr \(i64 (\d+) to ")


def mentions_mpi_routine(text: str) -> bool:
    """Whether a module's LLVM text holds the address of an MPI routine (as numba-mpi's calls do)."""
    return any(mpi_routine_at(int(address)) is not None for address in set(_CONSTANT_ADDRESS.findall(text)))


def _called_address(call: core.Call) -> int | None:
    """The constant address an indirect call goes through (numba's dynamic globals), or None."""
    callee = call.callee
    while isinstance(callee, core.Cast) and callee.type.is_pointer:
        callee = callee.operands[0]
    if isinstance(callee, core.Load):
        callee = callee.operands[0]
        if isinstance(callee, core.GlobalVariable):
            callee = callee.initializer
    if isinstance(callee, core.ConstantExpression) and callee.opcode == "inttoptr" \
            and isinstance(callee.operands[0], core.ConstantInt):
        return callee.operands[0].value
    return None


def name_mpi_calls(module: core.Module) -> int:
    """Make every indirect call of an MPI routine a direct call of `MPI_*`; returns how many."""
    named = 0
    for function in list(module.functions.values()):
        for call in [i for i in function.instructions() if isinstance(i, core.Call)]:
            if isinstance(call.callee, core.Function):
                continue
            address = _called_address(call)
            routine = mpi_routine_at(address) if address is not None else None
            if routine is None:
                continue
            function_type = call.function_type or FunctionType(call.type, tuple(o.type for o in call.operands))
            declared = module.functions.get(routine)
            if declared is None:
                declared = module.get_or_declare(routine, function_type)
            call.callee, call.function_type = declared, declared.function_type
            llvm.add_symbol(routine, address)
            _register_library(_symbol_and_library(address)[1])
            named += 1
    return named


def mpi_routines_in(module: core.Module) -> set[str]:
    """Names of the MPI routines `module`'s functions call."""
    return {i.callee.name for f in module.functions.values() for i in f.instructions()
            if isinstance(i, core.Call) and isinstance(i.callee, core.Function) and i.callee.name.startswith("MPI_")}


def constant_handle(value: core.Value) -> int | None:
    """The MPI handle (datatype, operation) an operand holds, when it is a constant or a load
    from a constant address (read now); None otherwise."""
    width = value.type.width if value.type.is_integer else 64
    while isinstance(value, core.Cast) and value.opcode in ("trunc", "zext", "sext"):
        value = value.operands[0]
    if isinstance(value, core.ConstantInt):
        return _signed(value.value, width)
    if isinstance(value, core.Load) and value.type.is_integer:
        address = value.operands[0]
        if isinstance(address, core.ConstantExpression) and address.opcode == "inttoptr" \
                and isinstance(address.operands[0], core.ConstantInt):
            loaded = ctypes.c_uint64.from_address(address.operands[0].value).value
            return _signed(loaded & ((1 << width) - 1), width)
    return None


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


@functools.lru_cache(maxsize=1)
def handles() -> dict[str, int]:
    """mpi4py's datatype and operation handles by name (MPI_DOUBLE, MPI_SUM, ...), as the
    width the library uses; empty without mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError:
        return {}
    width = 8 * MPI._sizeof(MPI.Datatype)
    names = {"MPI_DOUBLE": MPI.DOUBLE, "MPI_FLOAT": MPI.FLOAT, "MPI_SUM": MPI.SUM, "MPI_MAX": MPI.MAX,
             "MPI_MIN": MPI.MIN, "MPI_PROD": MPI.PROD, "MPI_INT": MPI.INT, "MPI_INT32_T": MPI.INT32_T,
             "MPI_INT64_T": MPI.INT64_T, "MPI_CHAR": MPI.CHAR}
    found = {name: _signed(MPI._handleof(handle), width) for name, handle in names.items()}
    found["MPI_COMM_WORLD"] = _signed(MPI._handleof(MPI.COMM_WORLD), 8 * MPI._sizeof(MPI.Comm))
    found["MPI_ANY_SOURCE"], found["MPI_ANY_TAG"] = MPI.ANY_SOURCE, MPI.ANY_TAG
    found["status bytes"] = MPI._sizeof(MPI.Status)
    return found


def handle_name(handle: int | None) -> str | None:
    """`MPI_DOUBLE` for MPI_DOUBLE's handle, ...; None when unknown."""
    if handle is None:
        return None
    return next((name for name, value in handles().items() if value == handle and name.startswith("MPI_")), None)
