"""Vector reverse mode's lanes: the k adjoints of one float value as one LLVM vector.

With `ReverseSpec.width` k > 1 the reverse sweep carries k cotangents at once
(one forward sweep, one reverse sweep; Enzyme's `width`): every float adjoint is
a `<k x T>` value, a rule's partial is computed once and broadcast over the
lanes, and each lane has shadow memory of its own (k shadow pointers per
duplicated parameter), which the loads and stores of the reverse sweep reach
lane by lane. With k = 1 nothing here is used: adjoints stay scalars.
"""

from __future__ import annotations

from ..analysis.activity import holds_floats
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I32, Type, VectorType
from ..rules import typed_lists
from ..rules.lists import reallocation_rule


def adjoint_type(ty: Type, width: int) -> Type:
    """The type of an adjoint of a `ty` value with `width` lanes."""
    return VectorType(width, ty) if width > 1 and ty.is_float else ty


def broadcast(builder: Builder, value: core.Value, width: int) -> core.Value:
    """`value` in every lane of a `<width x T>` vector."""
    vector: core.Value = core.Undef(VectorType(width, value.type))
    for lane in range(width):
        vector = builder.insert(core.InsertElement(type=vector.type, opcode="insertelement",
                                                   operands=[vector, value, constant_int(I32, lane)]))
    return vector


def lane_of(builder: Builder, vector: core.Value, lane: int) -> core.Value:
    """Lane `lane` of a vector adjoint."""
    return builder.insert(core.ExtractElement(type=vector.type.element, opcode="extractelement",
                                              operands=[vector, constant_int(I32, lane)]))


def gathered(builder: Builder, values: list[core.Value]) -> core.Value:
    """The vector whose lanes are `values` (one per lane)."""
    vector: core.Value = core.Undef(VectorType(len(values), values[0].type))
    for lane, value in enumerate(values):
        vector = builder.insert(core.InsertElement(type=vector.type, opcode="insertelement",
                                                   operands=[vector, value, constant_int(I32, lane)]))
    return vector


def refuse_without_lanes(gradient) -> None:
    """Vector reverse mode covers float arithmetic, loads, stores, copies, sets, allocations and BLAS
    rules (their adjoint code reaches memory only, so it runs once per lane); what else moves
    derivatives is refused by name rather than given one lane. `gradient`: reverse.py's builder."""
    found = []
    if gradient.calls:
        found.append("calls that stay calls")
    communicating = sorted({c.callee.name for c, rule in gradient.memory_calls.items() if rule.communicates})
    if communicating:
        found.append(f"MPI calls ({', '.join(communicating)})")
    if gradient.spec.atomic_adjoints or gradient.spec.caller_continues:
        found.append("prange loops, CUDA kernels and callees' gradients")
    for block in gradient.forward_blocks:
        for instruction in block.instructions:
            if typed_lists.typed_list_operation(instruction) or reallocation_rule(instruction) is not None:
                found.append("lists")
            elif gradient.activity.is_active(instruction) and not instruction.type.is_float \
                    and holds_floats(instruction.type):
                found.append(f"derivatives through aggregates ({instruction.type})")
    if found:
        raise DifferentiationError(f"vector reverse mode (width {gradient.width}) does not support "
                                   f"{', '.join(dict.fromkeys(found))} in @{gradient.primal.name} yet; "
                                   "use width=1")
