"""Nonblocking MPI in derivatives: the run-time side of the Isend / Irecv / Wait(all) rules.

A nonblocking call's derivative is nonblocking too, and must be completed
where its primal was: the derivative code calls these C callbacks
(registered with LLVM under `enzpy_mpi_*`), which call the same MPI library
through ctypes and keep the pending derivative requests.

- Forward mode: `tangent_post` posts the tangent's Isend / Irecv beside the
  primal one, filed under the primal request's handle; the Wait / Waitall of
  those handles then waits for the tangents too (`tangent_wait`).
- Reverse mode: the forward sweep records each Isend / Irecv under its
  request's handle (`record`: buffer shadow, count, peer, tag). The reverse of
  a Wait(all), which the reverse sweep meets before the calls it completed,
  posts the opposite call for each request it waited for (`post_adjoints`;
  the handles read as they were before the Wait): for an Isend an Irecv into
  a temporary, for an Irecv an Isend of the receive buffer's adjoint. The
  reverse of each Isend / Irecv completes its adjoint call (`complete_adjoint`)
  and adds the temporary into the send buffer's adjoint, or zeroes the
  receive buffer's adjoint: so every rank posts all of a group's adjoint calls
  before it waits for any, and an adjoint is whole before the reverse sweep
  reads it further back.

MPI reuses a request's handle once it completed: records are kept per handle
as stacks, which the reverse sweep unwinds in the opposite order.
"""

from __future__ import annotations

import ctypes
import functools

import llvmlite.binding as llvm
import numpy as np

from .recognition import handle_name

ISEND, IRECV = 0, 1
_FLOAT_TYPES = {"MPI_DOUBLE": np.float64, "MPI_FLOAT": np.float32}


def _library():
    from .recognition import LIBRARY
    return ctypes.CDLL(LIBRARY[-1])       # the library the kernel's own calls go to


@functools.lru_cache(maxsize=1)
def _routines():
    library = _library()
    isend, irecv, wait = library.MPI_Isend, library.MPI_Irecv, library.MPI_Wait
    for routine in (isend, irecv):
        routine.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                            ctypes.c_void_p]
        routine.restype = ctypes.c_int
    wait.argtypes, wait.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
    return isend, irecv, wait


class _Pending:
    """One nonblocking call's derivative: posted, then completed."""

    def __init__(self, kind, shadow, count, datatype, peer, tag, communicator):
        self.dtype = _FLOAT_TYPES[handle_name(datatype)]
        self.kind, self.count, self.datatype = kind, count, datatype
        self.key = (kind, shadow or 0, count, peer, tag, communicator)
        """What the call's reverse names it by (MPICH shares one handle among requests complete at once)."""
        self.peer, self.tag, self.communicator = peer, tag, communicator
        if not shadow or not count:
            # No shadow on this rank (a Const array): a zero stand-in keeps the messages matched.
            self.stand_in = np.zeros(count, self.dtype)
            shadow = self.stand_in.ctypes.data
        self.address = shadow
        self.shadow = np.ctypeslib.as_array(
            (ctypes.c_char * (count * np.dtype(self.dtype).itemsize)).from_address(shadow)).view(self.dtype) \
            if count else np.zeros(0, self.dtype)
        self.request = ctypes.c_int(0)

    def post(self, adjoint: bool) -> "_Pending":
        isend, irecv, _ = _routines()
        self.adjoint = adjoint
        if adjoint and self.kind == ISEND:          # the adjoint of a send: receive into a temporary
            self.buffer = np.zeros(self.count, self.dtype)
            irecv(self.buffer.ctypes.data, self.count, self.datatype, self.peer, self.tag, self.communicator,
                  ctypes.byref(self.request))
        elif self.kind == ISEND or adjoint:          # a send of the tangent; the adjoint of a receive
            isend(self.address, self.count, self.datatype, self.peer, self.tag, self.communicator,
                  ctypes.byref(self.request))
        else:
            irecv(self.address, self.count, self.datatype, self.peer, self.tag, self.communicator,
                  ctypes.byref(self.request))
        return self

    def complete(self) -> None:
        status = (ctypes.c_int * 16)()
        _routines()[2](ctypes.byref(self.request), status)
        if self.adjoint and self.kind == ISEND:
            self.shadow += self.buffer
        elif self.adjoint:
            self.shadow[:] = 0.0


_TANGENTS: dict[int, list[_Pending]] = {}
"""Forward mode: the tangent requests under their primal request's handle."""
_RECORDS: dict[int, list[_Pending]] = {}
"""Reverse mode, forward sweep: the calls made, under their request's handle (a stack each)."""
_POSTED: dict[int, list[_Pending]] = {}
"""Reverse mode: adjoint calls posted by the reverse of a Wait, under the handle, until completed."""
ERRORS: list[BaseException] = []


def _guarded(function):
    """A callback must not raise into generated code: the error is kept for `raise_pending_error`."""
    def guarded(*arguments):
        try:
            function(*arguments)
        except BaseException as error:       # noqa: BLE001
            ERRORS.append(error)
    return guarded


def raise_pending_error() -> None:
    """Raise the first error a callback met during the last derivative call (jit.py calls it)."""
    if ERRORS:
        error = ERRORS[0]
        ERRORS.clear()
        for table in (_TANGENTS, _RECORDS, _POSTED):
            table.clear()
        raise error


def _handles(pointer: int, count: int) -> list[int]:
    return list((ctypes.c_int * count).from_address(pointer)) if count else []


def _handle(pointer: int) -> int:
    return ctypes.c_int.from_address(pointer).value


def tangent_post(kind, shadow, count, datatype, peer, tag, communicator, handle_pointer) -> None:
    pending = _Pending(kind, shadow, count, datatype, peer, tag, communicator).post(adjoint=False)
    _TANGENTS.setdefault(_handle(handle_pointer), []).append(pending)


def tangent_wait(handles_pointer, count) -> None:
    for handle in _handles(handles_pointer, count):
        stack = _TANGENTS.get(handle)
        if stack:                        # (shared handles: any of them, all are waited for here)
            stack.pop().complete()


def record(kind, shadow, count, datatype, peer, tag, communicator, handle_pointer) -> None:
    _RECORDS.setdefault(_handle(handle_pointer), []).append(
        _Pending(kind, shadow, count, datatype, peer, tag, communicator))


def post_adjoints(handles_pointer, count) -> None:
    handles = _handles(handles_pointer, count)
    for handle in dict.fromkeys(handles):
        # The newest records of this handle, one per time it appears (MPICH may give one handle to
        # several requests), posted in the order of the calls.
        stack = _RECORDS.get(handle, [])
        taken = stack[len(stack) - min(handles.count(handle), len(stack)):]
        del stack[len(stack) - len(taken):]
        _POSTED.setdefault(handle, []).extend(pending.post(adjoint=True) for pending in taken)


def complete_adjoint(kind, shadow, count, datatype, peer, tag, communicator, handle_pointer) -> None:
    handle = _handle(handle_pointer)
    stack = _POSTED.get(handle, [])
    key = (kind, shadow or 0, count, peer, tag, communicator)
    for position in range(len(stack) - 1, -1, -1):
        if stack[position].key == key:
            stack.pop(position).complete()
            return
    raise RuntimeError(f"enzpy: the reverse of a nonblocking MPI call found no Wait for its request "
                       f"{handle} (was it completed by a routine without a rule, e.g. MPI_Test?)")


_POST = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_WAIT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)
CALLBACKS = {
    "enzpy_mpi_tangent_post": _POST(_guarded(tangent_post)),
    "enzpy_mpi_tangent_wait": _WAIT(_guarded(tangent_wait)),
    "enzpy_mpi_record": _POST(_guarded(record)),
    "enzpy_mpi_post_adjoints": _WAIT(_guarded(post_adjoints)),
    "enzpy_mpi_complete_adjoint": _POST(_guarded(complete_adjoint)),
}
for _name, _callback in CALLBACKS.items():
    llvm.add_symbol(_name, ctypes.cast(_callback, ctypes.c_void_p).value)
