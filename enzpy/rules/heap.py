"""C and C++ heap memory inside a differentiated function: malloc, calloc, new; free, delete.

A block the function allocates gets a shadow block of the same size, zero
filled, as numba's allocations do (`calls.AllocationRule`). The reverse sweep
frees the shadow where it passes the allocation (nothing later reads it); the
primal block is freed where the program frees it, in the forward sweep: a
heap block is never re-loaded by the reverse sweep (`OverwriteAnalysis`
treats allocations as not live), so the values the reverse code needs from it
are on the tape, and a `free` clobbers only its own block. Forward mode frees
the shadow with the primal (`DEALLOCATORS`, mirrored on the shadow).

`realloc` is left without a rule: a call to it with differentiable memory is
an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import core
from ..ir.builder import Builder
from .calls import AllocationRule, register_allocation_rule

DEALLOCATORS = {"free": "free", "_ZdlPv": "_ZdlPv", "_ZdaPv": "_ZdaPv", "_ZdlPvm": "_ZdlPv", "_ZdaPvm": "_ZdaPv"}
"""Functions that free a heap block, and the one-argument function that frees its shadow."""


@dataclass(frozen=True)
class HeapAllocationRule(AllocationRule):
    """`malloc(bytes)` / `operator new(bytes)`: the shadow comes from the same allocator."""

    release: str = "free"
    """What frees a block of this allocator (and so the shadow)."""

    @property
    def shadow_release(self) -> str:
        return self.release


@dataclass(frozen=True)
class CallocRule(HeapAllocationRule):
    """`calloc(count, size)`: the shadow is calloc'd too, so it comes zero filled."""

    def allocate_shadow(self, builder: Builder, call: core.Call) -> core.Value:
        return builder.call(call.callee, call.operands, name="shadow.allocation")


for _name, _release in (("malloc", "free"), ("_Znwm", "_ZdlPv"), ("_Znam", "_ZdaPv")):
    register_allocation_rule(HeapAllocationRule(_name, returns_meminfo=False, release=_release))
register_allocation_rule(CallocRule("calloc", returns_meminfo=False))


def deallocation(call: core.Instruction) -> str | None:
    """The name of the heap function `call` frees a block with, or None."""
    if isinstance(call, core.Call) and isinstance(call.callee, core.Function):
        return call.callee.name if call.callee.name in DEALLOCATORS else None
    return None


_DERIVING = (core.GetElementPtr, core.Cast)
"""Pointers into the same block (a phi or select merging blocks makes it escape: its free is shared)."""


def kept_heap_blocks(blocks, once_blocks) -> dict[core.Call, list[core.Call]]:
    """Heap blocks the reverse sweep keeps alive instead of the program's free: {allocation: its frees}.

    A block allocated once (outside loops, on every path) that the function frees and never lets
    escape (only loaded from, stored into, copied, set, freed) is freed where the reverse sweep
    passes its allocation instead: its loads are then re-loaded rather than kept on the tape, which
    for the work arrays of ADBench-style C code is most of the tape. Blocks allocated in loops keep
    the program's free (keeping each iteration's block would cost more than its cached values).
    """
    from .calls import allocation_rule, is_memory_transfer, is_memset

    users: dict[core.Value, list[core.Instruction]] = {}
    for block in blocks:
        for instruction in block.instructions:
            for operand in instruction.operands:
                users.setdefault(operand, []).append(instruction)
    kept = {}
    for block in blocks:
        if block not in once_blocks:
            continue
        for allocation in block.instructions:
            if not isinstance(allocation_rule(allocation), HeapAllocationRule):
                continue
            frees, work, seen, escapes = [], [allocation], {allocation}, False
            while work and not escapes:
                pointer = work.pop()
                for user in users.get(pointer, ()):
                    if isinstance(user, _DERIVING) and user not in seen:
                        seen.add(user)
                        work.append(user)
                    elif isinstance(user, core.Load) or (isinstance(user, core.Store) and user.operands[0] is not pointer):
                        continue
                    elif deallocation(user) is not None:
                        frees.append(user)
                    elif not (is_memset(user) or is_memory_transfer(user)) and not isinstance(user, _DERIVING):
                        escapes = True
                        break
            if frees and not escapes:
                kept[allocation] = frees
    return kept
