"""Activity analysis: which pointers have shadows and which floats carry derivatives.

Three fixpoints over one function:

- *shadowed pointers*: pointers that may point into memory with a shadow
  (derivative) copy: the roots (duplicated array data, the seeded return slot,
  allocations that hold floats, given by the caller) and everything derived from them by GEP, cast, phi,
  select, or by loading a pointer out of shadowed memory;
- *varied* floats: those that can depend on an active input (an active scalar
  argument or a float loaded from shadowed memory);
- *useful* floats: those that can influence an active output (a float stored
  to shadowed memory, which includes the seeded return slot).

A float is active when it is both varied and useful; only active values get
derivative code. Integers never carry derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import core
from ..ir.types import ArrayType, StructType
from .memory_types import pointer_root
from ..rules.calls import is_inactive_call
from ..rules.lists import reallocation_rule
from ..rules.typed_lists import is_base_pointer
from ..rules.registry import scalar_rule


@dataclass
class Activity:
    """Result of the analysis for one function."""

    shadowed: set[core.Value] = field(default_factory=set)
    """Pointer values that have a shadow pointer."""
    varied: set[core.Value] = field(default_factory=set)
    """Float values that may depend on an active input."""
    useful: set[core.Value] = field(default_factory=set)
    """Float values that may influence an active output."""

    def is_active(self, value: core.Value) -> bool:
        return value in self.varied and value in self.useful


def _is_float(value: core.Value) -> bool:
    return value.type.is_float


def analyze(function: core.Function, shadow_roots: set[core.Value], active_scalars: set[core.Value],
            pointer_slots: set[core.Value] = frozenset()) -> Activity:
    """Run the three fixpoints; roots are pointer values, active scalars float arguments.

    `pointer_slots` (allocas without float fields) become shadowed only when a
    shadowed pointer is stored into them: the shadow then has to follow it.
    """
    activity = Activity(shadowed=set(shadow_roots), varied=set(active_scalars))
    instructions = list(function.instructions())
    _propagate_shadows(instructions, activity.shadowed, pointer_slots)
    _propagate_varied(instructions, activity)
    _propagate_useful(instructions, activity)
    return activity


def holds_pointers(ty) -> bool:
    """Pointers, and aggregates with a pointer field (numba's array struct), can have shadows."""
    if ty.is_pointer:
        return True
    if isinstance(ty, StructType):
        return any(holds_pointers(e) for e in ty.elements)
    return isinstance(ty, ArrayType) and holds_pointers(ty.element)


def _propagate_shadows(instructions, shadowed: set[core.Value], pointer_slots) -> None:
    changed = True
    while changed:
        changed = False
        for instruction in instructions:
            if isinstance(instruction, core.Store) and instruction.operands[0] in shadowed:
                slot = pointer_root(instruction.operands[1])
                if slot in pointer_slots and slot not in shadowed:
                    shadowed.add(slot)
                    changed = True
            if instruction in shadowed or not holds_pointers(instruction.type):
                continue
            if isinstance(instruction, core.InsertValue):
                gains = any(v in shadowed for v in instruction.operands)
            elif isinstance(instruction, core.ExtractValue):
                gains = instruction.operands[0] in shadowed
            elif isinstance(instruction, (core.GetElementPtr, core.Cast)):
                gains = instruction.operands[0] in shadowed
            elif isinstance(instruction, core.Phi):
                gains = any(v in shadowed for v in instruction.operands)
            elif isinstance(instruction, core.Select):
                gains = any(v in shadowed for v in instruction.operands[1:])
            elif isinstance(instruction, core.Load):
                gains = instruction.operands[0] in shadowed
            elif reallocation_rule(instruction) is not None or is_base_pointer(instruction):
                gains = instruction.operands[0] in shadowed      # a list's items: the shadow list's
            else:
                gains = False
            if gains:
                shadowed.add(instruction)
                changed = True


def _carries_derivative(instruction: core.Instruction) -> bool:
    """Instructions through which a varied operand makes the result varied."""
    if isinstance(instruction, (core.Phi, core.Select)):
        return True
    if isinstance(instruction, core.Call) and is_inactive_call(instruction):
        return False
    return scalar_rule(instruction) is not None or isinstance(instruction, core.Call) \
        or isinstance(instruction, (core.BinaryOperator, core.UnaryOperator, core.Cast))


def _may_store_floats(instruction: core.Instruction, shadowed: set[core.Value]) -> bool:
    return isinstance(instruction, core.Call) and not is_inactive_call(instruction) \
        and scalar_rule(instruction) is None and any(o in shadowed for o in instruction.operands)


def holds_floats(ty) -> bool:
    if ty.is_float:
        return True
    if isinstance(ty, StructType):
        return any(holds_floats(e) for e in ty.elements)
    element = getattr(ty, "element", None)
    return element is not None and holds_floats(element)


def _propagate_varied(instructions, activity: Activity) -> None:
    """Floats, and aggregates with float fields, that may depend on an active input.

    Aggregates are tracked so that a derivative moving through one is noticed
    (and reported) instead of silently dropped.
    """
    varied, shadowed = activity.varied, activity.shadowed
    changed = True
    while changed:
        changed = False
        for instruction in instructions:
            if instruction in varied or not holds_floats(instruction.type):
                continue
            if isinstance(instruction, core.Load):
                gains = instruction.operands[0] in shadowed
            elif isinstance(instruction, (core.InsertValue, core.ExtractValue, core.VectorOperation)):
                gains = any(v in varied for v in instruction.operands)
            elif isinstance(instruction, core.Select):
                gains = any(v in varied for v in instruction.operands[1:])
            elif _carries_derivative(instruction):
                gains = any(v in varied for v in instruction.operands)
            else:
                gains = False
            if gains:
                varied.add(instruction)
                changed = True


def _propagate_useful(instructions, activity: Activity) -> None:
    useful, varied = activity.useful, activity.varied
    for instruction in instructions:
        if isinstance(instruction, core.Store):
            value, pointer = instruction.operands
            if pointer in activity.shadowed and value in varied:
                useful.add(value)
        elif _may_store_floats(instruction, activity.shadowed):
            # A call given shadowed memory (a callee differentiated across the call,
            # ad/calls.py) may store there what it computes from its float arguments.
            useful.update(o for o in instruction.operands if o in varied)
    changed = True
    while changed:
        changed = False
        for instruction in reversed(instructions):
            if instruction not in useful or isinstance(instruction, core.Load):
                continue
            operands = instruction.operands[1:] if isinstance(instruction, core.Select) else instruction.operands
            for operand in operands:
                if operand in varied and operand not in useful:
                    useful.add(operand)
                    changed = True
