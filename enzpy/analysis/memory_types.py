"""Which float type a region of memory holds (a small first piece of type analysis).

AD needs this where an operation moves bytes without saying what they are:
`memcpy` / `memmove` of differentiable memory. A pointer is traced back to
its root (argument, allocation, alloca); the root's float type is the one
every float load and store through pointers with the same root agrees on,
or the type the caller declares for it (a Duplicated array's dtype).
"""

from __future__ import annotations

from ..errors import DifferentiationError
from ..ir import core
from ..ir.types import Type


def pointer_root(pointer: core.Value) -> core.Value:
    """Follow GEPs and pointer casts to the value a pointer was derived from."""
    seen = set()
    while isinstance(pointer, (core.GetElementPtr, core.Cast)) and pointer not in seen:
        seen.add(pointer)
        pointer = pointer.operands[0]
    return pointer


def memory_float_type(function: core.Function, pointer: core.Value,
                      declared: dict[core.Value, Type]) -> Type | None:
    """The float type stored behind `pointer`'s root; None when only non-floats are seen."""
    root = pointer_root(pointer)
    if root in declared:
        return declared[root]
    found = set()
    for instruction in function.instructions():
        if isinstance(instruction, core.Load) and instruction.type.is_float:
            address = instruction.operands[0]
        elif isinstance(instruction, core.Store) and instruction.operands[0].type.is_float:
            address = instruction.operands[1]
        else:
            continue
        if pointer_root(address) is root:
            found.add(instruction.type if isinstance(instruction, core.Load) else instruction.operands[0].type)
    if len(found) > 1:
        raise DifferentiationError(f"memory behind {root.name or 'a pointer'} in @{function.name} holds "
                                   f"several float types ({', '.join(sorted(map(str, found)))})")
    return found.pop() if found else None


def float_allocations(function: core.Function, allocations: list[core.Instruction],
                      float_roots: set[core.Value]) -> set[core.Instruction]:
    """The numba MemInfo allocations through which float data is read, written or copied.

    An allocation returns a MemInfo and its data pointer is loaded out of it,
    so accesses rooted at the MemInfo or at a pointer loaded from it count. A
    copy from float memory makes the destination float memory too, which may
    chain through several allocations: iterate to a fixpoint.
    """
    roots_of = {a: {a} for a in allocations}
    for instruction in function.instructions():
        if isinstance(instruction, core.Load) and instruction.type.is_pointer:
            root = pointer_root(instruction.operands[0])
            if root in roots_of:
                roots_of[root].add(instruction)
    accessed, copies = set(), []
    for instruction in function.instructions():
        if isinstance(instruction, core.Load) and instruction.type.is_float:
            accessed.add(pointer_root(instruction.operands[0]))
        elif isinstance(instruction, core.Store) and instruction.operands[0].type.is_float:
            accessed.add(pointer_root(instruction.operands[1]))
        elif isinstance(instruction, core.Call) and getattr(instruction.callee, "name", "").startswith(
                ("llvm.memcpy.", "llvm.memmove.")):
            copies.append(tuple(pointer_root(p) for p in instruction.operands[:2]))
    known = set(float_roots)
    found = {a for a in allocations if roots_of[a] & accessed}
    changed = True
    while changed:
        known |= {r for a in found for r in roots_of[a]}
        changed = False
        for allocation in allocations:
            if allocation not in found and any(d in roots_of[allocation] and s in known for d, s in copies):
                found.add(allocation)
                changed = True
    return found
