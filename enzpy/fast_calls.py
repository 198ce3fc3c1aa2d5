"""`value_and_grad`'s fast path: one numba-compiled trampoline per argument types.

A `value_and_grad` call from Python spends tens of microseconds in Python before
the gradient runs: annotations, shadow allocation, the overlap check of the
arrays, numba's exploded parameters, a ctypes call with one argument per
extent and stride. For the common case the trampoline does all of it in
compiled code: numba's dispatcher unboxes the arguments once, the trampoline
checks that no two arrays overlap, allocates the zero shadows, and calls the
compiled gradient (the one for distinct arrays) directly by its address, as
`enzpy.autodiff` inside njit code does (`numba_calls`).

The fast path is taken only where it is the same computation as the general
path: a float result; every argument a float / integer / bool scalar or a
C-contiguous, writeable, aligned array (float arrays get gradients, float
scalars are Active, the rest Const, as `value_and_grad`'s defaults; with
`wrt`, the arguments it does not name are Const); not a prange kernel; no MPI and no checkpointed loop in the gradient
(their calls report through Python-side state). Where the arrays overlap, the
trampoline says so before anything runs and the call goes the general way (a
gradient for overlapping arrays); a kernel that raises has its exception
raised from numba's exception info, as on the general path, so nothing runs
twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .annotations import Active, Duplicated
from .arguments import default_annotations
from .jit import raise_kernel_exception
from .selection import differentiated_positions

_OVERLAP = -100
"""Status of a trampoline call whose arrays overlap: nothing ran."""

_PYTHON_SIDE_SYMBOLS = ("enzpy_checkpoint_", "enzpy_mpi_", "MPI_")
"""Calls in a gradient that report through Python (left-over snapshots, MPI errors)."""


@dataclass(frozen=True)
class FastGradient:
    """A compiled trampoline for one tuple of argument types."""

    run: object
    """The njit trampoline: arguments -> (status, value, exception info, shadows..., Active derivatives...)."""
    kinds: tuple[type, ...]
    """Each argument's annotation (Duplicated float arrays, Active float scalars, Const)."""
    shadow_count: int
    """How many Duplicated arguments (their shadows come first in the trampoline's result)."""


def call_key(args, wrt=None) -> tuple | None:
    """What decides the trampoline for `args` and `wrt` (None: the fast path does not apply)."""
    key = [_wrt_key(wrt)]
    if key[0] is None:
        return None
    for value in args:
        kind = type(value)
        if kind is np.ndarray:
            flags = value.flags
            if not (flags.c_contiguous and flags.writeable and flags.aligned):
                return None
            key.append((value.dtype, value.ndim))
        elif kind is int:
            if not -2**63 <= value < 2**63:       # numba would type it uint64 or refuse it
                return None
            key.append(kind)
        elif kind in (float, bool) or isinstance(value, (np.floating, np.integer, np.bool_)):
            key.append(kind)
        else:
            return None
    return tuple(key)


def _wrt_key(wrt):
    """`wrt` as part of a key: ("all",), ("one", i) or ("some", i, j, ...); None for anything else
    (the general path checks it and says what is wrong)."""
    if wrt is None:
        return ("all",)
    if type(wrt) is int:
        return ("one", wrt)
    if type(wrt) is tuple and all(type(i) is int for i in wrt):
        return ("some", *wrt)
    return None


def value_and_grad(fast: FastGradient, args):
    """(value, gradients aligned with args), or None when the call must go the general way."""
    outcome = fast.run(*args)
    status = outcome[0]
    if status == _OVERLAP:
        return None
    if status not in (0, -2):
        raise_kernel_exception(status, outcome[2] or None)     # the kernel's own exception, as call_raw
    results = outcome[3:]            # the shadows in argument order, then the Active derivatives
    shadow_count = fast.shadow_count
    shadow_index = active_index = 0
    gradients = []
    for kind in fast.kinds:
        if kind is Duplicated:
            gradients.append(results[shadow_index])
            shadow_index += 1
        elif kind is Active:
            gradients.append(results[shadow_count + active_index])
            active_index += 1
        else:
            gradients.append(None)
    return outcome[1], tuple(gradients)


def build(differentiable, args, wrt=None) -> FastGradient | None:
    """The trampoline for these arguments' types (and `wrt`: the arguments it does not name are
    Const), or None where the general path is needed."""
    if getattr(differentiable.dispatcher, "targetoptions", {}).get("parallel"):
        return None
    annotated = default_annotations(args, None if wrt is None else differentiated_positions(differentiable, args, wrt))
    gradient = differentiable._gradient_for(annotated, True)
    if any(symbol in gradient.module_text for symbol in _PYTHON_SIDE_SYMBOLS) or not gradient.seeded:
        return None
    kinds = tuple(type(a) for a in annotated)
    call = _gradient_intrinsic(gradient, kinds)
    value_zero = np.dtype(str(gradient.entry.convention.return_type)).type(0.0)
    active_zeros = [np.asarray(a).dtype.type(0.0) for a, kind in zip(args, kinds) if kind is Active]
    run = _trampoline(call, kinds, [isinstance(a, np.ndarray) for a in args], value_zero, active_zeros)
    return FastGradient(run, kinds,
                        sum(kind is Duplicated for kind in kinds))


def _trampoline(call, kinds, is_array, value_zero, active_zeros) -> object:
    """The njit function: overlap check, zero shadows, the gradient's call, its results."""
    names = [f"argument{i}" for i in range(len(kinds))]
    arrays = [name for name, array in zip(names, is_array) if array]
    shadows = [f"shadow{i}" for i, kind in enumerate(kinds) if kind is Duplicated]
    active_count = sum(kind is Active for kind in kinds)
    lines = [f"def trampoline({', '.join(names)}):"]
    # [start, end) of each array's bytes: C-contiguous, so the span is exact.
    for index, name in enumerate(arrays):
        lines.append(f"    start{index} = {name}.ctypes.data")
        lines.append(f"    end{index} = start{index} + {name}.nbytes")
    overlaps = [f"(start{i} < end{j} and start{j} < end{i})" for i in range(len(arrays))
                for j in range(i + 1, len(arrays))]
    for i, kind in enumerate(kinds):
        if kind is Duplicated:
            lines.append(f"    shadow{i} = np.zeros_like({names[i]})")
    results = ", ".join([*shadows, *(f"result[{3 + k}]" for k in range(active_count))])
    zeros = ", ".join([*shadows, *(f"active_zero{k}" for k in range(active_count))])
    condition = " or ".join(overlaps) if overlaps else "False"
    lines.append(f"    if {condition}:")
    lines.append(f"        return (np.int32({_OVERLAP}), value_zero, np.int64(0), {zeros}{',' if zeros else ''})")
    lines.append(f"    result = call({', '.join(names + shadows)})")
    lines.append(f"    return (result[0], result[1], result[2], {results}{',' if results else ''})")
    namespace = {"np": np, "call": call, "value_zero": value_zero,
                 **{f"active_zero{k}": zero for k, zero in enumerate(active_zeros)}}
    exec(compile("\n".join(lines), "<enzpy trampoline>", "exec"), namespace)  # noqa: S102 (generated)
    return njit(namespace["trampoline"])


def _gradient_intrinsic(gradient, kinds):
    """A numba intrinsic calling the compiled gradient: (args..., shadows...) ->
    (status, value, numba's exception info pointer, Active derivatives...)."""
    convention = gradient.entry.convention
    address = gradient.entry.compiled.address(convention.entry)
    parameter_types = convention.parameter_types
    value_type = convention.return_type
    actives = [i for i, kind in enumerate(kinds) if kind is Active]

    def type_call(argument_types):
        active_types = [argument_types[i] for i in actives]
        result = types.Tuple((types.int32, value_type, types.int64, *active_types))
        return result(*argument_types), lambda c, b, s, a: _codegen(c, b, s, a, len(kinds))

    # numba's intrinsics take their parameters by name (a *args typer is a tuple at lowering).
    count = len(kinds) + sum(kind is Duplicated for kind in kinds)
    parameters = ", ".join(f"p{i}" for i in range(count))
    namespace = {"type_call": type_call}
    exec(f"def typer(context, {parameters}):\n    return type_call(({parameters},))", namespace)  # noqa: S102
    typer = namespace["typer"]

    def _codegen(context, builder, signature, values, arity):
        primal_types, primal_values = signature.args[:arity], values[:arity]
        parameters = []
        for ty, value in zip(primal_types, primal_values):
            if isinstance(ty, types.Array):
                array = context.make_array(ty)(context, builder, value)
                parameters += [array.meminfo, array.parent, array.nitems, array.itemsize, array.data,
                               *cgutils.unpack_tuple(builder, array.shape),
                               *cgutils.unpack_tuple(builder, array.strides)]
            else:
                parameters.append(value)
        extra = [context.make_array(ty)(context, builder, value).data
                 for ty, value in zip(signature.args[arity:], values[arity:])]
        outputs = []
        for i in actives:
            slot = cgutils.alloca_once_value(builder, context.get_constant(primal_types[i], 0.0))
            outputs.append(slot)
            extra.append(slot)
        extra.append(context.get_constant(value_type, 1.0))          # the seed
        retptr = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(8), 16))
        excinfo = cgutils.alloca_once(builder, ir.IntType(8).as_pointer())
        pointer = ir.IntType(8).as_pointer()
        all_parameters = [builder.bitcast(retptr, pointer), excinfo] + parameters + extra
        all_parameters = [value if parameter_types[k] != "ptr" or value.type == pointer
                          else builder.bitcast(value, pointer) for k, value in enumerate(all_parameters)]
        function_type = ir.FunctionType(ir.IntType(32), [v.type for v in all_parameters])
        function = builder.inttoptr(ir.Constant(ir.IntType(64), address), function_type.as_pointer())
        status = builder.call(function, all_parameters)
        value_llvm = context.get_value_type(value_type)
        value = builder.load(builder.bitcast(retptr, value_llvm.as_pointer()))
        loaded = [builder.load(slot) for slot in outputs]
        exception = builder.ptrtoint(builder.load(excinfo), ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, [status, value, exception, *loaded])

    typer.__name__ = f"enzpy_gradient_of_{convention.entry[:40]}"
    return intrinsic(typer)
