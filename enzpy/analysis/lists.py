"""Which values are reflected lists' MemInfos, and which pointers point into their buffers.

A list's buffer moves when the list grows (`rules/lists.py`), so the reverse
sweep must never keep a pointer into it from the forward sweep: it re-loads
the data pointer from the MemInfo instead. In optimized IR the MemInfo is
the allocation call itself; in unoptimized IR numba keeps the list value
(`{meminfo, parent}`) in stack slots and re-loads it, so the MemInfo is
followed through stores into slots, loads from them, aggregates, phis and
selects. Over-approximating is safe: it only forbids taping a pointer.
"""

from __future__ import annotations

from ..ir import core
from ..ir.types import IntType
from ..rules.lists import HEADER_BYTES, is_list_allocation
from ..rules.typed_lists import is_base_pointer
from .memory_types import pointer_root


def list_meminfos(instructions: list[core.Instruction]) -> frozenset[core.Value]:
    """The values that may be (or hold, in an aggregate) a reflected list's MemInfo."""
    members: set[core.Value] = {i for i in instructions if is_list_allocation(i)}
    slots: set[core.Value] = set()
    changed = bool(members)
    while changed:
        changed = False
        for instruction in instructions:
            if instruction in members:
                continue
            operands = instruction.operands
            if isinstance(instruction, core.Store):
                slot = pointer_root(operands[1])
                if operands[0] in members and isinstance(slot, core.Alloca) and slot not in slots:
                    slots.add(slot)
                    changed = True
                continue
            if isinstance(instruction, core.Load):
                gains = pointer_root(operands[0]) in slots
            elif isinstance(instruction, (core.InsertValue, core.Phi)):
                gains = any(o in members for o in operands)
            elif isinstance(instruction, core.Select):
                gains = any(o in members for o in operands[1:])
            elif isinstance(instruction, (core.ExtractValue, core.Cast)):
                gains = operands[0] in members
            else:
                gains = False
            if gains:
                members.add(instruction)
                changed = True
    return frozenset(members)


def points_into_list(value: core.Value, meminfos: frozenset[core.Value]) -> bool:
    """Whether pointer `value` derives from a data pointer loaded out of a list's MemInfo."""
    if not value.type.is_pointer:
        return False
    root = pointer_root(value)
    if is_base_pointer(root):
        return True                               # a typed list's items (rules/typed_lists.py)
    return isinstance(root, core.Load) and pointer_root(root.operands[0]) in meminfos


def writes_list_header(store: core.Store, meminfos: frozenset[core.Value]) -> bool:
    """Whether `store` writes an integer of a reflected list's header (size, allocated, dirty).

    Forward mode repeats these stores on the shadow list, whose destructor reads the size.
    """
    from .type_analysis import gep_byte_offset     # type analysis imports the list rules, not this module

    value, pointer = store.operands
    if not isinstance(value.type, IntType):
        return False
    offset = 0
    while isinstance(pointer, core.GetElementPtr):
        step, stride = gep_byte_offset(pointer)
        if step is None or stride:
            return False
        offset, pointer = offset + step, pointer.operands[0]
    return isinstance(pointer, core.Load) and pointer_root(pointer.operands[0]) in meminfos \
        and 0 <= offset < HEADER_BYTES
