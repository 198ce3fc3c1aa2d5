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


def merged_roots(pointer: core.Value) -> set[core.Value]:
    """The roots of every pointer a phi or select may pass on as `pointer` (numba's reductions
    walk an array with a pointer phi)."""
    roots, seen, pending = set(), set(), [pointer]
    while pending:
        value = pointer_root(pending.pop())
        if value in seen:
            continue
        seen.add(value)
        if isinstance(value, core.Phi):
            pending.extend(value.operands)
        elif isinstance(value, core.Select):
            pending.extend(value.operands[1:])
        else:
            roots.add(value)
    return roots


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


def _reference_counting(name: str) -> bool:
    """NRT_incref / NRT_decref, or forward mode's mirror of one on a shadow."""
    return name.removeprefix("enzpy.forward.shadow.") in ("NRT_incref", "NRT_decref")


def only_reference_counted(value: core.Instruction, uses: dict | None = None) -> bool:
    """Whether `value` (and the phis and selects merging it) only reach NRT_incref / NRT_decref.

    LLVM sinks the decrefs of two MemInfos into one call on a phi of both: such
    a phi merges pointers to unrelated memory (a float array's and an integer
    array's) that nothing reads through it.
    """
    if uses is None:
        function = value.parent.parent if value.parent is not None else None
        if function is None:
            return False
        uses = core.uses_of(function)
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for user in uses.get(current, ()):
            if isinstance(user, core.Phi) or (isinstance(user, core.Select) and user.operands[0] is not current):
                pending.append(user)
            elif not (isinstance(user, core.Call) and _reference_counting(getattr(user.callee, "name", ""))):
                return False
    return True
