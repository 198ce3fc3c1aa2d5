"""Where the reverse sweep gets each forward value it needs: cache minimization.

The reverse code of a block B reads forward values (operands of partials,
shadow pointers, lengths of copies). For each, `ReverseValues` picks the
cheapest source, counted in tape slots per execution of B:

- as is: constants, parameters, and values of blocks that run once (outside
  loops, on every path to the return);
- from the loop counter: an induction variable of a loop around B is
  `start + iteration * step`; the reverse loop counts the iteration down; a
  loop that leaves when its induction variable reaches a bound needs no
  stored trip count either (`trip count`);
- recompute: a pure instruction (arithmetic, casts, compares, GEPs, math
  calls) of the same loop iteration, from operands found the same way;
- re-load: a load from memory nothing overwrites after it (OverwriteAnalysis);
- stored: a value computed outside every loop (at most once) is kept in a
  stack slot, and so is anything B needs when B itself runs at most once;
- cache: pushed onto the tape at the end of B in the forward sweep and popped
  at the start of B's reverse code.

Choosing recompute whenever its operands cost no more than caching the value
itself is a local form of Enzyme's min-cut over the value graph.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

from ..analysis.lists import list_meminfos, points_into_list
from ..analysis.loops import Loop, LoopInfo
from ..analysis.overwrites import OverwriteAnalysis
from ..analysis.type_analysis import gep_byte_offset
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I8, I64, ArrayType, IntType, PointerType, StructType
from ..errors import DifferentiationError
from ..rules.calls import allocation_rule
from ..rules.registry import scalar_rule
from ..rules.typed_lists import is_base_pointer, shadow_base_pointer
from .tape import Tape

_PURE = (core.BinaryOperator, core.UnaryOperator, core.Cast, core.Compare, core.Select, core.GetElementPtr,
         core.ExtractValue, core.InsertValue, core.Freeze)
_SOURCES = ("available", "counter", "induction", "trip count", "recompute", "reload", "stored", "cache")


@dataclass(frozen=True)
class Induction:
    """A header phi that is `start + iteration * step` in its loop (for pointers: bytes)."""

    loop: Loop
    """The loop whose header holds the phi."""
    start: core.Value
    """Value on entry (from the preheader)."""
    step: core.ConstantInt
    """Integer constant added on every iteration (a byte offset for a pointer)."""

    @property
    def is_pointer(self) -> bool:
        return self.start.type.is_pointer


@dataclass(frozen=True)
class Decision:
    """How the reverse code of one block gets one forward value."""

    block: core.Block
    """Forward block whose reverse code needs the value."""
    value: core.Value
    """The forward value (for shadows: the primal pointer whose shadow is needed)."""
    shadow: bool
    """Whether the shadow of `value` is needed rather than `value` itself."""
    source: str
    """One of `_SOURCES`: available, counter, induction, trip count, recompute, reload, stored, cache."""


class ReverseValues:
    """Forward values inside the reverse code of one block at a time (see the module docstring)."""

    def __init__(self, module: core.Module, loops: LoopInfo, once_blocks: set[core.Block],
                 shadow_of: dict[core.Value, core.Value] | list[dict], tape: Tape, counters: dict[Loop, core.Phi],
                 iteration_slots: dict[Loop, core.Value], overwrites: OverwriteAnalysis,
                 entry_block: core.Block, minimize: bool = True):
        self.module, self.loops, self.once_blocks = module, loops, once_blocks
        # One dict of shadows per lane (vector reverse mode, ad/lanes.py), or the one dict.
        self.shadow_lanes = shadow_of if isinstance(shadow_of, list) else [shadow_of]
        self.shadow_of, self.tape = self.shadow_lanes[0], tape
        self.counter_loop = {phi: loop for loop, phi in counters.items()}
        self.iteration_slots, self.overwrites = iteration_slots, overwrites
        self.inductions = self._find_inductions(counters)
        self.list_meminfos = list_meminfos([i for block in overwrites.instructions.values() for i in block])
        self.exit_counts = self._find_exit_counts()
        self.decisions: list[Decision] = []
        self.entry_block = entry_block
        self.minimize = minimize
        self.value_slots: dict[core.Value, core.Value] = {}
        self.hoisted_slots: dict[tuple[core.Value, Loop], core.Value] = {}
        self.reverse_block_of: dict[core.Block, core.Block] = {}
        """Set by the driver once the reverse blocks exist."""
        self.loop_exits = {loop: [b for b, predecessors in loops.predecessors.items()
                                  if b not in loop.blocks and len(predecessors) == 1
                                  and predecessors[0] in loop.blocks] for loop in loops.loops}

    # -- per block

    def enter(self, block: core.Block, reverse_block: core.Block) -> None:
        """Start emitting the reverse code of forward `block` into `reverse_block`."""
        self.block, self.reverse_block = block, reverse_block
        self.enclosing = set(self.loops.loops_of(block))
        self.plans: dict[tuple[core.Value, bool], tuple[int, str]] = {}
        self.emitted: dict[tuple[core.Value, bool], core.Value] = {}

    def value(self, builder: Builder, value: core.Value) -> core.Value:
        """`value` as computed by the forward sweep in the execution being reversed."""
        return self._emit(builder, value, shadow=False)

    def shadow(self, builder: Builder, pointer: core.Value, lane: int = 0) -> core.Value:
        """The shadow of forward pointer `pointer` (lane `lane`'s, in vector reverse mode), likewise.

        Internally `shadow` is False for a primal value and 1 + the lane for a shadow (True is lane 0's)."""
        return self._emit(builder, pointer, shadow=lane + 1)

    def iteration(self, builder: Builder, loop: Loop) -> core.Value:
        return builder.load(I64, self.iteration_slots[loop], "iteration")

    # -- planning: cost in tape slots, and the source

    def _plan(self, value: core.Value, shadow: bool) -> tuple[int, str]:
        key = (value, shadow)
        if key not in self.plans:
            self.plans[key] = (1, "cache")           # cycles (through phis) end in a cache
            self.plans[key] = self._choose(value, shadow)
        return self.plans[key]

    def _choose(self, value: core.Value, shadow: bool) -> tuple[int, str]:
        target = self._shadow_target(value, shadow) if shadow else value
        if isinstance(value, core.Instruction) and points_into_list(value, self.list_meminfos):
            return self._choose_list_pointer(value, shadow)      # even one made once may dangle
        if self._available(target):
            return 0, "available"
        if not self.minimize:
            return 1, "cache"
        if not shadow and value in self.counter_loop and self.counter_loop[value] in self.enclosing:
            return 0, "counter"
        if not shadow and (self.counter_loop.get(value), self.block) in self.exit_counts:
            induction, bound = self.exit_counts[(self.counter_loop[value], self.block)]
            return self._plan(bound, False)[0] + self._plan(induction.start, False)[0], "trip count"
        induction = self.inductions.get(value)
        if induction is not None and induction.loop in self.enclosing and (not shadow or induction.is_pointer):
            return self._plan(induction.start, shadow)[0], "induction"
        # Cached where an enclosing loop exits, an invariant costs nothing per iteration.
        options = [(0 if self._invariant_loop(target) is not None else 1, 3, "cache")]
        if isinstance(target, core.Instruction) and not self.loops.loops_of(target.parent):
            options.append((0, 2, "stored"))         # computed at most once: a stack slot holds it
        if isinstance(value, core.Instruction) and self._same_iteration(value):
            operands = self._recompute_operands(value, shadow)
            if operands is not None:
                cost = sum(self._plan(v, s)[0] for v, s in operands)
                # A math call costs far more than a push and a pop. When recomputing it would
                # tape loaded values only it needs, tape its result instead; other leaves
                # (phis) are usually needed by other partials anyway.
                loads_only = isinstance(value, core.Call) and all(
                    isinstance(leaf, core.Load) for leaf in self._taped_leaves(operands))
                options.append((cost, 4 if loads_only else 0, "recompute"))
            if isinstance(value, core.Load) and self.overwrites.can_reload(value):
                options.append((self._plan(value.operands[0], shadow)[0], 1, "reload"))
        cost, _, source = min(options)
        return cost, source

    def _choose_list_pointer(self, value: core.Instruction, shadow: bool) -> tuple[int, str]:
        """A pointer into a reflected list's buffer: never kept, always derived anew.

        Appending may reallocate the buffer (and its shadow) after the forward
        sweep made the pointer, so a taped one may point into freed memory.
        The MemInfo always holds the current buffer, with the same contents
        at the same offsets: re-load the data pointer from it and recompute
        what was derived from that.
        """
        options = []
        if isinstance(value, core.Load):
            options.append((self._plan(value.operands[0], shadow)[0], "reload"))
        elif self._same_iteration(value) and (operands := self._recompute_operands(value, shadow)) is not None:
            options.append((sum(self._plan(v, s)[0] for v, s in operands), "recompute"))
        if not options:
            raise DifferentiationError(
                f"the reverse sweep needs {'the shadow of ' if shadow else ''}%{value.name}, a pointer into a "
                f"list's buffer, and cannot derive it again (the buffer moves when the list grows)"
                + (f"; Python source {value.location}" if value.location is not None else ""))
        return min(options)

    def _taped_leaves(self, operands) -> list[core.Value]:
        """The values a recomputation from `operands` takes from the tape (through recomputed ones)."""
        leaves, pending = [], list(operands)
        while pending:
            value, shadow = pending.pop()
            cost, source = self._plan(value, shadow)
            if cost and source == "recompute":
                pending.extend(self._recompute_operands(value, shadow))
            elif cost:
                leaves.append(value)
        return leaves

    def _shadow_target(self, value: core.Value, shadow: int = 1) -> core.Value:
        if isinstance(value, (core.ConstantNull, core.Undef, core.Poison)):
            return value
        return self.shadow_lanes[shadow - 1][value]

    def _available(self, value: core.Value) -> bool:
        if isinstance(value, (core.Constant, core.Argument)):
            return True
        return isinstance(value, core.Instruction) and value.parent in self.once_blocks

    def _same_iteration(self, instruction: core.Instruction) -> bool:
        """Every loop around the definition is around B too: B's iteration determines the instance."""
        return all(loop in self.enclosing for loop in self.loops.loops_of(instruction.parent))

    def _recompute_operands(self, value: core.Instruction, shadow: bool):
        """The (value, shadow?) operands a recomputation reads, or None if it cannot be recomputed."""
        if is_base_pointer(value):                   # where a typed list's items are now
            return [(value.operands[0], shadow)]
        if not shadow:
            if isinstance(value, _PURE) or (isinstance(value, core.Call) and scalar_rule(value) is not None
                                            and allocation_rule(value) is None):
                return [(o, False) for o in value.operands]
            return None
        if isinstance(value, core.GetElementPtr):
            return [(value.operands[0], shadow)] + [(o, False) for o in value.operands[1:]]
        if isinstance(value, core.Cast) and value.type.is_pointer:
            return [(value.operands[0], shadow)]
        if isinstance(value, core.Select):
            return [(value.operands[0], False), (value.operands[1], shadow), (value.operands[2], shadow)]
        if isinstance(value, core.ExtractValue):
            return [(value.operands[0], shadow)]
        return None

    # -- emission

    def _emit(self, builder: Builder, value: core.Value, shadow: bool) -> core.Value:
        key = (value, shadow)
        if key in self.emitted:
            return self.emitted[key]
        _, source = self._plan(value, shadow)
        self.decisions.append(Decision(self.block, value, shadow, source))
        if source == "available":
            result = self._shadow_target(value, shadow) if shadow else value
        elif source == "counter":
            result = self.iteration(builder, self.counter_loop[value])
        elif source == "trip count":
            induction, bound = self.exit_counts[(self.counter_loop[value], self.block)]
            # The loop left when start + (iteration + 1) * step == bound.
            last = builder.sub(self._emit(builder, bound, False), self._emit(builder, induction.start, False))
            if induction.step.value != 1:
                last = builder.binary("sdiv", last, constant_int(last.type, induction.step.value))
            last = builder.add(last, constant_int(last.type, -1), "last.iteration")
            result = last if last.type == I64 else builder.cast("sext", last, I64)
        elif source == "induction":
            result = self._induction_value(builder, self.inductions[value], shadow)
        elif source == "recompute":
            result = self._recompute(builder, value, shadow)
        elif source == "reload":
            pointer = self._emit(builder, value.operands[0], shadow)
            result = copy.copy(value)
            result.operands = [pointer]
            result.name = (f"shadow.{value.name}" if shadow else value.name) + ".reloaded"
            builder.insert(result)
        elif source == "stored":
            result = builder.load(value.type, self._slot_after_definition(self._shadow_target(value, shadow) if shadow
                                                                          else value))
        else:
            result = self._cache(self._shadow_target(value, shadow) if shadow else value)
        self.emitted[key] = result
        return result

    def _induction_value(self, builder: Builder, induction: Induction, shadow: bool = False) -> core.Value:
        start = self._emit(builder, induction.start, shadow)
        iteration = self.iteration(builder, induction.loop)
        step = induction.step.value
        if induction.is_pointer:
            offset = builder.mul(iteration, constant_int(I64, step))
            return builder.gep(I8, start, [offset], "shadow.induction" if shadow else "induction")
        if start.type != I64:
            iteration = builder.cast("trunc", iteration, start.type)
        offset = iteration if step == 1 else builder.mul(iteration, constant_int(start.type, step))
        return builder.add(start, offset, "induction")

    def _recompute(self, builder: Builder, value: core.Instruction, shadow: bool) -> core.Value:
        if not shadow:
            clone = copy.copy(value)
            clone.operands = [self._emit(builder, o, False) for o in value.operands]
            if isinstance(clone, core.Call):
                clone.argument_attributes = list(clone.argument_attributes)
            clone.name = f"{value.name}.recomputed" if value.name else ""
            return builder.insert(clone)
        name = f"shadow.{value.name}.recomputed" if value.name else "shadow.recomputed"
        if is_base_pointer(value):
            return shadow_base_pointer(builder, value, self._emit(builder, value.operands[0], shadow))
        if isinstance(value, core.GetElementPtr):
            result = builder.gep(value.source_type, self._emit(builder, value.operands[0], shadow),
                                 [self._emit(builder, o, False) for o in value.operands[1:]], name)
            result.flags = value.flags
            return result
        if isinstance(value, core.Cast):
            return builder.cast(value.opcode, self._emit(builder, value.operands[0], shadow), value.type, name)
        if isinstance(value, core.Select):
            return builder.select(self._emit(builder, value.operands[0], False),
                                  self._emit(builder, value.operands[1], shadow),
                                  self._emit(builder, value.operands[2], shadow), name)
        return builder.insert(core.ExtractValue(type=value.type, name=name, opcode="extractvalue",
                                                indices=value.indices,
                                                operands=[self._emit(builder, value.operands[0], shadow)]))

    def _slot_after_definition(self, forward_value: core.Instruction) -> core.Value:
        """A stack slot the forward sweep stores `forward_value` into right after computing it."""
        if forward_value not in self.value_slots:
            slot = Builder(self.module).before_instruction(self.entry_block.terminator).alloca(
                forward_value.type, f"{forward_value.name or 'value'}.slot")
            block = forward_value.parent
            following = block.instructions[block.instructions.index(forward_value) + 1:]
            if isinstance(forward_value, core.Phi):
                following = [i for i in following if not isinstance(i, core.Phi)]
            Builder(self.module).before_instruction(following[0]).store(forward_value, slot)
            self.value_slots[forward_value] = slot
        return self.value_slots[forward_value]

    def _cache(self, forward_value: core.Value) -> core.Value:
        """Push at the end of B (forward), pop at the start of B's reverse code.

        A value defined outside some loop around B is the same in all its
        iterations: it is cached once where that loop exits and read from a
        stack slot inside the reverse loop.
        """
        invariant_in = self._invariant_loop(forward_value)
        if invariant_in is None:
            return self._cache_in(self.block, self.reverse_block, forward_value)
        key = (forward_value, invariant_in)
        if key not in self.hoisted_slots:
            slot = Builder(self.module).before_instruction(self.entry_block.terminator).alloca(
                forward_value.type, f"{forward_value.name or 'value'}.invariant")
            for exit_block in self.loop_exits[invariant_in]:
                reverse_exit = self.reverse_block_of[exit_block]
                value = self._cache_in(exit_block, reverse_exit, forward_value)
                following = reverse_exit.instructions[reverse_exit.instructions.index(value) + 1:]
                store = Builder(self.module)
                store.before_instruction(following[0]) if following else store.at_end(reverse_exit)
                store.store(value, slot)
            self.hoisted_slots[key] = slot
        return self._top_of(self.reverse_block).load(forward_value.type, self.hoisted_slots[key])

    def _invariant_loop(self, forward_value: core.Value) -> Loop | None:
        """The outermost loop around B in which `forward_value` does not change (and that exits).

        That is a loop the value is defined outside of, or one that loads it
        from a pointer set before the loop and writes nothing that may alias it
        (then the value at the loop's exits is the value of every iteration).
        """
        if not self.minimize or not isinstance(forward_value, core.Instruction):
            return None
        for loop in self.loops.loops_of(self.block):
            exits = self.loop_exits.get(loop)
            if not exits:
                continue
            if forward_value.parent not in loop.blocks:
                return loop
            if isinstance(forward_value, core.Load) and self._load_invariant_in(forward_value, loop, exits):
                return loop
        return None

    def _load_invariant_in(self, load: core.Load, loop: Loop, exits: list[core.Block]) -> bool:
        pointer = load.operands[0]
        if isinstance(pointer, core.Instruction) and pointer.parent in loop.blocks:
            return False
        dominators = self.loops.dominators
        return all(dominators.dominates(load.parent, exit_block) for exit_block in exits) \
            and not self.overwrites.written_in(loop.blocks, load)

    def _cache_in(self, block: core.Block, reverse_block: core.Block, forward_value: core.Value) -> core.Value:
        """Keep `forward_value` at the end of forward `block`; get it back at the top of `reverse_block`."""
        at_end = Builder(self.module).before_instruction(block.terminator)
        if not self.loops.loops_of(block):
            # The block runs at most once: a stack slot written at its end will do.
            slot = Builder(self.module).before_instruction(self.entry_block.terminator).alloca(
                forward_value.type, f"{forward_value.name or 'value'}.slot")
            at_end.store(forward_value, slot)
            return self._top_of(reverse_block).load(forward_value.type, slot)
        if forward_value.type.is_aggregate:
            # The tape holds scalars: an aggregate goes on field by field.
            paths = _scalar_fields(forward_value.type)
            for path in paths:
                self.tape.push(at_end, at_end.insert(core.ExtractValue(
                    type=_field_type(forward_value.type, path), opcode="extractvalue", indices=path,
                    operands=[forward_value])))
            top = self._top_of(reverse_block)
            fields = [self.tape.pop(top, ty=_field_type(forward_value.type, path)) for path in reversed(paths)]
            result = core.Undef(forward_value.type)
            for path, field in zip(reversed(paths), fields):
                result = top.insert(core.InsertValue(type=forward_value.type, opcode="insertvalue", indices=path,
                                                     operands=[result, field]))
            return result
        self.tape.push(at_end, forward_value)
        # Later pushes come off the tape first: each new pop goes above the others.
        return self.tape.pop(self._top_of(reverse_block), like=forward_value)

    def _top_of(self, reverse_block: core.Block) -> Builder:
        builder = Builder(self.module)
        if reverse_block.instructions:
            return builder.before_instruction(reverse_block.instructions[0])
        return builder.at_end(reverse_block)

    # -- induction variables

    def _find_inductions(self, counters: dict[Loop, core.Phi]) -> dict[core.Phi, Induction]:
        found = {}
        for loop in self.loops.loops:
            if len(loop.entries) != 1 or len(loop.latches) != 1:
                continue
            for phi in loop.header.phis():
                if phi in self.counter_loop or not isinstance(phi.type, (IntType, PointerType)):
                    continue
                start = phi.operands[phi.incoming_blocks.index(loop.entries[0])]
                step_value = phi.operands[phi.incoming_blocks.index(loop.latches[0])]
                if isinstance(step_value, core.GetElementPtr) and step_value.operands[0] is phi:
                    # A pointer walked by a constant number of bytes per iteration.
                    offset, stride = gep_byte_offset(step_value)
                    if offset is not None and not stride and offset > 0:
                        found[phi] = Induction(loop, start, constant_int(I64, offset))
                elif isinstance(step_value, core.BinaryOperator) and step_value.opcode == "add":
                    left, right = step_value.operands
                    other = right if left is phi else left if right is phi else None
                    if isinstance(other, core.ConstantInt):
                        found[phi] = Induction(loop, start, other)
        return found

    def _find_exit_counts(self) -> dict[tuple[Loop, core.Block], tuple[Induction, core.Value]]:
        """Loops whose only latch leaves when `induction + step == bound` (bound set before the loop).

        Keyed by (loop, block after that exit): there the last iteration is
        `(bound - start) / step - 1`, so the reverse loop needs no stored trip count.
        """
        found = {}
        for phi, induction in self.inductions.items():
            if induction.is_pointer:
                continue
            loop = induction.loop
            latch = loop.latches[0]
            terminator = latch.terminator
            if induction.step.value <= 0 or not isinstance(terminator, core.Branch) or len(terminator.targets) != 2:
                continue
            condition = terminator.operands[0]
            if not isinstance(condition, core.Compare) or condition.predicate not in ("eq", "ne"):
                continue
            following = phi.operands[phi.incoming_blocks.index(latch)]
            left, right = condition.operands
            bound = right if left is following else left if right is following else None
            if bound is None or (isinstance(bound, core.Instruction) and bound.parent in loop.blocks):
                continue
            leaving = terminator.targets[0 if condition.predicate == "eq" else 1]
            if leaving not in loop.blocks and sum(1 for b in loop.blocks for s in b.successors()
                                                  if s not in loop.blocks) == 1:
                found[(loop, leaving)] = (induction, bound)
        return found

    # -- reporting

    def summary(self) -> Counter:
        """How many (block, value) needs each source served."""
        return Counter(d.source for d in self.decisions)


def _scalar_fields(ty, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Index paths of the scalar fields of an aggregate type."""
    if isinstance(ty, StructType):
        return [p for i, e in enumerate(ty.elements) for p in _scalar_fields(e, prefix + (i,))]
    if isinstance(ty, ArrayType):
        return [p for i in range(ty.count) for p in _scalar_fields(ty.element, prefix + (i,))]
    return [prefix]


def _field_type(ty, path: tuple[int, ...]):
    for index in path:
        ty = ty.elements[index] if isinstance(ty, StructType) else ty.element
    return ty
