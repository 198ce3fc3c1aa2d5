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
