"""`enzpy.checkpoint_range(n, schedule)`: a `range(n)` that enzpy's reverse mode checkpoints.

In Python it is `range(n)`. Under numba it is `range(m)` with `m` the result of
a call of the external function `enzpy.checkpoint_range(i64 n, i64 schedule)`,
which returns `n` (a tiny function JIT-compiled here and made known to LLVM by
name, so plain `numba.njit` code links and runs at full speed: one call per
loop, not per step). enzpy's pre-AD pass (`outline.py`) finds the loop whose
trip count is that call's result. The second operand is the schedule's number
in a table kept here: an int `s` stands for `Revolve(s)`; a `Revolve`,
`Periodic` or `Online` object for itself: a global or closure variable of the
kernel (numba freezes it as a constant), or built in the kernel from literals
(`checkpoint_range(n, Periodic(10))`).
"""

from __future__ import annotations

import threading

import llvmlite.binding as llvm
import numpy as np
import numba
from numba.core import cgutils, types
from numba.core.imputils import lower_builtin, lower_constant
from numba.core.datamodel import models
from numba.extending import intrinsic, overload, register_model, type_callable, typeof_impl
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
    `schedule` (an int: `Revolve(schedule)`, else a `Revolve`, `Periodic` or `Online`).

    >>> import numpy as np
    >>> from enzpy import Revolve, checkpoint_range, differentiate
    >>> @differentiate
    ... def decay(u0, rate, steps):
    ...     u = u0.copy()
    ...     for _ in checkpoint_range(steps, Revolve(2)):   # 2 snapshots, whatever the length
    ...         u *= 1.0 - rate
    ...     return np.sum(u)
    >>> decay.value_and_grad(np.array([1.0, 2.0]), 0.5, 3)
    (0.375, (array([0.125, 0.125]), -2.25, None))
    >>> run, = decay.explain(np.array([1.0, 2.0]), 0.5, 3).checkpoint_runs
    >>> run.steps, run.recomputed_steps
    (3, 2)
    >>> list(checkpoint_range(4, 2))                     # in Python: range(4)
    [0, 1, 2, 3]
    """
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


def _literal(value_type):
    """The Python value of a literal argument type (None for an omitted one), else raise."""
    if value_type is None or isinstance(value_type, (types.NoneType, types.Omitted)):
        return getattr(value_type, "value", None)
    if isinstance(value_type, types.Literal):
        return value_type.literal_value
    raise numba.core.errors.TypingError(
        "a checkpointing schedule built in a kernel takes constants (integer or string literals)")


def _schedule_typer(kind, make):
    """A numba typer for `kind(...)` in a kernel: `make` builds the spec from the literal values
    (explicit parameters: numba folds keyword arguments by the typer's signature)."""
    def typer(*literals):
        try:
            spec = make(*map(_literal, literals))
        except numba.core.errors.TypingError:
            return None        # numba tries again with literal types
        return ScheduleType(schedule_number(spec))
    return typer


def _type_revolve(context):
    def typer(snapshots, disk_snapshots=None, directory=None):
        return _schedule_typer(Revolve, lambda s, d, path: Revolve(s, d or 0, path))(
            snapshots, disk_snapshots, directory)
    return typer


def _type_periodic(context):
    def typer(every, directory=None):
        return _schedule_typer(Periodic, Periodic)(every, directory)
    return typer


def _type_online(context):
    def typer(snapshots, period=None, directory=None):
        return _schedule_typer(Online, lambda s, p, path: Online(s, 100 if p is None else p, path))(
            snapshots, period, directory)
    return typer


# `checkpoint_range(n, Revolve(20))` written in the kernel: the spec is known when it compiles.
for _kind, _typer in ((Revolve, _type_revolve), (Periodic, _type_periodic), (Online, _type_online)):
    type_callable(_kind)(_typer)

    @lower_builtin(_kind, types.VarArg(types.Any))
    def _lower_schedule_call(context, builder, signature, args):
        return context.get_dummy_value()


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
