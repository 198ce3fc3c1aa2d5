"""Label each load and store with the one memory object it stays inside.

LLVM cannot see that the buffers a kernel allocates, their shadows and the
tape are distinct objects (numba's data pointers are loaded from MemInfo
structs), nor that the user's arrays do not overlap when the caller has
checked it. Without that, every store to a shadow forces re-loads of the
other arrays, an adjoint accumulated across a loop stays in memory, and
loops do not vectorize. `label_memory` gives each access whose pointer
derives from a single known object a label (`Load.memory`, `Store.memory`);
the writer turns labels into scoped-noalias metadata, under which accesses
with different labels never overlap. Unlabelled accesses may alias anything.

A stack slot used only through loads, stores and GEPs gets no label: LLVM's
own analysis already knows such a slot overlaps nothing else, and SROA turns
it into registers. The reverse sweep makes one such slot per value it carries
(hundreds on a large kernel), and since each access's `!noalias` lists every
other label, labelling them made the metadata (and LLVM's passes over it)
grow with the square of their number.

Objects, and why each is distinct from the others:

- a stack slot (alloca) whose address escapes (passed to a call, stored,
  merged by a phi), a global variable, an allocation call (a MemInfo and
  the data pointer inside it): fresh memory each;
- a parameter: private parameters (numba's retptr and excinfo) always; the
  others only when the caller checked that its arrays, shadows included, do
  not overlap (`distinct_arguments`); otherwise they share one label.
"""

from __future__ import annotations

from ..frontend.numba import MEMINFO_DATA_OFFSET
from ..ir import core
from ..rules.calls import allocation_rule
from .type_analysis import gep_byte_offset

TAPE = "enzpy.tape"
"""Label of the tape buffer's slots (a heap buffer no other pointer reaches)."""


def private_arguments(function: core.Function, count: int) -> frozenset[core.Argument]:
    """Parameters whose memory no other parameter reaches: the first `count` (numba's retptr and
    excinfo, the C adapter's result slot) and every `noalias` one (C's `restrict`)."""
    return frozenset(function.arguments[:count]) | {a for a in function.arguments if "noalias" in a.attributes}


def label_memory(function: core.Function, distinct_arguments: bool,
                 private_arguments: frozenset[core.Argument] = frozenset()) -> None:
    """Set `memory` on the loads and stores of `function` that stay inside one known object."""
    labels: dict[core.Value, str] = {}

    def label(obj: core.Value) -> str:
        if obj not in labels:
            if isinstance(obj, core.Argument) and not distinct_arguments and obj not in private_arguments:
                labels[obj] = f"{function.name}/parameters"
            else:
                labels[obj] = f"{function.name}/{type(obj).__name__.lower()}{len(labels)}"
        return labels[obj]

    slots = _pointer_slots(function)
    uses = core.uses_of(function)
    for instruction in function.instructions():
        if isinstance(instruction, core.Load):
            pointer = instruction.operands[0]
        elif isinstance(instruction, core.Store):
            pointer = instruction.operands[1]
        else:
            continue
        if instruction.memory is not None or instruction.volatile:
            continue
        obj = memory_object(pointer, slots)
        if obj is not None and not (isinstance(obj, core.Alloca) and not _address_escapes(obj, uses)):
            instruction.memory = label(obj)


def _address_escapes(alloca: core.Alloca, uses: dict[core.Value, list[core.Instruction]]) -> bool:
    """Whether the slot's address reaches anything but the address operand of loads and stores
    (through GEPs): a call, a stored value, a phi, a cast."""
    pending, seen = [alloca], set()
    while pending:
        pointer = pending.pop()
        if pointer in seen:
            continue
        seen.add(pointer)
        for user in uses.get(pointer, ()):
            if isinstance(user, core.Load) and user.operands[0] is pointer and not user.volatile:
                continue
            if isinstance(user, core.Store) and user.operands[1] is pointer and user.operands[0] is not pointer \
                    and not user.volatile:
                continue
            if isinstance(user, core.GetElementPtr) and user.operands[0] is pointer:
                pending.append(user)
                continue
            return True
    return False


def memory_object(pointer: core.Value, slots: dict[core.Alloca, list[core.Value]] | None = None) \
        -> core.Value | None:
    """The one parameter, alloca, global or allocation call `pointer` points into; None if unknown.

    `slots` (from `_pointer_slots`): stack slots holding pointers, with the values stored
    in them; a pointer loaded from one points where those do (the reverse sweep keeps
    shadow pointers in such slots).
    """
    slots = slots or {}
    found: set[core.Value] = set()
    seen: set[core.Value] = set()
    pending = [pointer]
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        if isinstance(value, core.GetElementPtr) or (isinstance(value, core.Cast)
                                                     and value.operands[0].type.is_pointer):
            pending.append(value.operands[0])
        elif isinstance(value, core.Phi):
            pending.extend(value.operands)
        elif isinstance(value, core.Select):
            pending.extend(value.operands[1:])
        elif isinstance(value, (core.ConstantNull, core.Undef, core.Poison)):
            continue                     # no object: an access through it is undefined anyway
        elif isinstance(value, (core.Argument, core.Alloca, core.GlobalVariable)) \
                or allocation_rule(value) is not None:
            found.add(value)
        elif (allocation := _allocation_of_data_pointer(value)) is not None:
            found.add(allocation)
        elif isinstance(value, core.Load) and value.operands[0] in slots:
            pending.extend(slots[value.operands[0]])
        else:
            return None
        if len(found) > 1:
            return None
    return found.pop() if found else None


def _pointer_slots(function: core.Function) -> dict[core.Alloca, list[core.Value]]:
    """Allocas used only as the address of loads and stores of pointers: the values stored."""
    slots: dict[core.Alloca, list[core.Value]] = {}
    for value, users in core.uses_of(function).items():
        if not isinstance(value, core.Alloca):
            continue
        stored = []
        for user in users:
            if isinstance(user, core.Load) and user.type.is_pointer and user.operands[0] is value:
                continue
            if isinstance(user, core.Store) and user.operands[1] is value and user.operands[0] is not value \
                    and user.operands[0].type.is_pointer:
                stored.append(user.operands[0])
                continue
            break
        else:
            slots[value] = stored
    return slots


def _allocation_of_data_pointer(value: core.Value) -> core.Instruction | None:
    """The MemInfo allocation whose data pointer `value` loads (`load ptr, meminfo + 24`)."""
    if not (isinstance(value, core.Load) and value.type.is_pointer):
        return None
    field = value.operands[0]
    if not isinstance(field, core.GetElementPtr):
        return None
    offset, stride = gep_byte_offset(field)
    meminfo = field.operands[0]
    rule = allocation_rule(meminfo)
    if offset == MEMINFO_DATA_OFFSET and stride == 0 and rule is not None and rule.returns_meminfo:
        return meminfo
    return None
