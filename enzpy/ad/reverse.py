"""Reverse mode: build `gradient(primal args..., shadows..., adjoint outputs..., seed)`.

Combined mode on one function (see DESIGN.md, "Reverse mode in one paragraph"):

1. the primal body is cloned as the *augmented forward sweep*: next to every
   pointer into differentiable memory it computes the shadow pointer, next to
   every allocation it makes a zeroed shadow allocation, and every loop gets
   an iteration counter;
2. where the primal returned, control goes to the *reverse sweep*, which
   mirrors the forward CFG: each block's adjoint code runs its instructions
   in reverse order, then goes back along the edge the forward sweep came in
   by. A loop header knows that edge from its iteration counter, which the
   reverse loop counts down; a loop exit restores the counter; only a block
   with several predecessors (a join) pushes which one it came from, unless
   the branch that decided it can be evaluated again in the reverse sweep;
3. forward values the adjoint code needs come from `ReverseValues`: as is,
   recomputed, re-loaded, or (the last resort) cached on the tape;
4. the exit adds the active scalars' adjoints into their output pointers,
   frees the tape and returns the primal status.

Adjoints of SSA values live in stack slots (promoted to registers by the
post-AD pipeline). An empty slot holds -0.0, the exact additive identity, so
the optimizer folds the first addition into it (it may not fold `x + 0.0`). The seed enters through a shadow of `retptr`: the primal
stores its result there, and the reverse of that store reads the seed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from ..analysis.activity import Activity, analyze, holds_floats
from ..analysis.alias_scopes import label_memory, private_arguments
from ..analysis.loops import LoopInfo, reverse_post_order  # noqa: F401  (reverse_post_order: public here)
from ..analysis.memory_types import pointer_root
from ..analysis.type_analysis import analyze_types, parameter_seeds
from ..analysis.overwrites import OverwriteAnalysis
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.clone import clone_body
from ..ir.types import I1, I8, I32, I64, PTR, VOID, ArrayType, FunctionType, StructType, Type, VectorType, \
    alignment_of
from ..rules import typed_lists
from ..rules.calls import allocation_rule, is_memset, memory_call_rule, transfer_adjoint_function
from ..rules.heap import kept_heap_blocks
from ..rules.registry import scalar_rule
from .calls import operand_seeds, result_slots, reverse_calls, without
from .lanes import adjoint_type, broadcast, gathered, lane_of, refuse_without_lanes
from .memory_calls import ForwardMemoryCall, OperandCopies, active_arrays
from .recompute import ReverseValues
from .shadows import check_supported, fill_shadow_phi, make_shadow, memory_roots, stores_zero_bits
from .tape import INITIAL_SLOTS, THREAD_TAPE_SLOTS, AllocationLog, Tape
from ..parallel.launches import LOOP_PREFIX
from ..parallel.ownership import OwnedAdds, is_site


@dataclass(frozen=True)
class ReverseSpec:
    """Which parameters of the primal carry derivatives."""

    duplicated: tuple[int, ...]
    """Indices of pointer parameters (array data) that get a shadow pointer parameter."""
    active: tuple[int, ...]
    """Indices of float parameters whose adjoints are written to output pointers."""
    return_type: Type | None
    """Float type of the value the primal stores through retptr (seeded), or None."""
    duplicated_types: tuple[Type, ...] = ()
    """Element float type behind each duplicated pointer (for copies that do not say)."""
    distinct_arguments: bool = False
    """The caller guarantees pointer parameters do not overlap, so writes through one
    never change what another reads (lets the reverse sweep re-load more)."""
    minimize_cache: bool = True
    """False caches every value the reverse sweep needs (the baseline benchmarks compare with)."""
    loose_types: bool = False
    """Let type analysis conflicts pass (the first fact wins) instead of raising."""
    private_parameters: int = 2
    """How many leading parameters point at memory no other pointer reaches (numba's
    retptr and excinfo; 1 for the clang adapter's retptr)."""
    parameter_trees: tuple = ()
    """(index, type tree) of parameters as a caller sees them (a callee's derivative, ad/calls.py)."""
    caller_continues: bool = False
    """A callee's gradient, split by ad/calls.py: the caller runs on between the sweeps (what the
    function allocated is not re-loaded, the caller may write it) and lends its tape and allocation
    log (two last parameters)."""
    atomic_adjoints: bool = False
    """Add adjoints into shadow memory (not the function's own stack slots) with atomic adds: the
    reverse function of a prange loop runs on several threads at once, whose iterations may read
    the same element (parallel/derivatives.py)."""
    plain_adjoint_parameters: frozenset[int] = frozenset()
    """With `atomic_adjoints`: pointer parameters whose memory no other thread adds into at the same
    time (a CUDA block's shared memory when the block runs on one CPU thread; an array every thread
    reads only at its own index: cuda/compile.py), so plain adds do."""
    width: int = 1
    """Cotangents carried at once (vector reverse mode, `ad/lanes.py`): each duplicated parameter
    gets `width` shadow pointers, each active output points at `width` values, a float result takes
    `width` seeds."""
    thread_tapes: bool = False
    """A CUDA thread's gradient, one of many at once: its tapes start small and keep to themselves (ad/tape.py)."""


def build_reverse(module: core.Module, primal: core.Function, spec: ReverseSpec, name: str) -> core.Function:
    """Add the gradient of `primal` to `module` and return it (its report: `reverse_report`)."""
    builder = _ReverseBuilder(module, primal, spec, name)
    function = builder.build()
    _REPORTS[function] = builder.report()
    label_memory(function, spec.distinct_arguments, private_arguments(function, spec.private_parameters))
    return function


@dataclass
class ReverseReport:
    """What reverse mode decided about the primal's instructions (for `explain` and printers)."""

    primal: core.Function
    """The function that was differentiated."""
    activity: dict[core.Instruction, str]
    """Each primal instruction: `active` (derivative code), `shadow` (pointer with a shadow) or `inactive`."""
    sources: dict[core.Instruction, set[str]]
    """How the reverse sweep got each primal value it needed: recompute, reload, stored, cache, ..."""
    cached_slots_per_execution: dict[core.Instruction, int]
    """Primal values pushed onto the tape, and in how many blocks' reverse code (slots per execution)."""
    non_atomic_adjoints: tuple[str, ...] = ()
    """With `atomic_adjoints`: what still adds into shadow memory without atomics (BLAS, memcpy,
    aggregates); such a prange loop's reverse sweep must run on one thread."""

    def annotation(self, instruction: core.Instruction) -> str:
        """`active; reverse: recompute` and the like, for the annotated-IR printer."""
        label = self.activity.get(instruction, "")
        sources = sorted(self.sources.get(instruction, ()))
        return label + (f"; reverse: {', '.join(sources)}" if sources else "")


_REPORTS: "weakref.WeakKeyDictionary[core.Function, ReverseReport]" = weakref.WeakKeyDictionary()


def reverse_report(gradient: core.Function) -> ReverseReport:
    """The report of a gradient `build_reverse` made."""
    return _REPORTS[gradient]


class _ReverseBuilder:
    def __init__(self, module, primal, spec, name):
        self.module, self.primal, self.spec = module, primal, spec
        self.non_atomic_adjoints: list[str] = []
        params = list(primal.function_type.params)
        names = [a.name for a in primal.arguments]
        self.width = spec.width
        for index in spec.duplicated:
            params.extend(PTR for _ in range(self.width))
            names.extend(f"shadow.{names[index]}" + (f".{lane}" if lane else "") for lane in range(self.width))
        for index in spec.active:
            params.append(PTR)
            names.append(f"adjoint.{names[index]}")
        if spec.return_type is not None:
            params.extend(spec.return_type for _ in range(self.width))
            names.extend("seed" + (f".{lane}" if lane else "") for lane in range(self.width))
        if spec.caller_continues:
            params, names = params + [PTR, PTR], names + ["tape", "allocation.log"]
        self.function = core.Function(name, FunctionType(I32, tuple(params)), names)
        for argument, original in zip(self.function.arguments, primal.arguments):
            # C's `restrict`: the parameter's memory is reached through it alone (private_arguments).
            argument.attributes = tuple(a for a in original.attributes if a == "noalias")
        self.function.linkage = ""
        module.add_function(self.function)
        self.shadow_of: dict[core.Value, core.Value] = {}
        self.shadow_lanes = [self.shadow_of] + [{} for _ in range(self.width - 1)]
        """Each lane's shadows (lane 0's is `shadow_of`)."""
        self.adjoint_slot: dict[core.Value, core.Value] = {}
        self.transfer_kind: dict[core.Instruction, Type | None] = {}
        self.returning_blocks: list[core.Block] = []

    # -- setup

    def build(self) -> core.Function:
        function, primal, spec = self.function, self.primal, self.spec
        entry = function.append_block("enzpy.entry")
        self.entry_block = entry
        value_map = dict(zip(primal.arguments, function.arguments))
        clone_body(primal, function, value_map)
        self.value_map = value_map
        self.forward_entry = value_map[primal.blocks[0]]
        builder = Builder(self.module).at_end(entry)
        self.forward_blocks = self._prepare_control_flow()
        extra = iter(function.arguments[len(primal.arguments):])
        for index in spec.duplicated:
            for lanes in self.shadow_lanes:
                lanes[function.arguments[index]] = shadow = next(extra)
                # The shadow of a `restrict` array is as distinct as the array (Enzyme's convention).
                shadow.attributes = function.arguments[index].attributes
        # Arrays of floats; a struct (C, passed by value) holds its other fields where they lie.
        self.float_arguments = {function.arguments[i] for i in spec.duplicated} - {
            function.arguments[i] for i, ty in zip(spec.duplicated, spec.duplicated_types)
            if isinstance(ty, StructType)}
        self.active_outputs = [(function.arguments[i], next(extra)) for i in spec.active]
        retptr = function.arguments[0]
        if spec.return_type is not None:
            for lane, lanes in enumerate(self.shadow_lanes):
                lanes[retptr] = builder.alloca(spec.return_type, "shadow.retptr" + (f".{lane}" if lane else ""))
                builder.store(next(extra), lanes[retptr])
        self.types = analyze_types(function, {**parameter_seeds(
            function, dict(zip(spec.duplicated, spec.duplicated_types)), spec.return_type),
            **operand_seeds(self.forward_blocks),
            **{function.arguments[i]: dict(tree) for i, tree in spec.parameter_trees}})
        if not spec.loose_types:
            self.types.check()
        every_allocation = [i for b in self.forward_blocks for i in b.instructions if allocation_rule(i) is not None]
        roots, slots = memory_roots(self.forward_blocks, self.types)
        self.activity: Activity = analyze(function, set(self.shadow_of) | roots | result_slots(
            self.forward_blocks, self.types, slots), {a for a, _ in self.active_outputs}, pointer_slots=slots)
        # BLAS calls that touch differentiable arrays, and their rules.
        self.memory_calls = {i: rule for b in self.forward_blocks for i in b.instructions
                             if (rule := memory_call_rule(i)) is not None
                             and (active_arrays(i, rule, self.activity.shadowed) or rule.communicates)}
        # Calls to defined functions that stay calls: their derivatives are functions of their own.
        self.calls = reverse_calls(self.module, self.forward_blocks, self.activity, self.types, spec, self._error)
        slots = THREAD_TAPE_SLOTS if spec.thread_tapes else INITIAL_SLOTS
        self.tape = Tape(self.module, function.arguments[-2], slots) if spec.caller_continues \
            else Tape.start(self.module, builder, spare=not spec.thread_tapes, initial_slots=slots)
        lent_log = function.arguments[-1] if spec.caller_continues else None
        self.allocation_log = AllocationLog(self.module, builder, lent_log, slots) \
            if every_allocation or self.memory_calls or self.calls else None
        self.status_slot = builder.alloca(I32, "status")
        self.return_slot = builder.alloca(I64, "returned.from")
        self.iteration_slots = {loop: builder.alloca(I64, f"iteration.{loop.header.name}")
                                for loop in self.loops.loops}
        if self.width > 1:
            refuse_without_lanes(self)
        for value in self._active_values():
            ty = adjoint_type(value.type, self.width)
            slot = builder.alloca(ty, f"adjoint.{value.name}" if value.name else "adjoint")
            builder.store(_empty_adjoint(ty), slot)
            self.adjoint_slot[value] = slot
        builder.br(self.forward_entry)
        check_supported(without(self.forward_blocks, self.calls), self.activity, self.float_arguments, self._error,
                        self.primal.name, self._classify_transfer, aggregates=True)
        # A prange loop's own reverse function decides per add whether it needs an atomic.
        self.owned_adds = OwnedAdds(self.module, function, function.arguments[5], entry) \
            if spec.atomic_adjoints and LOOP_PREFIX in primal.name else None
        self.selected_values = self._values_feeding_selects()
        # C heap blocks allocated once and freed by the function stay alive until the reverse sweep
        # reaches their allocation, as numba's buffers do (below): their frees move there.
        self.kept_heap_blocks = kept_heap_blocks(self.forward_blocks, self._blocks_run_once())
        for free in (f for frees in self.kept_heap_blocks.values() for f in frees):
            free.parent.instructions.remove(free)
        self.original_instructions = {b: list(b.instructions) for b in self.forward_blocks}
        # Kernel-allocated buffers stay alive until the reverse sweep reaches their allocation.
        self.retained = {i for b in self.forward_blocks for i in b.instructions
                         if allocation_rule(i) is not None and allocation_rule(i).returns_meminfo}
        overwrites = OverwriteAnalysis(self.forward_blocks, self.original_instructions, spec.distinct_arguments,
                                       private_arguments(function, spec.private_parameters),
                                       frozenset(() if spec.caller_continues else self.retained)
                                       | frozenset(self.kept_heap_blocks))
        self.operand_copies = OperandCopies(self.module, self.entry_block, overwrites, self.allocation_log,
                                            spec.minimize_cache)
        self._augment_forward()
        self.values = ReverseValues(
            self.module, self.loops, self._blocks_run_once(), self.shadow_lanes, self.tape, self.counters,
            self.iteration_slots, overwrites, self.entry_block, minimize=spec.minimize_cache)
        self._build_reverse_sweep()
        self.tape.reserve_per_block(function)
        if not spec.caller_continues:
            self.tape.without_spare_if_unused(function)
        return function

    def report(self) -> ReverseReport:
        primal_of = {clone: original for original, clone in self.value_map.items()
                     if isinstance(original, core.Instruction)}
        activity = {}
        for clone, original in primal_of.items():
            moves = self._moves_derivatives(clone)
            if self.activity.is_active(clone) or (moves and not self._stores_a_constant(clone)):
                activity[original] = "active"
            elif clone in self.activity.shadowed or moves:
                activity[original] = "shadow"
            else:
                activity[original] = "inactive"
        sources: dict[core.Instruction, set[str]] = {}
        cached: dict[core.Instruction, int] = {}
        for decision in self.values.decisions:
            original = primal_of.get(decision.value)
            if original is None or decision.source == "available":
                continue
            sources.setdefault(original, set()).add(("shadow " if decision.shadow else "") + decision.source)
            if decision.source == "cache":
                cached[original] = cached.get(original, 0) + 1
        return ReverseReport(self.primal, activity, sources, cached, tuple(self.non_atomic_adjoints))

    def _stores_a_constant(self, instruction: core.Instruction) -> bool:
        """A store of a value no active input reaches: its reverse code only zeroes the shadow it
        overwrites, and no derivative flows through it (activity is "varied and useful"), so the
        report calls it a shadow instruction, not an active one."""
        return isinstance(instruction, core.Store) and instruction.operands[0] not in self.activity.varied

    def _moves_derivatives(self, instruction: core.Instruction) -> bool:
        """Stores, copies and frees whose reverse code touches shadow memory."""
        if isinstance(instruction, core.Store):
            value, pointer = instruction.operands
            return pointer in self.activity.shadowed and holds_floats(value.type)
        if isinstance(instruction, core.Call):
            return instruction in self.activity.shadowed or self.transfer_kind.get(instruction) is not None \
                or instruction in self.memory_calls or instruction in self.calls \
                or (is_memset(instruction) and instruction.operands[0] in self.activity.shadowed)
        return False

    def _prepare_control_flow(self) -> list[core.Block]:
        """Drop unreachable blocks, give loop exits their own blocks, count iterations, mark joins."""
        function = self.function
        reachable = set(reverse_post_order(self.forward_entry))
        for block in [b for b in function.blocks if b is not self.entry_block and b not in reachable]:
            function.blocks.remove(block)
            for successor in block.successors():
                for phi in successor.phis():
                    _remove_incoming(phi, block)
        blocks = [b for b in function.blocks if b is not self.entry_block]
        loops = LoopInfo(blocks, self.forward_entry, self.primal.name)
        exits = {edge: None for loop in loops.loops for edge in loops.exits(loop)}
        for inside, outside in exits:
            _split_edge(function, inside, outside)
        blocks = [b for b in function.blocks if b is not self.entry_block]
        self.loops = LoopInfo(blocks, self.forward_entry, self.primal.name)
        self.predecessors = self.loops.predecessors
        self.counters: dict = {}
        for loop in self.loops.loops:
            counter = core.Phi(type=I64, name=f"iteration.{loop.header.name}", opcode="phi")
            loop.header.insert(0, counter)
            for entry in loop.entries:
                counter.operands.append(constant_int(I64, 0))
                counter.incoming_blocks.append(entry)
            for latch in loop.latches:
                following = Builder(self.module).before_instruction(latch.terminator)
                counter.operands.append(following.add(counter, constant_int(I64, 1), "iteration.next"))
                counter.incoming_blocks.append(latch)
            self.counters[loop] = counter
        self.loop_of_header = {loop.header: loop for loop in self.loops.loops}
        self.came_from: dict[core.Block, core.Phi] = {}
        for block in blocks:
            if len(self.predecessors[block]) > 1 and not self._header_is_structured(block):
                index = core.Phi(type=I64, name=f"from.{block.name}", opcode="phi",
                                 operands=[constant_int(I64, i) for i in range(len(self.predecessors[block]))],
                                 incoming_blocks=list(self.predecessors[block]))
                block.insert(0, index)
                self.came_from[block] = index
        return blocks

    def _header_is_structured(self, block: core.Block) -> bool:
        """A header entered from one block and continued from one latch: the counter says which."""
        loop = self.loop_of_header.get(block)
        return loop is not None and len(loop.entries) == 1 and len(loop.latches) == 1

    def _blocks_run_once(self) -> set[core.Block]:
        """Blocks outside loops that every path to a return passes through: their values stay valid."""
        once = {self.entry_block}
        dominators = self.loops.dominators
        returning = self.returning_blocks or [b for b in self.forward_blocks if isinstance(b.terminator, core.Return)]
        for block in self.forward_blocks:
            if not self.loops.loops_of(block) and all(dominators.dominates(block, r) for r in returning):
                once.add(block)
        return once

    def _active_values(self) -> list[core.Value]:
        values = [a for a, _ in self.active_outputs if self.activity.is_active(a)]
        for block in self.forward_blocks:
            values += [i for i in block.instructions if holds_floats(i.type) and self.activity.is_active(i)]
        return values

    def _error(self, instruction: core.Instruction, what: str) -> DifferentiationError:
        line = f", Python source {instruction.location}" if instruction.location else ""
        block = instruction.parent.name if instruction.parent else "?"
        return DifferentiationError(f"{what} (function @{self.primal.name}, block {block!r}{line})")

    def _values_feeding_selects(self) -> set[core.Instruction]:
        """Active arithmetic whose result reaches an operand of a choice (select, min, max),
        stopping at loads and phis: the choice may discard it, and then its zero adjoint must
        win over an infinite or NaN partial."""
        work = [o for b in self.forward_blocks for i in b.instructions if self.activity.is_active(i)
                and _chooses(i) for o in i.operands]
        found: set[core.Instruction] = set()
        while work:
            value = work.pop()
            if value in found or not isinstance(value, core.Instruction) or not self.activity.is_active(value) \
                    or isinstance(value, (core.Load, core.Phi)):
                continue
            found.add(value)
            work.extend(value.operands)
        return found

    def _classify_transfer(self, instruction: core.Call) -> None:
        """Record the float type a memcpy/memmove into differentiable memory moves (None: no floats)."""
        destination, source = instruction.operands[:2]
        kind = None
        if source in self.activity.shadowed and destination not in self.activity.shadowed \
                and not isinstance(pointer_root(destination), core.Argument):
            raise self._error(instruction, "differentiable memory is copied into memory enzpy cannot "
                              "track (no shadow)")
        if destination in self.activity.shadowed:
            kind = self.types.memory_float_type(destination)
            if kind is None and source in self.activity.shadowed:
                kind = self.types.memory_float_type(source)
        self.transfer_kind[instruction] = kind

    # -- forward sweep

    def _augment_forward(self) -> None:
        shadow_phis = []
        # Reverse post-order visits definitions before uses (phis aside), so
        # every shadow operand exists when its user's shadow is made.
        for block in reverse_post_order(self.forward_entry):
            original = self.original_instructions[block]
            for position, instruction in enumerate(original):
                if isinstance(instruction, core.Return):
                    self._return_to_reverse(instruction)
                    continue
                if instruction.is_terminator:
                    continue
                builder = Builder(self.module).before_instruction(original[position + 1])
                if instruction in self.activity.shadowed and instruction not in self.shadow_of:
                    for lanes in self.shadow_lanes:
                        shadow = make_shadow(builder, instruction, lanes, self.entry_block, self._error,
                                             self.activity.varied, self.primal.name)
                        if isinstance(instruction, core.Phi):
                            shadow_phis.append((instruction, shadow, lanes))
                        if allocation_rule(instruction) is not None:
                            self.allocation_log.record(builder, shadow, allocation_rule(instruction).shadow_release)
                if self.owned_adds is not None and is_site(instruction, self.activity, self.shadow_of):
                    self.owned_adds.record(builder, instruction, self.shadow_of[instruction.operands[0]])
                if instruction in self.calls:
                    self.calls[instruction].augment(builder, self.entry_block, self)
                if typed_lists.typed_list_operation(instruction) and instruction.operands[0] in self.activity.shadowed:
                    typed_lists.mirror(builder, instruction, self.shadow_of)    # keeps the shadow list as long
                if instruction in self.memory_calls:
                    # Inputs the adjoint reads that the kernel may overwrite later: copied before the call.
                    self.operand_copies.save(instruction, self.memory_calls[instruction], self.activity.shadowed)
                    self.memory_calls[instruction].augment(ForwardMemoryCall(
                        instruction, builder, self.shadow_of, self.activity.shadowed, self.entry_block))
                if isinstance(instruction, core.Store):
                    value, pointer = instruction.operands
                    if value in self.activity.shadowed and pointer in self.activity.shadowed:
                        for lanes in self.shadow_lanes:
                            builder.store(lanes[value], lanes[pointer], instruction.align)
                if instruction in self.kept_heap_blocks:
                    self.allocation_log.record(builder, instruction, allocation_rule(instruction).shadow_release)
                if instruction in self.retained:
                    # One more reference: the primal's own decrefs cannot free the buffer
                    # before the reverse sweep has re-loaded what it needs from it.
                    builder.insert(core.AtomicRMW(type=I64, opcode="atomicrmw", operation="add", ordering="monotonic",
                                                  operands=[instruction, constant_int(I64, 1)], align=8))
                    self.allocation_log.record(builder, instruction, "NRT_MemInfo_release")
        for phi, shadow, lanes in shadow_phis:
            fill_shadow_phi(phi, shadow, lanes, self._error)
        self.came_from_slot: dict[core.Block, core.Value] = {}
        self.decided_by: dict[core.Block, tuple[core.Value, int, int]] = {}
        for block, came_from in self.came_from.items():
            # First thing after the phis (shadow phis included), so popped last.
            first = next(i for i in block.instructions if not isinstance(i, core.Phi))
            if self.loops.loops_of(block) and (decided := self._deciding_branch(block)) is not None:
                self.decided_by[block] = decided       # the reverse sweep re-evaluates the branch
            elif self.loops.loops_of(block):
                self.tape.push(Builder(self.module).before_instruction(first), came_from)
            else:                        # runs at most once: a stack slot will do
                slot = Builder(self.module).before_instruction(self.entry_block.terminator).alloca(
                    I64, f"from.{block.name}.slot")
                Builder(self.module).before_instruction(first).store(came_from, slot)
                self.came_from_slot[block] = slot

    def _deciding_branch(self, join: core.Block) -> tuple[core.Value, int, int] | None:
        """(condition, predecessor index if true, if false) when one branch decides how `join` is entered.

        The branch ends the join's immediate dominator, in the same loops, and each
        of its targets reaches the join through a different one of its two
        predecessors. Then the reverse sweep recomputes (or caches) the condition
        instead of taping which predecessor it was: the condition is often free.
        """
        predecessors = self.predecessors[join]
        if len(predecessors) != 2:
            return None
        decider = self.loops.dominators.immediate.get(join)
        branch = decider.terminator if decider is not None else None
        if not (isinstance(branch, core.Branch) and len(branch.targets) == 2 and branch.operands
                and not isinstance(branch.operands[0], core.Constant)
                and set(self.loops.loops_of(decider)) == set(self.loops.loops_of(join))):
            return None
        entered = [self._predecessors_reached(target, decider, join) for target in branch.targets]
        if not all(len(found) == 1 for found in entered) or entered[0] == entered[1]:
            return None
        return branch.operands[0], predecessors.index(entered[0].pop()), predecessors.index(entered[1].pop())

    def _predecessors_reached(self, start: core.Block, decider: core.Block, join: core.Block) -> set[core.Block]:
        """Predecessors of `join` through which paths from the edge decider -> start enter it."""
        if start is join:
            return {decider}
        found, seen, pending = set(), {start}, [start]
        while pending:
            block = pending.pop()
            terminator = block.terminator     # None for a return the forward sweep has taken out
            for successor in terminator.successors() if terminator is not None else ():
                if successor is join:
                    found.add(block)
                elif successor is not decider and successor not in seen:
                    seen.add(successor)
                    pending.append(successor)
        return found

    def _return_to_reverse(self, terminator: core.Return) -> None:
        """Keep the status, note which return this was; the reverse sweep starts here."""
        builder = Builder(self.module).before_instruction(terminator)
        builder.store(terminator.operands[0], self.status_slot)
        builder.store(constant_int(I64, len(self.returning_blocks)), self.return_slot)
        block = terminator.parent
        block.instructions.remove(terminator)
        self.returning_blocks.append(block)

    # -- reverse sweep

    def _build_reverse_sweep(self) -> None:
        function = self.function
        start = function.append_block("reverse.start")
        dispatch = function.append_block("reverse.dispatch")
        self.reverse_block = {b: function.append_block(f"reverse.{b.name}") for b in self.forward_blocks}
        self.values.reverse_block_of = self.reverse_block
        exit_block = function.append_block("reverse.exit")
        self.trap = function.append_block("reverse.unreachable")
        Builder(self.module).at_end(self.trap).unreachable()
        for block in self.returning_blocks:
            Builder(self.module).at_end(block).br(start)

        builder = Builder(self.module).at_end(start)
        # What the forward sweep left on the tape, for `explain` (one store per call).
        builder.store(self.tape.slots(builder), self._tape_slots_global())
        status = builder.load(I32, self.status_slot, "status.value")
        failed = builder.icmp("ne", status, constant_int(I32, 0))
        if self.allocation_log is not None:
            # The kernel raised: no reverse code runs, but what it allocated must go.
            release = function.append_block("reverse.release")
            builder.cond_br(failed, release, dispatch)
            self.allocation_log.release_all(function, Builder(self.module).at_end(release), exit_block)
        else:
            builder.cond_br(failed, exit_block, dispatch)
        builder.at_end(dispatch)
        if len(self.returning_blocks) == 1:
            builder.br(self.reverse_block[self.returning_blocks[0]])
        else:
            returned = builder.load(I64, self.return_slot, "returned.from")
            builder.switch(returned, self.trap, [(i, self.reverse_block[b])
                                                 for i, b in enumerate(self.returning_blocks)])

        for block in self.forward_blocks:
            reverse = self.reverse_block[block]
            self.values.enter(block, reverse)
            builder.at_end(reverse)
            for instruction in reversed(self.original_instructions[block]):
                if not isinstance(instruction, core.Phi):
                    self._reverse_instruction(builder, instruction)
            if block is self.forward_entry:
                builder.br(exit_block)
            else:
                self._to_predecessor(builder, block)

        builder.at_end(exit_block)
        for argument, output in self.active_outputs:
            if argument in self.adjoint_slot:
                # `width` values in a row: as a vector, the lanes' adjoints add in one go. The caller's
                # buffer is aligned for one value, not for the vector (a <6 x double> wants 64 bytes).
                ty, align = adjoint_type(argument.type, self.width), alignment_of(argument.type)
                total = builder.fadd(builder.load(ty, output, align=align), self._take_adjoint(builder, argument))
                builder.store(total, output, align)
        if not self.spec.caller_continues:
            self.tape.free(builder)
        if self.allocation_log is not None:
            self.allocation_log.free(builder)
        builder.ret(builder.load(I32, self.status_slot))
        if self.owned_adds is not None:
            self.owned_adds.finish()

    def _tape_slots_global(self) -> core.GlobalVariable:
        name = tape_slots_global_name(self.function.name)
        variable = core.GlobalVariable(PTR, name, value_type=I64, initializer=constant_int(I64, 0))
        self.module.globals[name] = variable
        return variable

    def _to_predecessor(self, builder: Builder, block: core.Block) -> None:
        """Go back along the edge the forward sweep entered `block` by."""
        predecessors = self.predecessors[block]
        loop = self.loop_of_header.get(block)
        if len(predecessors) == 1 and loop is None:
            for exited in self._loops_exited_into(block):
                # Entering a loop backwards from its exit: resume at the iteration it left in.
                builder.store(self.values.value(builder, self.counters[exited]), self.iteration_slots[exited])
            builder.br(self._edge(block, predecessors[0]))
        elif self._header_is_structured(block):
            iteration = self.values.iteration(builder, loop)
            first = builder.icmp("eq", iteration, constant_int(I64, 0), "first.iteration")
            back = self.function.append_block(f"reverse.back.{block.name}")
            builder.cond_br(first, self._edge(block, loop.entries[0]), back)
            builder.at_end(back)
            builder.store(builder.add(iteration, constant_int(I64, -1)), self.iteration_slots[loop])
            builder.br(self._edge(block, loop.latches[0]))
        else:
            if block in self.came_from_slot:
                came_from = builder.load(I64, self.came_from_slot[block], "came.from")
            elif block in self.decided_by:
                condition, if_true, if_false = self.decided_by[block]
                came_from = builder.select(self.values.value(builder, condition), constant_int(I64, if_true),
                                           constant_int(I64, if_false))
            else:
                came_from = self.tape.pop(builder, ty=I64)
            cases = []
            for index, predecessor in enumerate(predecessors):
                target = self._edge(block, predecessor)
                if loop is not None and predecessor in loop.latches:
                    back = self.function.append_block(f"reverse.back.{predecessor.name}.{block.name}")
                    back_builder = Builder(self.module).at_end(back)
                    iteration = self.values.iteration(back_builder, loop)
                    back_builder.store(back_builder.add(iteration, constant_int(I64, -1)), self.iteration_slots[loop])
                    back_builder.br(target)
                    target = back
                cases.append((index, target))
            builder.switch(came_from, self.trap, cases)

    def _loops_exited_into(self, block: core.Block):
        """Loops the single edge into `block` leaves, outermost first."""
        predecessor = self.predecessors[block][0]
        inside = self.loops.loops_of(block)
        return [loop for loop in self.loops.loops_of(predecessor) if loop not in inside]

    def _edge(self, block: core.Block, predecessor: core.Block) -> core.Block:
        """The reverse of edge predecessor -> block: phi adjoints move to the incoming values."""
        target = self.reverse_block[predecessor]
        active_phis = [p for p in block.phis() if p in self.adjoint_slot]
        if not active_phis:
            return target
        edge = self.function.append_block(f"reverse.edge.{predecessor.name}.{block.name}")
        builder = Builder(self.module).at_end(edge)
        adjoints = [self._take_adjoint(builder, phi) for phi in active_phis]
        for phi, adjoint in zip(active_phis, adjoints):
            self._add_adjoint(builder, phi.operands[phi.incoming_blocks.index(predecessor)], adjoint)
        builder.br(target)
        return edge

    def _reverse_instruction(self, builder: Builder, instruction: core.Instruction) -> None:
        activity, values = self.activity, self.values
        if isinstance(instruction, core.Load):
            if activity.is_active(instruction) and self.width > 1:
                adjoint = self._take_adjoint(builder, instruction)
                for lane in range(self.width):
                    shadow = values.shadow(builder, instruction.operands[0], lane)
                    old = builder.load(instruction.type, shadow, align=instruction.align)
                    builder.store(_added(builder, old, lane_of(builder, adjoint, lane)), shadow, instruction.align)
            elif activity.is_active(instruction):
                adjoint = self._take_adjoint(builder, instruction)
                shadow = values.shadow(builder, instruction.operands[0])
                if self.owned_adds is not None and instruction in self.owned_adds.sites:
                    self.owned_adds.add(builder, instruction, shadow, adjoint)
                    return
                shared = self.spec.atomic_adjoints and not self._adds_alone(instruction.operands[0])
                if shared and instruction.type.is_float:
                    builder.insert(core.AtomicRMW(type=instruction.type, opcode="atomicrmw", operation="fadd",
                                                  operands=[shadow, adjoint], ordering="monotonic",
                                                  align=instruction.align))
                    return
                if shared:
                    self.non_atomic_adjoints.append(f"a load of {instruction.type}")
                old = builder.load(instruction.type, shadow, align=instruction.align)
                builder.store(_added(builder, old, adjoint), shadow, instruction.align)
        elif isinstance(instruction, core.Store):
            value, pointer = instruction.operands
            if pointer in activity.shadowed and holds_floats(value.type):
                shadows = [values.shadow(builder, pointer, lane) for lane in range(self.width)]
                if activity.is_active(value):
                    stored = [builder.load(value.type, shadow, align=instruction.align) for shadow in shadows]
                    self._add_adjoint(builder, value, stored[0] if self.width == 1 else gathered(builder, stored))
                for shadow in shadows:
                    builder.store(_zero_memory(value.type), shadow, instruction.align)
            elif pointer in activity.shadowed and stores_zero_bits(instruction) \
                    and getattr(self.types.held_at(pointer), "kind", None) == "float":
                for lane in range(self.width):
                    builder.store(value, values.shadow(builder, pointer, lane), instruction.align)
        elif isinstance(instruction, core.Call) and (instruction in activity.shadowed or instruction in self.retained
                                                     or instruction in self.kept_heap_blocks):
            if instruction in activity.shadowed and allocation_rule(instruction) is not None:
                # (A list's reallocation has nothing to undo: its shadow goes with the shadow MemInfo.)
                for lane in range(self.width):
                    allocation_rule(instruction).free_shadow(builder, values.shadow(builder, instruction, lane))
            if instruction in self.kept_heap_blocks:
                release = allocation_rule(instruction).shadow_release
                builder.call(builder.declare(release, VOID, [PTR]), [values.value(builder, instruction)])
            if instruction in self.retained:
                release = builder.declare("NRT_MemInfo_release", VOID, [PTR])
                builder.call(release, [values.value(builder, instruction)])
        elif is_memset(instruction) and instruction.operands[0] in activity.shadowed:
            length = values.value(builder, instruction.operands[2])
            for lane in range(self.width):
                shadow = values.shadow(builder, instruction.operands[0], lane)
                builder.call(instruction.callee, [shadow, constant_int(instruction.operands[1].type, 0), length,
                                                  instruction.operands[3]])
        elif instruction in self.calls:
            self.calls[instruction].reverse(builder, self)
        elif typed_lists.typed_list_operation(instruction) == typed_lists.APPEND \
                and instruction.operands[0] in activity.shadowed:
            item = instruction.operands[1]
            typed_lists.undo_append(builder, values.shadow(builder, instruction.operands[0]), item,
                                    values.shadow(builder, item), self.entry_block)
        elif instruction in self.memory_calls:
            if self.spec.atomic_adjoints:
                self.non_atomic_adjoints.append(f"a call to {instruction.callee.name}")
            for lane in range(self.width):       # a BLAS rule's adjoint reaches memory only: once per lane
                self.memory_calls[instruction].reverse(
                    self.operand_copies.context(instruction, builder, values, activity.shadowed, lane))
            self.operand_copies.release(instruction, builder, values)
        elif self.transfer_kind.get(instruction) is not None:
            destination, source, length = instruction.operands[:3]
            length = values.value(builder, length)
            for lane in range(self.width):
                shadow_destination = values.shadow(builder, destination, lane)
                if source in activity.shadowed:
                    if self.spec.atomic_adjoints:
                        self.non_atomic_adjoints.append("a memory copy")
                    helper = transfer_adjoint_function(self.module, self.transfer_kind[instruction].kind)
                    builder.call(helper, [shadow_destination, values.shadow(builder, source, lane), length])
                else:                        # copied from constant memory: the old adjoint just dies
                    memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
                    builder.call(memset, [shadow_destination, constant_int(I8, 0), length, constant_int(I1, 0)])
        elif activity.is_active(instruction) and (not instruction.type.is_float or isinstance(
                instruction, (core.InsertValue, core.ExtractValue))):
            self._reverse_aggregate(builder, instruction)
        elif activity.is_active(instruction):
            self._reverse_scalar(builder, instruction)

    def _adds_alone(self, pointer: core.Value) -> bool:
        """Whether no other thread adds into this pointer's shadow while this one does: a stack
        slot, or a parameter the spec says is this thread's alone."""
        root = pointer_root(pointer)
        return isinstance(root, core.Alloca) or (isinstance(root, core.Argument) and any(
            root is self.function.arguments[i] for i in self.spec.plain_adjoint_parameters))

    def _reverse_scalar(self, builder: Builder, instruction: core.Instruction) -> None:
        adjoint = self._take_adjoint(builder, instruction)
        used = self._inputs_used_by_partials(instruction)
        # Inputs the partials of active operands never read are passed as undef:
        # only dead code (a constant operand's partial) refers to them, so nothing
        # is recomputed or cached for them.
        result, *operands = [self.values.value(builder, v) if v in used
                             else v if isinstance(v, core.Constant) else core.Undef(v.type)
                             for v in [instruction] + list(instruction.operands)]
        rule = scalar_rule(instruction)
        partials = rule.partials(builder, result, *operands)
        for operand, partial in zip(instruction.operands, partials):
            if partial is None or operand not in self.adjoint_slot:
                continue
            zero = _zero_memory(adjoint.type)
            if rule.chooses:
                # The operand returned takes the adjoint whole; the others take nothing
                # (not 0 * adjoint, which is NaN for an infinite adjoint).
                contribution = builder.select(partial, adjoint, zero)
            else:
                # The partial once, for every lane (ad/lanes.py).
                contribution = builder.fmul(partial if self.width == 1 else broadcast(builder, partial, self.width),
                                            adjoint)
            if instruction in self.selected_values and not rule.chooses:
                # A value a select may discard can have an infinite or NaN partial
                # (np.cbrt evaluates pow on both signs); its zero adjoint must win.
                discarded = builder.fcmp("oeq", adjoint, zero)
                contribution = builder.select(discarded, zero, contribution)
            target_type = adjoint_type(operand.type, self.width)
            if contribution.type != target_type:
                opcode = "fptrunc" if _float_width(contribution.type) > _float_width(target_type) else "fpext"
                contribution = builder.cast(opcode, contribution, target_type)
            self._add_adjoint(builder, operand, contribution)

    def _inputs_used_by_partials(self, instruction: core.Instruction) -> set[core.Value]:
        """Run the rule on stand-ins in a scratch block to see which inputs the partials of
        active operands read (`x * 0.5` needs no value of x: the constant gets no adjoint)."""
        rule = scalar_rule(instruction)
        # Constants stay themselves: a rule may take another path for them (x ** 2.0).
        stand_ins = [core.Value(instruction.type)] + [o if isinstance(o, core.Constant) else core.Value(o.type)
                                                      for o in instruction.operands]
        scratch = core.Block("scratch")
        results = rule.partials(Builder(self.module).at_end(scratch), *stand_ins)
        pending = [partial for partial, operand in zip(results, instruction.operands)
                   if partial is not None and operand in self.adjoint_slot]
        used: set[int] = set()
        while pending:
            value = pending.pop()
            if id(value) not in used:
                used.add(id(value))
                if isinstance(value, core.Instruction) and value.parent is scratch:
                    pending.extend(value.operands)
        originals = [instruction] + list(instruction.operands)
        return {o for o, s in zip(originals, stand_ins) if id(s) in used}

    def _take_adjoint(self, builder: Builder, value: core.Value) -> core.Value:
        slot, ty = self.adjoint_slot[value], adjoint_type(value.type, self.width)
        adjoint = builder.load(ty, slot)
        builder.store(_empty_adjoint(ty), slot)
        return adjoint

    def _add_adjoint(self, builder: Builder, value: core.Value, contribution: core.Value) -> None:
        slot = self.adjoint_slot.get(value)
        if slot is None:
            return
        builder.store(_added(builder, builder.load(adjoint_type(value.type, self.width), slot), contribution), slot)

    def _reverse_aggregate(self, builder: Builder, instruction: core.Instruction) -> None:
        """Adjoints of insertvalue, extractvalue and select move field by field."""
        adjoint = self._take_adjoint(builder, instruction)
        if isinstance(instruction, core.InsertValue):
            aggregate, element = instruction.operands
            if element in self.adjoint_slot:
                self._add_adjoint(builder, element, _extract(builder, adjoint, instruction.indices))
            if aggregate in self.adjoint_slot:
                cleared = _insert(builder, adjoint, _empty_adjoint(element.type), instruction.indices)
                self._add_adjoint(builder, aggregate, cleared)
        elif isinstance(instruction, core.ExtractValue):
            aggregate = instruction.operands[0]
            placed = _insert(builder, _empty_adjoint(aggregate.type), adjoint, instruction.indices)
            self._add_adjoint(builder, aggregate, placed)
        else:                                            # select of aggregates
            condition = self.values.value(builder, instruction.operands[0])
            empty = _empty_adjoint(instruction.type)
            self._add_adjoint(builder, instruction.operands[1], builder.select(condition, adjoint, empty))
            self._add_adjoint(builder, instruction.operands[2], builder.select(condition, empty, adjoint))


def _chooses(instruction: core.Instruction) -> bool:
    rule = scalar_rule(instruction)
    return rule is not None and rule.chooses


def _float_fields(ty: Type, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Index paths of the float fields of an aggregate type."""
    if ty.is_float:
        return [prefix]
    if isinstance(ty, StructType):
        return [p for i, e in enumerate(ty.elements) for p in _float_fields(e, prefix + (i,))]
    if isinstance(ty, ArrayType):
        return [p for i in range(ty.count) for p in _float_fields(ty.element, prefix + (i,))]
    return []


def _empty_adjoint(ty: Type) -> core.Value:
    """-0.0 for a float (the exact additive identity); all-zero for an aggregate or lanes."""
    return constant_float(ty, -0.0) if ty.is_float else core.ZeroInitializer(ty)


def _zero_memory(ty: Type) -> core.Value:
    return constant_float(ty, 0.0) if ty.is_float else core.ZeroInitializer(ty)


def _float_width(ty: Type) -> int:
    return (ty.element if isinstance(ty, VectorType) else ty).width


def _extract(builder: Builder, aggregate: core.Value, indices) -> core.Value:
    ty = aggregate.type
    for index in indices:
        ty = ty.elements[index] if isinstance(ty, StructType) else ty.element
    return builder.insert(core.ExtractValue(type=ty, opcode="extractvalue", indices=tuple(indices),
                                            operands=[aggregate]))


def _insert(builder: Builder, aggregate: core.Value, element: core.Value, indices) -> core.Value:
    return builder.insert(core.InsertValue(type=aggregate.type, opcode="insertvalue", indices=tuple(indices),
                                           operands=[aggregate, element]))


_ACCUMULATION_FLAGS = ("reassoc", "nsz")
"""An adjoint is a sum of contributions in no order the program fixes (the reverse
sweep's order is already not the primal's): `reassoc` lets LLVM vectorize it. The
sign of a zero derivative means nothing: `nsz` lets `x + 0.0` fold (a shadow zeroed
by a store, then added to)."""


def _added(builder: Builder, total: core.Value, contribution: core.Value) -> core.Value:
    """total + contribution, field by field for aggregates (non-float fields keep total's)."""
    if total.type.is_float or isinstance(total.type, VectorType):
        return builder.fadd(total, contribution, flags=_ACCUMULATION_FLAGS)
    for path in _float_fields(total.type):
        field = builder.fadd(_extract(builder, total, path), _extract(builder, contribution, path),
                             flags=_ACCUMULATION_FLAGS)
        total = _insert(builder, total, field, path)
    return total


def tape_slots_global_name(gradient_name: str) -> str:
    """The global where a gradient records how many tape slots its last forward sweep used."""
    return f"{gradient_name}.tape.slots"


def _split_edge(function: core.Function, source: core.Block, target: core.Block) -> core.Block:
    """Put a new block on the edge source -> target (every branch case of it)."""
    middle = function.append_block(f"{source.name}.to.{target.name}")
    middle.append(core.Branch(type=VOID, opcode="br", targets=[target]))
    if not core.retarget(source, target, middle):
        raise DifferentiationError(f"cannot split the edge out of block {source.name!r} "
                                   f"({source.terminator.opcode}) (function @{function.name})")
    for phi in target.phis():
        phi.incoming_blocks = [middle if b is source else b for b in phi.incoming_blocks]
    return middle


def _remove_incoming(phi: core.Phi, block: core.Block) -> None:
    kept = [(v, b) for v, b in zip(phi.operands, phi.incoming_blocks) if b is not block]
    phi.operands = [v for v, _ in kept]
    phi.incoming_blocks = [b for _, b in kept]
