"""Which pointer parameters a function may write through (its output arrays).

`jacobian` needs to know which arrays of an in-place kernel are outputs. A
pointer parameter counts as written when a store, memset, memcpy / memmove
destination, atomic, or a call that is neither inactive nor a known read
receives a pointer derived from it (GEP, cast, phi, select). Conservative:
a phi that merges two arrays makes both written.
"""

from __future__ import annotations

from ..ir import core
from ..parallel.launches import is_loop_function
from .memory_types import pointer_root
from ..rules.calls import is_inactive_call, is_memory_transfer, written_operands
from ..rules.registry import scalar_rule


def written_parameters(function: core.Function) -> set[int]:
    """Indices of `function`'s pointer parameters whose memory it may modify."""
    derived: dict[core.Value, set[int]] = {a: {i} for i, a in enumerate(function.arguments) if a.type.is_pointer}
    changed = True
    while changed:
        changed = False
        for instruction in function.instructions():
            if isinstance(instruction, (core.GetElementPtr, core.Cast)):
                sources = instruction.operands[:1]
            elif isinstance(instruction, (core.Phi, core.Select)):
                sources = instruction.operands
            else:
                continue
            gained = set().union(*(derived.get(v, set()) for v in sources)) - derived.get(instruction, set())
            if gained:
                derived.setdefault(instruction, set()).update(gained)
                changed = True
    written: set[int] = set()
    # A prange loop (parallel/launches.py) gets its arrays' pointers in a stack array: what it
    # may write is whatever is stored there.
    launch_slots = {pointer_root(o) for i in function.instructions()
                    if isinstance(i, core.Call) and is_loop_function(i.callee) for o in i.operands}
    for instruction in function.instructions():
        if isinstance(instruction, core.Store) and pointer_root(instruction.operands[1]) in launch_slots:
            written |= derived.get(instruction.operands[0], set())
        for target in write_targets(instruction):
            written |= derived.get(target, set())
    return written


def write_targets(instruction: core.Instruction) -> list[core.Value]:
    """The pointers `instruction` may write through (a call that is neither inactive nor a known
    read: all its operands)."""
    if isinstance(instruction, core.Store):
        return instruction.operands[1:2]
    if isinstance(instruction, (core.AtomicRMW, core.CmpXchg)):
        return instruction.operands[:1]
    if not isinstance(instruction, core.Call) or is_inactive_call(instruction) \
            or scalar_rule(instruction) is not None:
        return []
    if is_memory_transfer(instruction):
        return instruction.operands[:1]          # the source is only read
    if written_operands(instruction) is not None:
        return written_operands(instruction)     # BLAS writes only its outputs
    return instruction.operands
