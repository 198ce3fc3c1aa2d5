"""Forward mode: build the tangent function of a primal, `width` directions in one sweep.

Signature of the generated function (numba's convention is kept: parameter 0
is retptr, the i32 result is the primal's status, returned unchanged):

    i32 @name(primal parameters...,
              for each duplicated pointer parameter: `width` shadow pointers (lane 0 first),
              for each active float scalar parameter: `width` tangent values,
              if spec.return_type: one ptr to `width` return tangents)

A shadow pointer holds on entry the tangent of the array's contents and on
exit the tangent of its final contents (arrays the kernel writes receive the
tangent of what is written). The return tangents are written where the primal
stores its result through retptr.

The sweep is one clone of the primal. Next to every active float it computes
`width` tangents: the rule's partials once, then one multiply-add per lane
(tangent = sum of partial_i * tangent_i over operands that carry one), which
is what makes vector mode cheaper than `width` calls. Pointers get one shadow
per lane (see `shadows.py`); loads of shadowed floats load the tangent,
stores store it, memset / memcpy act on the shadows, BLAS calls run their
rule's tangent code (enzpy/rules/blas.py), phis and selects get tangent phis
and selects. The shadow of an allocation mirrors the reference
counting of its primal (`NRT_incref`, `NRT_decref`, ...), so it is freed
when the primal is.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.activity import Activity, analyze, holds_floats, holds_pointers
from ..analysis.alias_scopes import label_memory, private_arguments
from ..analysis.lists import list_meminfos, writes_list_header
from ..analysis.memory_types import memory_float_type, pointer_root
from ..analysis.type_analysis import analyze_types, parameter_seeds
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.clone import clone_body
from ..ir.types import I1, I8, I32, I64, PTR, VOID, FunctionType, StructType, Type, float_leaf_type
from ..rules import lists, typed_lists
from ..rules.calls import callee_name, is_memory_transfer, is_memset, memory_call_rule
from ..rules.heap import DEALLOCATORS
from ..rules.registry import scalar_rule
from ..analysis.loops import reverse_post_order
from .calls import operand_seeds, result_slots, tangent_calls, without
from .memory_calls import ForwardMemoryCall
from .shadows import check_supported, fill_shadow_phi, make_shadow, memory_roots, stores_zero_bits, zero_of

# numba's reference counting and freeing, C's free and C++'s delete: the shadow of an allocation
# follows every one of these calls on its primal, so it is freed when the primal is.
LIFETIME_FUNCTIONS = ("NRT_incref", "NRT_decref", "NRT_MemInfo_call_dtor", "NRT_Free", *DEALLOCATORS)


@dataclass(frozen=True)
class ForwardSpec:
    """Which parameters of the primal carry tangents, and how many directions at once."""

    duplicated: tuple[int, ...]
    """Indices of pointer parameters (array data) that get `width` shadow pointer parameters."""
    active: tuple[int, ...]
    """Indices of float scalar parameters that get `width` tangent parameters."""
    return_type: Type | None
    """Float type of the value the primal stores through retptr (its tangents are returned), or None."""
    duplicated_types: tuple[Type, ...] = ()
    """Element float type behind each duplicated pointer."""
    width: int = 1
    """Number of tangent directions propagated in one sweep."""
    private_parameters: int = 2
    """How many leading parameters point at memory no other pointer reaches (numba's
    retptr and excinfo; 1 for the clang adapter's retptr)."""
    parameter_trees: tuple = ()
    """(index, type tree) of parameters as a caller sees them (a callee's tangent, ad/calls.py)."""


def build_forward(module: core.Module, primal: core.Function, spec: ForwardSpec, name: str) -> core.Function:
    """Add the tangent function of `primal` to `module` and return it."""
    if spec.width < 1:
        raise ValueError(f"width must be at least 1, got {spec.width}")
    function = _ForwardBuilder(module, primal, spec, name).build()
    label_memory(function, False, private_arguments(function, spec.private_parameters))
    return function


class _ForwardBuilder:
    def __init__(self, module, primal, spec, name):
        self.module, self.primal, self.spec = module, primal, spec
        self.lanes = range(spec.width)
        params = list(primal.function_type.params)
        names = [a.name for a in primal.arguments]
        for index in spec.duplicated:
            params.extend(PTR for _ in self.lanes)
            names.extend(f"shadow.{lane}.{names[index]}" for lane in self.lanes)
        for index in spec.active:
            params.extend(params[index] for _ in self.lanes)
            names.extend(f"tangent.{lane}.{names[index]}" for lane in self.lanes)
        if spec.return_type is not None:
            params.append(PTR)
            names.append("return.tangents")
        self.function = core.Function(name, FunctionType(I32, tuple(params)), names)
        for argument, original in zip(self.function.arguments, primal.arguments):
            # C's `restrict`: the parameter's memory is reached through it alone (private_arguments).
            argument.attributes = tuple(a for a in original.attributes if a == "noalias")
        self.function.linkage = ""
        module.add_function(self.function)
        # One map per lane: primal pointer -> shadow pointer, primal float -> tangent.
        self.shadow_of: list[dict[core.Value, core.Value]] = [{} for _ in self.lanes]
        self.tangent_of: list[dict[core.Value, core.Value]] = [{} for _ in self.lanes]

    # -- setup

    def build(self) -> core.Function:
        function, primal, spec = self.function, self.primal, self.spec
        entry = function.append_block("enzpy.entry")
        value_map = dict(zip(primal.arguments, function.arguments))
        clone_body(primal, function, value_map)
        self.blocks = _drop_unreachable(function, value_map[primal.blocks[0]])
        extra = iter(function.arguments[len(primal.arguments):])
        for index in spec.duplicated:
            for lane in self.lanes:
                # The shadow of a `restrict` array is as distinct as the array (Enzyme's convention).
                self.shadow_of[lane][function.arguments[index]] = shadow = next(extra)
                shadow.attributes = function.arguments[index].attributes
        active_arguments = [function.arguments[i] for i in spec.active]
        for argument in active_arguments:
            for lane in self.lanes:
                self.tangent_of[lane][argument] = next(extra)
        builder = Builder(self.module).at_end(entry)
        if spec.return_type is not None:
            # The primal stores its result through retptr: its shadow is the lane's output slot.
            return_tangents = next(extra)
            for lane in self.lanes:
                self.shadow_of[lane][function.arguments[0]] = builder.gep(
                    spec.return_type, return_tangents, [constant_int(I64, lane)], f"return.tangent.{lane}")
        builder.br(self.blocks[0])
        self.entry_block = entry

        # Arrays of floats; a struct (C, passed by value) holds its other fields where they lie.
        self.float_arguments = {function.arguments[i] for i in spec.duplicated} - {
            function.arguments[i] for i, ty in zip(spec.duplicated, spec.duplicated_types)
            if isinstance(ty, StructType)}
        # A struct's memory (a C struct passed by value) has the float type of its float fields.
        self.declared_types = {function.arguments[i]: float_leaf_type(ty) or ty
                               for i, ty in zip(spec.duplicated, spec.duplicated_types)}
        types = analyze_types(function, {
            **parameter_seeds(function, dict(zip(spec.duplicated, spec.duplicated_types)), spec.return_type),
            **operand_seeds(self.blocks),
            **{function.arguments[i]: dict(tree) for i, tree in spec.parameter_trees}})
        types.check()
        self.types = types
        self.list_meminfos = list_meminfos([i for block in self.blocks for i in block.instructions])
        roots, slots = memory_roots(self.blocks, types)
        self.activity: Activity = analyze(function, set(self.shadow_of[0]) | roots | result_slots(self.blocks, types, slots),
                                          set(active_arguments), pointer_slots=slots)
        # Calls to defined functions that stay calls: to their callees' tangent functions.
        self.calls = tangent_calls(self.module, self.blocks, self.activity, types, spec, self._error)
        check_supported(without(self.blocks, self.calls), self.activity, self.float_arguments, self._error,
                        primal.name, self._check_transfer)
        self._check_writes()
        self._forward_sweep()
        return function

    def _error(self, instruction: core.Instruction, what: str) -> DifferentiationError:
        line = f", Python source {instruction.location}" if instruction.location else ""
        block = instruction.parent.name if instruction.parent else "?"
        return DifferentiationError(f"{what} (function @{self.primal.name}, block {block!r}{line})")

    def _check_transfer(self, instruction: core.Call) -> None:
        destination, source = instruction.operands[:2]
        if source in self.activity.shadowed and destination not in self.activity.shadowed \
                and not isinstance(pointer_root(destination), core.Argument):
            raise self._error(instruction, "differentiable memory is copied into memory enzpy cannot "
                              "track (no shadow)")

    def _check_writes(self) -> None:
        """Writes to float memory the sweep cannot mirror into the shadow would leave a stale tangent."""
        shadowed, float_memory = self.activity.shadowed, {}
        for block in self.blocks:
            for instruction in block.instructions:
                if isinstance(instruction, core.Store):
                    value, pointer = instruction.operands
                    writes_bits = not value.type.is_float and not holds_pointers(value.type) \
                        and not holds_floats(value.type)
                elif isinstance(instruction, (core.AtomicRMW, core.CmpXchg)):
                    pointer, writes_bits = instruction.operands[0], True
                else:
                    continue
                if not writes_bits or pointer not in shadowed or isinstance(instruction, core.Store) \
                        and stores_zero_bits(instruction):
                    continue
                held = self.types.held_at(pointer)
                if held is not None and held.kind != "float":
                    continue                       # a list's integer header, next to its float items
                root = pointer_root(pointer)
                if root not in float_memory:
                    float_memory[root] = memory_float_type(self.function, root, self.declared_types)
                if float_memory[root] is not None:
                    raise self._error(instruction, f"differentiable float memory is written by "
                                      f"'{instruction.opcode}' as raw bits (not differentiable)")

    # -- the sweep

    def _forward_sweep(self) -> None:
        self.pending_phis: list[tuple[core.Phi, str]] = []
        for block in reverse_post_order(self.blocks[0]):
            original = list(block.instructions)
            for position, instruction in enumerate(original):
                if instruction.is_terminator:
                    continue
                builder = Builder(self.module).before_instruction(original[position + 1])
                builder.location = instruction.location
                self._differentiate(builder, instruction)
        # Every value's shadow and tangent now exists: give the phis their incoming ones.
        for phi, kind in self.pending_phis:
            for lane in self.lanes:
                if kind == "shadow":
                    fill_shadow_phi(phi, self.shadow_of[lane][phi], self.shadow_of[lane], self._error)
                else:
                    tangent = self.tangent_of[lane][phi]
                    tangent.operands = [self._tangent_or_zero(lane, v, phi.type) for v in phi.operands]
                    tangent.incoming_blocks = list(phi.incoming_blocks)

    def _differentiate(self, builder: Builder, instruction: core.Instruction) -> None:
        activity = self.activity
        if instruction in activity.shadowed and instruction not in self.shadow_of[0]:
            for lane in self.lanes:
                make_shadow(builder, instruction, self.shadow_of[lane], self.entry_block, self._error,
                            activity.varied, self.primal.name)
                lists.give_item_destructor(builder, instruction, self.shadow_of[lane])
            if isinstance(instruction, core.Phi):
                self.pending_phis.append((instruction, "shadow"))
        if isinstance(instruction, core.Call):
            self._mirror_lifetime(builder, instruction)
        if isinstance(instruction, core.Store):
            self._store(builder, instruction)
        elif is_memset(instruction) and instruction.operands[0] in activity.shadowed:
            for lane in self.lanes:
                builder.call(instruction.callee, [self.shadow_of[lane][instruction.operands[0]],
                                                  constant_int(I8, 0), *instruction.operands[2:]])
        elif is_memory_transfer(instruction) and instruction.operands[0] in activity.shadowed:
            self._transfer(builder, instruction)
        elif typed_lists.typed_list_operation(instruction) and instruction.operands[0] in activity.shadowed:
            for lane in self.lanes:
                typed_lists.mirror(builder, instruction, self.shadow_of[lane])
                typed_lists.mirror_item_lifetimes(builder, instruction, self.shadow_of[lane])
        elif (rule := memory_call_rule(instruction)) is not None:
            for lane in self.lanes:          # BLAS: tangent code right after the call
                rule.forward(ForwardMemoryCall(instruction, builder, self.shadow_of[lane], activity.shadowed,
                                               self.entry_block))
        elif instruction in self.calls:
            self.calls[instruction].forward(self.shadow_of, self.tangent_of)
        elif not activity.is_active(instruction):
            return
        elif isinstance(instruction, core.Phi):
            for lane in self.lanes:
                self.tangent_of[lane][instruction] = builder.phi(instruction.type,
                                                                 self._tangent_name(instruction, lane))
            self.pending_phis.append((instruction, "tangent"))
        elif isinstance(instruction, core.Load):
            for lane in self.lanes:
                self.tangent_of[lane][instruction] = builder.load(
                    instruction.type, self.shadow_of[lane][instruction.operands[0]],
                    self._tangent_name(instruction, lane), instruction.align)
        else:
            self._scalar(builder, instruction)

    def _scalar(self, builder: Builder, instruction: core.Instruction) -> None:
        """tangent = sum of partial_i * tangent_i: the partials once, then `width` multiply-adds."""
        rule = scalar_rule(instruction)
        partials = rule.partials(builder, instruction, *instruction.operands)
        if rule.chooses:
            self._chosen(builder, instruction, partials)
            return
        carried = [(partial, operand) for partial, operand in zip(partials, instruction.operands)
                   if partial is not None and self.activity.is_active(operand)]
        for lane in self.lanes:
            total = None
            for partial, operand in carried:
                tangent = self._converted(builder, self.tangent_of[lane][operand], instruction.type)
                term = builder.fmul(partial, tangent)
                total = term if total is None else builder.fadd(total, term)
            self.tangent_of[lane][instruction] = total if total is not None else zero_of(instruction.type)

    def _chosen(self, builder: Builder, instruction: core.Instruction, chosen: tuple) -> None:
        """The tangent of the operand returned (select, min, max), picked, not weighted by 0 and 1:
        a NaN or infinite tangent of an operand not returned stays out of the result."""
        candidates = [(condition, operand) for condition, operand in zip(chosen, instruction.operands)
                      if condition is not None]
        for lane in self.lanes:
            tangent = zero_of(instruction.type)
            for condition, operand in reversed(candidates):
                picked = self._converted(builder, self._tangent_or_zero(lane, operand, operand.type),
                                         instruction.type)
                tangent = builder.select(condition, picked, tangent, self._tangent_name(instruction, lane))
            self.tangent_of[lane][instruction] = tangent

    def _store(self, builder: Builder, instruction: core.Store) -> None:
        value, pointer = instruction.operands
        if pointer not in self.activity.shadowed:
            return
        for lane in self.lanes:
            shadow = self.shadow_of[lane][pointer]
            if value.type.is_float:
                builder.store(self._tangent_or_zero(lane, value, value.type), shadow, instruction.align)
            elif value in self.activity.shadowed:
                builder.store(self.shadow_of[lane][value], shadow, instruction.align)
            elif stores_zero_bits(instruction) and getattr(self.types.held_at(pointer), "kind", None) == "float" \
                    or holds_pointers(value.type) and isinstance(value, (core.ZeroInitializer, core.ConstantNull)):
                # A cleared slot (numba zeroes a variable's slot before reuse): the shadow slot too,
                # or a stale shadow pointer left in it would be released a second time.
                builder.store(value, shadow, instruction.align)
            elif writes_list_header(instruction, self.list_meminfos):
                # The shadow list's size is the primal's: its item destructor reads it.
                builder.store(value, shadow, instruction.align)
            elif holds_floats(value.type) and not holds_pointers(value.type):
                # An aggregate of floats that carries no derivative (check_supported refuses the others).
                builder.store(core.ZeroInitializer(value.type), shadow, instruction.align)

    def _transfer(self, builder: Builder, instruction: core.Call) -> None:
        """memcpy / memmove into shadowed memory: copy the tangents, or zero them when the source has none."""
        destination, source, length = instruction.operands[:3]
        for lane in self.lanes:
            if source in self.activity.shadowed:
                builder.call(instruction.callee, [self.shadow_of[lane][destination], self.shadow_of[lane][source],
                                                  *instruction.operands[2:]])
            else:
                memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
                builder.call(memset, [self.shadow_of[lane][destination], constant_int(I8, 0),
                                      builder.cast("zext", length, I64), constant_int(I1, 0)])

    def _mirror_lifetime(self, builder: Builder, call: core.Call) -> None:
        """Give the shadows of an allocation the reference counting of the primal, so they die together."""
        name = callee_name(call)
        if name not in LIFETIME_FUNCTIONS or not call.operands or call.operands[0] not in self.activity.shadowed:
            return
        primal = call.operands[0]
        for lane in self.lanes:
            shadow = self.shadow_of[lane].get(primal)
            if shadow is not None and shadow is not primal:     # else a field shared with the primal
                builder.call(mirror_function(self.module, DEALLOCATORS.get(name, name)), [primal, shadow])

    # -- helpers

    def _tangent_or_zero(self, lane: int, value: core.Value, ty: Type) -> core.Value:
        if self.activity.is_active(value):
            return self.tangent_of[lane][value]
        return zero_of(ty)

    @staticmethod
    def _converted(builder: Builder, tangent: core.Value, ty: Type) -> core.Value:
        """A tangent in another float type (fpext / fptrunc operands) converted to `ty`."""
        if tangent.type == ty:
            return tangent
        opcode = "fptrunc" if tangent.type.width > ty.width else "fpext"
        return builder.cast(opcode, tangent, ty)

    @staticmethod
    def _tangent_name(instruction: core.Instruction, lane: int) -> str:
        return f"tangent.{lane}.{instruction.name}" if instruction.name else ""


def _drop_unreachable(function: core.Function, first: core.Block) -> list[core.Block]:
    """Remove the clone's unreachable blocks (no shadows or tangents are made there); the rest, in order."""
    reachable = set(reverse_post_order(first))
    for block in [b for b in function.blocks[1:] if b not in reachable]:
        function.blocks.remove(block)
        for successor in block.successors():
            for phi in successor.phis():
                kept = [(v, b) for v, b in zip(phi.operands, phi.incoming_blocks) if b is not block]
                phi.operands, phi.incoming_blocks = [v for v, _ in kept], [b for _, b in kept]
    return function.blocks[1:]


def mirror_function(module: core.Module, name: str) -> core.Function:
    """`void mirror(ptr primal, ptr shadow)`: call `name(shadow)` unless the shadow is null or the primal.

    Added to `module` once per NRT function; inlined by the post-AD pipeline.
    """
    mirror_name = f"enzpy.forward.shadow.{name}"
    existing = module.functions.get(mirror_name)
    if existing is not None:
        return existing
    function = core.Function(mirror_name, FunctionType(VOID, (PTR, PTR)), ["primal", "shadow"])
    function.linkage = "internal"
    function.attributes = ("alwaysinline",)
    module.add_function(function)
    primal, shadow = function.arguments
    entry, mirrored, done = (function.append_block(n) for n in ("entry", "mirrored", "done"))
    builder = Builder(module).at_end(entry)
    missing = builder.binary("or", builder.icmp("eq", shadow, core.ConstantNull(PTR)),
                             builder.icmp("eq", shadow, primal))
    builder.cond_br(missing, done, mirrored)
    builder.at_end(mirrored)
    builder.call(builder.declare(name, VOID, [PTR]), [shadow])
    builder.br(done)
    builder.at_end(done)
    builder.ret()
    return function
