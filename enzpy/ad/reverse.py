"""Reverse mode: build `gradient(primal args..., shadows..., adjoint outputs..., seed)`.

Combined mode on one function (see DESIGN.md, "Reverse mode in one paragraph"):

1. the primal body is cloned as the *augmented forward sweep*: next to every
   pointer into differentiable memory it computes the shadow pointer, next to
   every allocation it makes a zeroed shadow allocation, and it pushes onto the
   tape what the reverse sweep will need and cannot recompute there, plus the
   id of each block it leaves;
2. where the primal returned, control goes to the *reverse sweep*: it pops a
   block id, runs that block's adjoint code (instructions in reverse order),
   pops the predecessor's id, moves phi adjoints along that edge, and repeats
   until it reaches the entry block;
3. the exit adds the active scalars' adjoints into their output pointers,
   frees the tape and returns the primal status.

Adjoints of SSA values live in stack slots (promoted to registers by the
post-AD pipeline). The seed enters through a shadow of `retptr`: the primal
stores its result there, and the reverse of that store reads the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.activity import Activity, analyze, holds_floats, holds_pointers
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.clone import clone_body
from ..ir.types import I1, I8, I32, I64, PTR, VOID, FunctionType, Type
from ..analysis.memory_types import float_allocations, memory_float_type, pointer_root
from ..rules.calls import (allocation_rule, is_inactive_call, is_memory_transfer, is_memset,
                           transfer_adjoint_function)
from ..rules.registry import missing_rule_error, scalar_rule
from .tape import TAPE_TYPE, Tape


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


def build_reverse(module: core.Module, primal: core.Function, spec: ReverseSpec, name: str) -> core.Function:
    """Add the gradient of `primal` to `module` and return it."""
    return _ReverseBuilder(module, primal, spec, name).build()


class _ReverseBuilder:
    def __init__(self, module, primal, spec, name):
        self.module, self.primal, self.spec = module, primal, spec
        params = list(primal.function_type.params)
        names = [a.name for a in primal.arguments]
        for index in spec.duplicated:
            params.append(PTR)
            names.append(f"shadow.{names[index]}")
        for index in spec.active:
            params.append(PTR)
            names.append(f"adjoint.{names[index]}")
        if spec.return_type is not None:
            params.append(spec.return_type)
            names.append("seed")
        self.function = core.Function(name, FunctionType(I32, tuple(params)), names)
        self.function.linkage = ""
        module.add_function(self.function)
        self.shadow_of: dict[core.Value, core.Value] = {}
        self.adjoint_slot: dict[core.Value, core.Value] = {}
        self.pushed: dict[core.Instruction, list[core.Value]] = {}
        self.transfer_kind: dict[core.Instruction, Type | None] = {}
        self.returning_blocks: list[core.Block] = []

    # -- setup

    def build(self) -> core.Function:
        function, primal, spec = self.function, self.primal, self.spec
        entry = function.append_block("enzpy.entry")
        value_map = dict(zip(primal.arguments, function.arguments))
        clone_body(primal, function, value_map)
        self.forward_blocks = [value_map[b] for b in primal.blocks]
        self.forward_entry = self.forward_blocks[0]
        extra = iter(function.arguments[len(primal.arguments):])
        for index in spec.duplicated:
            self.shadow_of[function.arguments[index]] = next(extra)
        self.float_arguments = {function.arguments[i] for i in spec.duplicated}
        self.active_outputs = [(function.arguments[i], next(extra)) for i in spec.active]
        seed = next(extra) if spec.return_type is not None else None
        builder = Builder(self.module).at_end(entry)
        retptr = function.arguments[0]
        if seed is not None:
            self.shadow_of[retptr] = builder.alloca(spec.return_type, "shadow.retptr")
            builder.store(seed, self.shadow_of[retptr])
        every_alloca = [i for b in self.forward_blocks for i in b.instructions if isinstance(i, core.Alloca)]
        allocas = {i for i in every_alloca if holds_floats(i.allocated_type)}
        float_roots = set(self.shadow_of) | allocas
        allocations = float_allocations(function, [i for b in self.forward_blocks for i in b.instructions
                                                   if allocation_rule(i) is not None], float_roots)
        self.activity: Activity = analyze(function, float_roots | allocations,
                                          {a for a, _ in self.active_outputs},
                                          pointer_slots=set(every_alloca) - allocas)
        tape_pointer = builder.alloca(TAPE_TYPE, "tape")
        builder.store(core.ZeroInitializer(TAPE_TYPE), tape_pointer)
        self.tape = Tape(self.module, tape_pointer)
        self.status_slot = builder.alloca(I32, "status")
        for value in self._active_values():
            slot = builder.alloca(value.type, f"adjoint.{value.name}" if value.name else "adjoint")
            builder.store(constant_float(value.type, 0.0), slot)
            self.adjoint_slot[value] = slot
        builder.br(self.forward_entry)
        self.entry_block = entry
        self._check_supported()
        self.selected_values = self._values_feeding_selects()
        self._augment_forward()
        self._build_reverse_sweep()
        return function

    def _active_values(self) -> list[core.Value]:
        values = [a for a, _ in self.active_outputs if self.activity.is_active(a)]
        for block in self.forward_blocks:
            values += [i for i in block.instructions if i.type.is_float and self.activity.is_active(i)]
        return values

    def _values_feeding_selects(self) -> set[core.Instruction]:
        """Active arithmetic whose result reaches a select's value operand (stopping at loads and phis)."""
        work = [o for b in self.forward_blocks for i in b.instructions if isinstance(i, core.Select)
                and self.activity.is_active(i) for o in i.operands[1:]]
        found: set[core.Instruction] = set()
        while work:
            value = work.pop()
            if value in found or not isinstance(value, core.Instruction) or not self.activity.is_active(value) \
                    or isinstance(value, (core.Load, core.Phi)):
                continue
            found.add(value)
            work.extend(value.operands)
        return found

    def _error(self, instruction: core.Instruction, what: str) -> DifferentiationError:
        line = f", Python source {instruction.location}" if instruction.location else ""
        block = instruction.parent.name if instruction.parent else "?"
        return DifferentiationError(f"{what} (function @{self.primal.name}, block {block!r}{line})")

    def _check_supported(self) -> None:
        activity = self.activity
        for block in self.forward_blocks:
            for instruction in block.instructions:
                if isinstance(instruction, core.Call) and not is_inactive_call(instruction):
                    touches_shadow = any(a in activity.shadowed for a in instruction.operands)
                    if is_memory_transfer(instruction):
                        self._classify_transfer(instruction)
                    elif touches_shadow and allocation_rule(instruction) is None and not is_memset(instruction) \
                            and scalar_rule(instruction) is None:
                        name = getattr(instruction.callee, "name", "an indirect call")
                        raise self._error(instruction, f"call to '{name}' receives differentiable memory "
                                          "and has no differentiation rule")
                if isinstance(instruction, core.Store):
                    value, pointer = instruction.operands
                    if value in activity.varied and pointer not in activity.shadowed \
                            and not isinstance(pointer_root(pointer), core.Argument):
                        # Only a Const argument may swallow a derivative (the user asked for it);
                        # memory enzpy lost track of would give a silently wrong gradient.
                        raise self._error(instruction, "a differentiable value is stored into memory enzpy "
                                          "cannot track (no shadow)")
                    if value in activity.shadowed and pointer not in activity.shadowed:
                        raise self._error(instruction, "a pointer to differentiable memory is stored where "
                                          "enzpy cannot follow it")
                if isinstance(instruction, core.Load) and not holds_pointers(instruction.type) \
                        and not instruction.type.is_float and instruction.operands[0] in activity.shadowed \
                        and pointer_root(instruction.operands[0]) in self.float_arguments:
                    raise self._error(instruction, f"differentiable float memory is read as {instruction.type} "
                                      "(reinterpreting float bits is not differentiable)")
                if isinstance(instruction, core.Cast) and instruction.opcode == "bitcast" \
                        and instruction.operands[0] in activity.varied and not instruction.type.is_float:
                    raise self._error(instruction, "bitcast of a differentiable float to an integer")
                if instruction in activity.varied and not instruction.type.is_float:
                    raise self._error(instruction, f"'{instruction.opcode}' moves a derivative through an "
                                      f"aggregate ({instruction.type}), which is not supported yet")
                if isinstance(instruction, core.Store) and not instruction.operands[0].type.is_float \
                        and instruction.operands[0] in activity.varied:
                    raise self._error(instruction, "storing an aggregate that carries a derivative is not "
                                      "supported yet")
                if not activity.is_active(instruction) or isinstance(instruction, (core.Phi, core.Load)):
                    continue
                if scalar_rule(instruction) is None:
                    raise missing_rule_error(instruction, self.primal.name)

    def _classify_transfer(self, instruction: core.Call) -> None:
        """Record the float type a memcpy/memmove into differentiable memory moves (None: no floats)."""
        destination, source = instruction.operands[:2]
        kind = None
        if source in self.activity.shadowed and destination not in self.activity.shadowed \
                and not isinstance(pointer_root(destination), core.Argument):
            raise self._error(instruction, "differentiable memory is copied into memory enzpy cannot "
                              "track (no shadow)")
        if destination in self.activity.shadowed:
            declared = dict(zip((self.function.arguments[i] for i in self.spec.duplicated),
                                self.spec.duplicated_types))
            kind = memory_float_type(self.function, destination, declared)
            if kind is None and source in self.activity.shadowed:
                kind = memory_float_type(self.function, source, declared)
        self.transfer_kind[instruction] = kind

    # -- forward sweep

    def _augment_forward(self) -> None:
        shadow_phis = []
        self.original_instructions = {b: list(b.instructions) for b in self.forward_blocks}
        # Reverse post-order visits definitions before uses (phis aside), so
        # every shadow operand exists when its user's shadow is made.
        for block in reverse_post_order(self.forward_entry):
            block_id = self.forward_blocks.index(block)
            original = self.original_instructions[block]
            for position, instruction in enumerate(original):
                following = original[position + 1] if position + 1 < len(original) else None
                builder = Builder(self.module)
                if instruction.is_terminator:
                    self._leave_block(builder.before_instruction(instruction), block_id, instruction)
                    continue
                builder.before_instruction(following)
                if instruction in self.activity.shadowed and instruction not in self.shadow_of:
                    shadow = self._make_shadow(builder, instruction)
                    if isinstance(instruction, core.Phi):
                        shadow_phis.append((instruction, shadow))
                if isinstance(instruction, core.Store):
                    value, pointer = instruction.operands
                    if value in self.activity.shadowed and pointer in self.activity.shadowed:
                        builder.store(self.shadow_of[value], self.shadow_of[pointer], instruction.align)
                needed = self._needed_in_reverse(instruction)
                if needed:
                    self.pushed[instruction] = needed
                    for value in needed:
                        self.tape.push(builder, value)
        for phi, shadow in shadow_phis:
            shadow.operands = [self._shadow_operand(phi, v) for v in phi.operands]
            shadow.incoming_blocks = list(phi.incoming_blocks)

    def _shadow_operand(self, user: core.Instruction, value: core.Value) -> core.Value:
        if value in self.shadow_of:
            return self.shadow_of[value]
        if isinstance(value, (core.ConstantNull, core.Undef, core.Poison)):
            return value
        raise self._error(user, "a pointer merges differentiable memory with memory enzpy has no shadow for")

    def _shadow_or_primal(self, value: core.Value) -> core.Value:
        """Inside a shadow aggregate, fields without shadows (sizes, strides) keep the primal value."""
        if value in self.shadow_of:
            return self.shadow_of[value]
        if value.type.is_float and value in self.activity.varied:
            raise DifferentiationError("a differentiable float inside an aggregate is not supported yet "
                                       f"(function @{self.primal.name})")
        return value

    def _make_shadow(self, builder: Builder, instruction: core.Instruction) -> core.Value:
        name = f"shadow.{instruction.name}" if instruction.name else "shadow"
        if isinstance(instruction, core.GetElementPtr):
            shadow = builder.gep(instruction.source_type, self.shadow_of[instruction.operands[0]],
                                 instruction.operands[1:], name)
            shadow.flags = instruction.flags
        elif isinstance(instruction, core.Cast):
            shadow = builder.cast(instruction.opcode, self.shadow_of[instruction.operands[0]], instruction.type, name)
        elif isinstance(instruction, core.Phi):
            shadow = builder.phi(instruction.type, name)
        elif isinstance(instruction, core.Select):
            condition, if_true, if_false = instruction.operands
            shadow = builder.select(condition, self._shadow_operand(instruction, if_true),
                                    self._shadow_operand(instruction, if_false), name)
        elif isinstance(instruction, core.Load):
            shadow = builder.load(instruction.type, self.shadow_of[instruction.operands[0]], name, instruction.align)
        elif isinstance(instruction, core.InsertValue):
            aggregate, element = instruction.operands
            shadow = builder.insert(core.InsertValue(
                type=instruction.type, name=name, opcode="insertvalue", indices=instruction.indices,
                operands=[self._shadow_or_primal(aggregate), self._shadow_or_primal(element)]))
        elif isinstance(instruction, core.ExtractValue):
            shadow = builder.insert(core.ExtractValue(
                type=instruction.type, name=name, opcode="extractvalue", indices=instruction.indices,
                operands=[self.shadow_of[instruction.operands[0]]]))
        elif isinstance(instruction, core.Alloca):
            entry_builder = Builder(self.module).before_instruction(self.entry_block.terminator)
            shadow = entry_builder.alloca(instruction.allocated_type, name, instruction.align)
            builder.store(core.ZeroInitializer(instruction.allocated_type)
                          if instruction.allocated_type.is_aggregate
                          else _zero_of(instruction.allocated_type), shadow, instruction.align)
        else:
            shadow = allocation_rule(instruction).allocate_shadow(builder, instruction)
        self.shadow_of[instruction] = shadow
        return shadow

    def _leave_block(self, builder: Builder, block_id: int, terminator: core.Instruction) -> None:
        self.tape.push(builder, constant_int(I64, block_id))
        if isinstance(terminator, core.Return):
            builder.store(terminator.operands[0], self.status_slot)
            block = terminator.parent
            block.instructions.remove(terminator)
            self.returning_blocks.append(block)

    def _needed_in_reverse(self, instruction: core.Instruction) -> list[core.Value]:
        """Values the reverse code of `instruction` uses, in push order, minus those always available."""
        activity = self.activity
        wanted: list[core.Value] = []
        if isinstance(instruction, core.Load):
            if activity.is_active(instruction):
                wanted = [self.shadow_of[instruction.operands[0]]]
        elif isinstance(instruction, core.Store):
            value, pointer = instruction.operands
            if pointer in activity.shadowed and value.type.is_float:
                wanted = [self.shadow_of[pointer]]
        elif isinstance(instruction, core.Call) and instruction in self.activity.shadowed:
            wanted = [self.shadow_of[instruction]]
        elif is_memset(instruction) and instruction.operands[0] in activity.shadowed:
            wanted = [self.shadow_of[instruction.operands[0]], instruction.operands[2]]
        elif self.transfer_kind.get(instruction) is not None:
            destination, source, length = instruction.operands[:3]
            wanted = [self.shadow_of[destination], length]
            if source in activity.shadowed:
                wanted.append(self.shadow_of[source])
        elif activity.is_active(instruction) and not isinstance(instruction, core.Phi):
            wanted = self._values_used_by_partials(instruction)
        return [v for v in wanted if not self._always_available(v)]

    def _always_available(self, value: core.Value) -> bool:
        """Constants, parameters and values computed once before anything else need no tape."""
        if isinstance(value, (core.Constant, core.Argument)):
            return True
        return isinstance(value, core.Instruction) and value.parent in (self.entry_block, self.forward_entry)

    def _values_used_by_partials(self, instruction: core.Instruction) -> list[core.Value]:
        """Run the rule on stand-ins in a scratch block to see which inputs its partials read."""
        rule = scalar_rule(instruction)
        stand_ins = [core.Value(instruction.type)] + [core.Value(o.type) for o in instruction.operands]
        scratch = core.Block("scratch")
        results = rule.partials(Builder(self.module).at_end(scratch), *stand_ins)
        used = {id(v) for v in results if v is not None}
        for generated in scratch.instructions:
            used.update(id(v) for v in generated.operands)
        originals = [instruction] + list(instruction.operands)
        return [o for o, s in zip(originals, stand_ins) if id(s) in used]

    # -- reverse sweep

    def _build_reverse_sweep(self) -> None:
        function = self.function
        start = function.append_block("reverse.start")
        dispatch = function.append_block("reverse.dispatch")
        self.reverse_block = {b: function.append_block(f"reverse.{b.name}") for b in self.forward_blocks}
        exit_block = function.append_block("reverse.exit")
        trap = function.append_block("reverse.unreachable")
        Builder(self.module).at_end(trap).unreachable()
        for block in self.returning_blocks:
            Builder(self.module).at_end(block).br(start)

        builder = Builder(self.module).at_end(start)
        status = builder.load(I32, self.status_slot, "status.value")
        failed = builder.icmp("ne", status, constant_int(I32, 0))
        builder.cond_br(failed, exit_block, dispatch)
        builder.at_end(dispatch)
        block_id = self.tape.pop(builder, ty=I64)
        builder.switch(block_id, trap, [(i, self.reverse_block[b]) for i, b in enumerate(self.forward_blocks)])

        predecessors = {b: [] for b in self.forward_blocks}
        for block in self.forward_blocks:
            for successor in dict.fromkeys(block.successors()):
                if successor in predecessors:
                    predecessors[successor].append(block)
        for block in self.forward_blocks:
            builder.at_end(self.reverse_block[block])
            for instruction in reversed(self.original_instructions[block]):
                if not isinstance(instruction, core.Phi):
                    self._reverse_instruction(builder, instruction)
            if block is self.forward_entry:
                builder.br(exit_block)
            else:
                self._to_predecessor(builder, block, predecessors[block], trap)

        builder.at_end(exit_block)
        for argument, output in self.active_outputs:
            if argument in self.adjoint_slot:
                total = builder.fadd(builder.load(argument.type, output), self._take_adjoint(builder, argument))
                builder.store(total, output)
        self.tape.free(builder)
        builder.ret(builder.load(I32, self.status_slot))

    def _to_predecessor(self, builder: Builder, block, predecessors, trap) -> None:
        block_id = self.tape.pop(builder, ty=I64)
        active_phis = [p for p in block.phis() if p in self.adjoint_slot]
        cases = []
        for predecessor in predecessors:
            target = self.reverse_block[predecessor]
            if active_phis:
                edge = self.function.append_block(f"reverse.edge.{predecessor.name}.{block.name}")
                edge_builder = Builder(self.module).at_end(edge)
                adjoints = [self._take_adjoint(edge_builder, phi) for phi in active_phis]
                for phi, adjoint in zip(active_phis, adjoints):
                    incoming = phi.operands[phi.incoming_blocks.index(predecessor)]
                    self._add_adjoint(edge_builder, incoming, adjoint)
                edge_builder.br(target)
                target = edge
            cases.append((self.forward_blocks.index(predecessor), target))
        builder.switch(block_id, trap, cases)

    def _reverse_instruction(self, builder: Builder, instruction: core.Instruction) -> None:
        available = {}
        for value in reversed(self.pushed.get(instruction, [])):
            available[value] = self.tape.pop(builder, like=value)

        def value_in_reverse(value):
            return available.get(value, value)

        activity = self.activity
        if isinstance(instruction, core.Load):
            if activity.is_active(instruction):
                adjoint = self._take_adjoint(builder, instruction)
                shadow = value_in_reverse(self.shadow_of[instruction.operands[0]])
                old = builder.load(instruction.type, shadow, align=instruction.align)
                builder.store(builder.fadd(old, adjoint), shadow, instruction.align)
        elif isinstance(instruction, core.Store):
            value, pointer = instruction.operands
            if pointer in activity.shadowed and value.type.is_float:
                shadow = value_in_reverse(self.shadow_of[pointer])
                if activity.is_active(value):
                    self._add_adjoint(builder, value, builder.load(value.type, shadow, align=instruction.align))
                builder.store(constant_float(value.type, 0.0), shadow, instruction.align)
        elif isinstance(instruction, core.Call) and instruction in activity.shadowed:
            allocation_rule(instruction).free_shadow(builder, value_in_reverse(self.shadow_of[instruction]))
        elif is_memset(instruction) and instruction.operands[0] in activity.shadowed:
            shadow, length = (value_in_reverse(self.shadow_of[instruction.operands[0]]),
                              value_in_reverse(instruction.operands[2]))
            builder.call(instruction.callee, [shadow, constant_int(instruction.operands[1].type, 0), length,
                                              instruction.operands[3]])
        elif self.transfer_kind.get(instruction) is not None:
            destination, source, length = instruction.operands[:3]
            shadow_destination = value_in_reverse(self.shadow_of[destination])
            if source in activity.shadowed:
                helper = transfer_adjoint_function(self.module, self.transfer_kind[instruction].kind)
                builder.call(helper, [shadow_destination, value_in_reverse(self.shadow_of[source]),
                                      value_in_reverse(length)])
            else:                        # copied from constant memory: the old adjoint just dies
                memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
                builder.call(memset, [shadow_destination, constant_int(I8, 0), value_in_reverse(length),
                                      constant_int(I1, 0)])
        elif activity.is_active(instruction):
            self._reverse_scalar(builder, instruction, value_in_reverse)

    def _reverse_scalar(self, builder: Builder, instruction: core.Instruction, value_in_reverse) -> None:
        adjoint = self._take_adjoint(builder, instruction)
        operands = [value_in_reverse(o) for o in instruction.operands]
        partials = scalar_rule(instruction).partials(builder, value_in_reverse(instruction), *operands)
        for operand, partial in zip(instruction.operands, partials):
            if partial is None or operand not in self.adjoint_slot:
                continue
            contribution = builder.fmul(partial, adjoint)
            if instruction in self.selected_values:
                # A value a select may discard can have an infinite or NaN partial
                # (np.cbrt evaluates pow on both signs); its zero adjoint must win.
                discarded = builder.fcmp("oeq", adjoint, constant_float(adjoint.type, 0.0))
                contribution = builder.select(discarded, constant_float(adjoint.type, 0.0), contribution)
            if contribution.type != operand.type:
                opcode = "fptrunc" if contribution.type.width > operand.type.width else "fpext"
                contribution = builder.cast(opcode, contribution, operand.type)
            self._add_adjoint(builder, operand, contribution)

    def _take_adjoint(self, builder: Builder, value: core.Value) -> core.Value:
        slot = self.adjoint_slot[value]
        adjoint = builder.load(value.type, slot)
        builder.store(constant_float(value.type, 0.0), slot)
        return adjoint

    def _add_adjoint(self, builder: Builder, value: core.Value, contribution: core.Value) -> None:
        slot = self.adjoint_slot.get(value)
        if slot is None:
            return
        builder.store(builder.fadd(builder.load(value.type, slot), contribution), slot)


def reverse_post_order(entry: core.Block) -> list[core.Block]:
    order, seen, stack = [], {entry}, [(entry, iter(entry.successors()))]
    while stack:
        block, successors = stack[-1]
        for successor in successors:
            if successor not in seen:
                seen.add(successor)
                stack.append((successor, iter(successor.successors())))
                break
        else:
            stack.pop()
            order.append(block)
    return order[::-1]


def _zero_of(ty: Type) -> core.Value:
    if ty.is_float:
        return constant_float(ty, 0.0)
    if ty.is_pointer:
        return core.ConstantNull(ty)
    return constant_int(ty, 0)
