"""`enzpy.checkpoint_range(n, schedule)`: a `range(n)` that enzpy's reverse mode checkpoints.

In Python it is `range(n)`. Under numba it is `range(m)` with `m` the result of
a call of the external function `enzpy.checkpoint_range(i64 n, i64 schedule)`,
which returns `n` (a tiny function JIT-compiled here and made known to LLVM by
name, so plain `numba.njit` code links and runs at full speed: one call per
loop, not per step). enzpy's pre-AD pass (`outline.py`) finds the loop whose
trip count is that call's result. The second operand is the schedule's number
in a table kept here: an int `s` stands for `Revolve(s)`; a `Revolve`,
`Periodic` or `Online` object for itself (numba freezes it as a constant when
it is a global or a closure variable of the kernel, or built in the kernel
from integer literals).
"""

from __future__ import annotations

import threading

import llvmlite.binding as llvm
import numpy as np
import numba
from numba.core import cgutils, types
from numba.core.imputils import lower_constant
from numba.core.datamodel import models
from numba.extending import intrinsic, overload, register_model, typeof_impl
from llvmlite import ir as llvm_ir

from .schedules import Online, Periodic, Revolve

MARKER = "enzpy.checkpoint_range"
"""The external function whose result bounds a checkpointed loop."""

STEP_COUNT_MISMATCH = -71
"""Status of a checkpointed loop whose step did not run range(n)'s trips (an enzpy bug; jit.py names it)."""

_SCHEDULES: list = []
_LOCK = threading.Lock()


def schedule_number(schedule) -> int:
    """The schedule's number in the table (an int `s` is `Revolve(s)`); the same spec, the same number."""
    spec = Revolve(int(schedule)) if isinstance(schedule, (int, np.integer)) else schedule
    if not isinstance(spec, (Revolve, Periodic, Online)):
        raise TypeError(f"checkpoint_range's schedule must be an int (snapshots) or a Revolve, Periodic "
                        f"or Online, got {schedule!r}")
    with _LOCK:
        if spec not in _SCHEDULES:
            _SCHEDULES.append(spec)
        return _SCHEDULES.index(spec)


def schedule_of(number: int):
    """The schedule spec a marker call names."""
    return _SCHEDULES[number]


def checkpoint_range(n, schedule=20):
    """`range(n)`; in a kernel enzpy differentiates, its loop's reverse sweep follows
    `schedule` (an int: `Revolve(schedule)`, else a `Revolve`, `Periodic` or `Online`)."""
    schedule_number(schedule)           # a bad schedule fails in Python as it does under numba
    return range(n)


class ScheduleType(types.Dummy):
    """The numba type of a schedule spec: the spec's table number is part of the type."""

    def __init__(self, number: int):
        self.number = number
        super().__init__(f"CheckpointSchedule({schedule_of(number)!r})")


for _kind in (Revolve, Periodic, Online):
    @typeof_impl.register(_kind)
    def _typeof_schedule(value, context):
        return ScheduleType(schedule_number(value))


register_model(ScheduleType)(models.OpaqueModel)


@lower_constant(ScheduleType)
def _lower_schedule(context, builder, ty, value):
    return context.get_dummy_value()


@intrinsic
def _marker(typingctx, n, number):
    """The marker call itself: i64 enzpy.checkpoint_range(i64 n, i64 schedule number)."""
    if not isinstance(n, types.Integer) or not isinstance(number, types.IntegerLiteral):
        return None

    def codegen(context, builder, signature, args):
        function_type = llvm_ir.FunctionType(llvm_ir.IntType(64), [llvm_ir.IntType(64)] * 2)
        function = cgutils.get_or_insert_function(builder.module, function_type, MARKER)
        function.attributes.add("nounwind")
        count = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.call(function, [count, context.get_constant(types.int64, number.literal_value)])
    return types.int64(n, number), codegen


@overload(checkpoint_range)
def _checkpoint_range(n, schedule=None):
    if not isinstance(n, types.Integer):
        return None
    if schedule is None or isinstance(schedule, types.Omitted):
        number = schedule_number(20)
    elif isinstance(schedule, ScheduleType):
        number = schedule.number
    elif isinstance(schedule, types.IntegerLiteral):
        number = schedule_number(schedule.literal_value)
    elif isinstance(schedule, types.Integer):
        raise numba.core.errors.TypingError(
            "checkpoint_range's snapshots must be a constant (an integer literal or a global), "
            "so that the schedule is known when the gradient is compiled")
    else:
        return None

    def implementation(n, schedule=None):
        return range(_marker(n, number))
    return implementation


def _install_symbol() -> None:
    """JIT `i64 enzpy.checkpoint_range(i64 n, i64 s) { ret n }` and register its address under
    that name, so that kernels run (and link) under plain numba."""
    module = llvm.parse_assembly(f'define i64 @"{MARKER}"(i64 %n, i64 %s) {{\n  ret i64 %n\n}}\n')
    target = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    _install_symbol.engine = engine           # keeps the code alive
    llvm.add_symbol(MARKER, engine.get_function_address(MARKER))


_install_symbol()
