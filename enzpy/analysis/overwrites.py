"""May the memory a load read be overwritten before the reverse sweep runs?

The reverse sweep can re-load a value instead of caching it when nothing
writes the loaded memory after the load (later in its block, in any block
reachable from it, or in a later iteration of its loop). Memory is told apart
by the root a pointer derives from: a parameter, a stack slot (alloca), or an
allocation (its MemInfo, also for the data pointer kept inside it).
Allocations are re-loaded only when reverse mode keeps them alive until it
has passed them (`live_allocations`). Distinct parameters are assumed not
to overlap only when the caller has checked that the arrays it passes do not
(`distinct_arguments`).
"""

from __future__ import annotations

from ..ir import core
from ..rules.calls import allocation_rule, is_memory_transfer, is_memset, memory_call_rule, written_operands
from ..rules.heap import deallocation
from ..rules.lists import reallocation_rule
from ..rules.typed_lists import NEW, typed_list_operation
from ..rules.registry import scalar_rule
from .loops import reachable_blocks
from .memory_types import merged_roots, pointer_root

_EVERYTHING = object()
"""The root of a write enzpy cannot place: it may alias any memory."""


class OverwriteAnalysis:
    """Answers `can_reload(load)` for the loads of a function's primal instructions."""

    def __init__(self, blocks: list[core.Block], instructions: dict[core.Block, list[core.Instruction]],
                 distinct_arguments: bool, private_arguments: frozenset[core.Argument] = frozenset(),
                 live_allocations: frozenset[core.Instruction] = frozenset()):
        self.instructions = instructions
        self.distinct_arguments = distinct_arguments
        self.private_arguments = private_arguments
        """Parameters pointing at memory no other parameter reaches (numba's retptr and excinfo)."""
        self.live_allocations = live_allocations
        """Allocations kept alive until the reverse sweep (so they may be re-loaded)."""
        self.reachable = reachable_blocks(blocks)
        self.writes: dict[core.Block, list[tuple[int, object]]] = {b: [] for b in blocks}
        for block in blocks:
            if isinstance(block.terminator, core.Unreachable):
                continue       # the process aborts there (numba's BLAS error path): no reverse sweep follows
            for position, instruction in enumerate(instructions[block]):
                for root in _written_roots(instruction):
                    self.writes[block].append((position, root))

    def can_reload(self, load: core.Load) -> bool:
        return self.unchanged_after(load, load.operands[0])

    def unchanged_after(self, instruction: core.Instruction, pointer: core.Value,
                        including_itself: bool = False, through_merges: bool = False) -> bool:
        """Whether the memory `pointer` points into holds, when the reverse sweep runs, what it
        held at `instruction` (`including_itself`: before `instruction` wrote anything).

        `through_merges`: a pointer merged by phis and selects (numba's np.dot result, from
        np.zeros or np.empty) is unchanged when each memory it may point into is.
        """
        roots = _merged_roots(pointer) if through_merges else {_root(pointer)}
        for root in roots:
            if root in self.live_allocations:
                continue
            if not isinstance(root, (core.Argument, core.Alloca, core.GlobalVariable)):
                return False
            if isinstance(root, core.GlobalVariable) and not root.constant:
                return False
        block = instruction.parent
        if block not in self.instructions or instruction not in self.instructions[block]:
            return False                       # made by the forward sweep: no primal position
        position = self.instructions[block].index(instruction)
        later = [r for p, r in self.writes[block] if p > position or (including_itself and p == position)]
        for other in self.reachable[block]:
            later.extend(r for _, r in self.writes[other])
        return not any(self._may_alias(written, root) for written in later for root in roots)

    def written_in(self, blocks, load: core.Load) -> bool:
        """Whether anything in `blocks` may write the memory `load` reads."""
        root = _root(load.operands[0])
        return root is _EVERYTHING or any(self._may_alias(written, root) for block in blocks
                                          for _, written in self.writes.get(block, ()))

    def _may_alias(self, written: object, root: core.Value) -> bool:
        if written is _EVERYTHING or written is root:
            return True
        if isinstance(written, core.Argument) and isinstance(root, core.Argument):
            # A private (or `noalias`: C's restrict) parameter's memory is reached through it alone.
            if written in self.private_arguments or root in self.private_arguments \
                    or "noalias" in written.attributes or "noalias" in root.attributes:
                return False
            return not self.distinct_arguments
        return False


def _written_roots(instruction: core.Instruction) -> list[object]:
    """Roots of the memory `instruction` may write."""
    if isinstance(instruction, core.Store):
        return [_root(instruction.operands[1])]
    if isinstance(instruction, (core.AtomicRMW, core.CmpXchg)):
        return [_root(instruction.operands[0])]
    if not isinstance(instruction, core.Call):
        return []
    if is_memset(instruction) or is_memory_transfer(instruction):
        return [_root(instruction.operands[0])]
    if getattr(memory_call_rule(instruction), "synchronizes", False):
        return [_EVERYTHING]               # a barrier: other threads write what they like
    if (outputs := written_operands(instruction)) is not None:
        return [_root(pointer) for pointer in outputs]       # BLAS: only its outputs
    if typed_list_operation(instruction) is not None:
        # A typed list's items are reached only through base_ptr, whose loads are never
        # re-loaded (its result is no root enzpy tracks); creation writes the list's slot.
        return [_root(instruction.operands[0])] if typed_list_operation(instruction) == NEW else []
    if reallocation_rule(instruction) is not None:
        return [_root(instruction.operands[0])]    # a list shrinking loses its tail
    if deallocation(instruction) is not None:
        return [_root(instruction.operands[0])]      # free clobbers its own block, nothing else
    if scalar_rule(instruction) is not None or allocation_rule(instruction) is not None:
        return []                          # math functions; fresh memory
    if not any(operand.type.is_pointer for operand in instruction.operands):
        return []                          # integer intrinsics (llvm.smax, ...): given no memory, they write none
    name = getattr(instruction.callee, "name", "")
    if name.startswith("llvm.lifetime."):
        # After lifetime.end the slot's contents are gone (LLVM may reuse it): a re-load would read garbage.
        return [_root(instruction.operands[-1])]
    if name.startswith(("NRT_", "nrt_", "llvm.assume", "llvm.experimental.noalias")):
        # The runtime touches reference counts, never array data; freeing is
        # why allocations are not re-loaded at all.
        return []
    return [_EVERYTHING]


def _merged_roots(pointer: core.Value) -> set[object]:
    """The roots of every pointer a phi / select merge may pass on as `pointer`."""
    return {_root(value) for value in merged_roots(pointer)}


def _root(pointer: core.Value) -> object:
    root = pointer_root(pointer)
    if isinstance(root, core.Load) and isinstance(pointer_root(root.operands[0]), core.Call):
        root = pointer_root(root.operands[0])        # the data pointer kept in a MemInfo
    if isinstance(root, (core.Argument, core.Alloca, core.GlobalVariable)) \
            or (isinstance(root, core.Call) and allocation_rule(root) is not None):
        return root
    return _EVERYTHING
