"""What both AD modes share: which memory gets a shadow, shadow pointers, the safety nets.

A *shadow* is the derivative copy of differentiable memory; a shadow pointer
points at the same place in the shadow as its primal pointer does in the
primal. Next to every pointer into differentiable memory (GEP, cast, phi,
select, load of a pointer, alloca, allocation call, array struct) each mode
builds its shadow the same way, in a `shadow_of` map for one shadow (reverse
mode has one, vector forward mode one per lane). `memory_roots` says which
memory the function makes itself starts with a shadow.

`check_supported` refuses what neither mode can differentiate safely: every
refusal is a DifferentiationError, never a silently wrong derivative.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..analysis.activity import Activity, holds_floats, holds_pointers
from ..analysis.memory_types import only_reference_counted, pointer_root
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.types import I1, I8, I64, PTR, VOID, Type, size_in_bytes
from ..rules.calls import allocation_rule, is_inactive_call, is_memory_transfer, is_memset, memory_call_rule
from ..rules import typed_lists
from ..rules.heap import deallocation
from ..rules.lists import reallocation_rule
from ..rules.typed_lists import handles as typed_list_handles
from ..rules.typed_lists import is_base_pointer, shadow_base_pointer
from ..rules.numba_helpers import describe_helper
from ..rules.registry import missing_rule_error, scalar_rule
from .memory_calls import check_memory_call

ErrorFactory = Callable[[core.Instruction, str], DifferentiationError]
"""`error(instruction, what)`: the error to raise, naming the function, block and source line."""


def memory_roots(blocks: Iterable[core.Block], types) -> tuple[set[core.Value], set[core.Value]]:
    """(roots, pointer slots) of the memory a function makes itself, for activity analysis.

    Roots get shadows from the start: stack slots with float fields, allocations
    whose memory holds floats (type analysis says), and the slots
    `numba_list_new` fills with a typed list of floats. The other stack slots
    get a shadow only once a shadowed pointer is stored into them.
    """
    instructions = [i for block in blocks for i in block.instructions]
    every_alloca = [i for i in instructions if isinstance(i, core.Alloca)]
    allocas = {i for i in every_alloca if holds_floats(i.allocated_type)}
    allocations = {i for i in instructions if allocation_rule(i) is not None and types.points_at_floats(i)}
    return allocas | allocations | typed_lists.list_slots(instructions, types.points_at_floats), \
        set(every_alloca) - allocas


def make_shadow(builder: Builder, instruction: core.Instruction, shadow_of: dict[core.Value, core.Value],
                entry_block: core.Block, error: ErrorFactory, varied: set[core.Value],
                function_name: str) -> core.Value:
    """Build the shadow of the pointer-valued `instruction` at `builder`, record it in `shadow_of`.

    Operands' shadows must exist already (phis excepted: their shadow is an
    empty phi, filled by `fill_shadow_phi` once every incoming shadow exists).
    Shadows of allocas are allocated in `entry_block` and zeroed where the
    primal alloca is.
    """
    name = f"shadow.{instruction.name}" if instruction.name else "shadow"
    if isinstance(instruction, core.GetElementPtr):
        shadow = builder.gep(instruction.source_type, shadow_of[instruction.operands[0]],
                             instruction.operands[1:], name)
        shadow.flags = instruction.flags
    elif isinstance(instruction, core.Cast):
        shadow = builder.cast(instruction.opcode, shadow_of[instruction.operands[0]], instruction.type, name)
    elif isinstance(instruction, core.Phi):
        shadow = builder.phi(instruction.type, name)
    elif isinstance(instruction, core.Select):
        condition, if_true, if_false = instruction.operands
        shadow = builder.select(condition, shadow_operand(instruction, if_true, shadow_of, error),
                                shadow_operand(instruction, if_false, shadow_of, error), name)
    elif isinstance(instruction, core.Load):
        shadow = builder.load(instruction.type, shadow_of[instruction.operands[0]], name, instruction.align)
    elif isinstance(instruction, core.InsertValue):
        aggregate, element = instruction.operands
        shadow = builder.insert(core.InsertValue(
            type=instruction.type, name=name, opcode="insertvalue", indices=instruction.indices,
            operands=[shadow_or_primal(aggregate, shadow_of, varied, function_name),
                      shadow_or_primal(element, shadow_of, varied, function_name)]))
    elif isinstance(instruction, core.ExtractValue):
        shadow = builder.insert(core.ExtractValue(
            type=instruction.type, name=name, opcode="extractvalue", indices=instruction.indices,
            operands=[shadow_of[instruction.operands[0]]]))
    elif isinstance(instruction, core.Alloca):
        shadow = _shadow_alloca(builder, instruction, entry_block, name)
    elif is_base_pointer(instruction):
        shadow = shadow_base_pointer(builder, instruction, shadow_of[instruction.operands[0]])
    elif (rule := reallocation_rule(instruction)) is not None:
        shadow = rule.reallocate_shadow(builder, instruction, shadow_of[instruction.operands[0]])
    else:
        shadow = allocation_rule(instruction).allocate_shadow(builder, instruction)
    shadow_of[instruction] = shadow
    return shadow


def _shadow_alloca(builder: Builder, alloca: core.Alloca, entry_block: core.Block, name: str) -> core.Value:
    """A zeroed stack slot of the same size as `alloca`, which may hold several elements
    (numba's prange launch packs its argument pointers in `alloca ptr, i64 3`)."""
    count, ty = alloca.operands[0], alloca.allocated_type
    entry = Builder(builder.module).before_instruction(entry_block.terminator)
    if isinstance(count, core.ConstantInt) and count.value == 1:
        shadow = entry.alloca(ty, name, alloca.align)
        builder.store(core.ZeroInitializer(ty) if ty.is_aggregate else zero_of(ty), shadow, alloca.align)
        return shadow
    if isinstance(count, core.ConstantInt):
        shadow = entry.alloca(ty, name, alloca.align, count=count)
        size = constant_int(I64, count.value * size_in_bytes(ty))
    else:                   # a dynamic count is known only where the primal's slot is made
        shadow = builder.alloca(ty, name, alloca.align, count=count)
        size = builder.mul(builder.cast("zext", count, I64), constant_int(I64, size_in_bytes(ty)))
    memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
    builder.call(memset, [shadow, constant_int(I8, 0), size, constant_int(I1, 0)])
    return shadow


def stores_zero_bits(store: core.Store) -> bool:
    """An integer zero stored over floats (numba's list pop clears the slot it empties so).

    It writes +0.0: the shadow gets zero as well (no tangent; the adjoint of
    what the slot held before dies there).
    """
    value = store.operands[0]
    return (isinstance(value, core.ConstantInt) and value.value == 0
            or isinstance(value, core.ZeroInitializer)) and not holds_pointers(value.type)


def fill_shadow_phi(phi: core.Phi, shadow: core.Phi, shadow_of: dict[core.Value, core.Value],
                    error: ErrorFactory) -> None:
    """Give the shadow of `phi` the shadows of its incoming values."""
    shadow.operands = [shadow_operand(phi, v, shadow_of, error) for v in phi.operands]
    shadow.incoming_blocks = list(phi.incoming_blocks)


def shadow_operand(user: core.Instruction, value: core.Value, shadow_of: dict[core.Value, core.Value],
                   error: ErrorFactory) -> core.Value:
    """The shadow of a pointer merged by a phi or select (null, undef and an all-zero
    aggregate, numba's empty optional item, are their own shadows)."""
    if value in shadow_of:
        return shadow_of[value]
    if isinstance(value, (core.ConstantNull, core.Undef, core.Poison, core.ZeroInitializer)):
        return value
    if only_reference_counted(user):
        # LLVM sinks the decrefs of two MemInfos into one call on a phi of both (an
        # argument's, which has no shadow, and an allocation's): a null shadow is never
        # released (forward mode mirrors reference counts on non-null shadows only).
        return core.ConstantNull(value.type)
    raise error(user, "a pointer merges differentiable memory with memory enzpy has no shadow for")


def shadow_or_primal(value: core.Value, shadow_of: dict[core.Value, core.Value], varied: set[core.Value],
                     function_name: str) -> core.Value:
    """Inside a shadow aggregate, fields without shadows (sizes, strides) keep the primal value."""
    if value in shadow_of:
        return shadow_of[value]
    if value.type.is_float and value in varied:
        raise DifferentiationError("a differentiable float inside an aggregate is not supported yet "
                                   f"(function @{function_name})")
    return value


def zero_of(ty: Type) -> core.Value:
    if ty.is_float:
        return constant_float(ty, 0.0)
    if ty.is_pointer:
        return core.ConstantNull(ty)
    return constant_int(ty, 0)


def check_supported(blocks: Iterable[core.Block], activity: Activity, float_arguments: set[core.Value],
                    error: ErrorFactory, function_name: str,
                    check_transfer: Callable[[core.Call], None], aggregates: bool = False) -> None:
    """Raise a DifferentiationError for anything whose derivative enzpy would silently lose.

    `float_arguments` are the duplicated array data pointers; `check_transfer`
    vets each memcpy / memmove (the modes treat them differently). With
    `aggregates`, float fields of aggregates may carry derivatives through
    insertvalue, extractvalue, phi, select, load and store (reverse mode).
    """
    blocks = list(blocks)
    for block in blocks:
        for instruction in block.instructions:
            if isinstance(instruction, core.Call) and not is_inactive_call(instruction):
                touches_shadow = any(a in activity.shadowed for a in instruction.operands)
                if is_memory_transfer(instruction):
                    check_transfer(instruction)
                elif memory_call_rule(instruction) is not None:
                    check_memory_call(instruction, memory_call_rule(instruction), activity.shadowed,
                                      activity.varied, lambda slot: _stored_into(blocks, slot), error)
                elif touches_shadow and allocation_rule(instruction) is None and not is_memset(instruction) \
                        and scalar_rule(instruction) is None and reallocation_rule(instruction) is None \
                        and deallocation(instruction) is None \
                        and not typed_list_handles(instruction, activity.shadowed):
                    name = getattr(instruction.callee, "name", "an indirect call")
                    # numba's helpers are named by the numpy operation the user wrote (np.linalg.solve).
                    raise error(instruction, f"call to {describe_helper(name) or repr(name)} receives "
                                "differentiable memory and has no differentiation rule")
            if isinstance(instruction, core.Store):
                value, pointer = instruction.operands
                if value in activity.varied and pointer not in activity.shadowed \
                        and not isinstance(pointer_root(pointer), core.Argument):
                    # Only a Const argument may swallow a derivative (the user asked for it);
                    # memory enzpy lost track of would give a silently wrong derivative.
                    raise error(instruction, "a differentiable value is stored into memory enzpy "
                                "cannot track (no shadow)")
                if value in activity.shadowed and pointer not in activity.shadowed:
                    raise error(instruction, "a pointer to differentiable memory is stored where "
                                "enzpy cannot follow it")
            if isinstance(instruction, core.Load) and not holds_pointers(instruction.type) \
                    and not instruction.type.is_float and instruction.operands[0] in activity.shadowed \
                    and pointer_root(instruction.operands[0]) in float_arguments:
                raise error(instruction, f"differentiable float memory is read as {instruction.type} "
                            "(reinterpreting float bits is not differentiable)")
            if isinstance(instruction, core.Cast) and instruction.opcode == "bitcast" \
                    and instruction.operands[0] in activity.varied and not instruction.type.is_float:
                raise error(instruction, "bitcast of a differentiable float to an integer")
            if not aggregates and instruction in activity.varied and not instruction.type.is_float:
                raise error(instruction, f"'{instruction.opcode}' moves a derivative through an "
                            f"aggregate ({instruction.type}), which is not supported yet")
            if not aggregates and isinstance(instruction, core.Store) and not instruction.operands[0].type.is_float \
                    and instruction.operands[0] in activity.varied:
                raise error(instruction, "storing an aggregate that carries a derivative is not "
                            "supported yet")
            if not activity.is_active(instruction) or isinstance(instruction, (core.Phi, core.Load)):
                continue
            if aggregates and (isinstance(instruction, (core.InsertValue, core.ExtractValue))
                               or not instruction.type.is_float):
                if not isinstance(instruction, (core.InsertValue, core.ExtractValue, core.Select)):
                    raise error(instruction, f"'{instruction.opcode}' moves a derivative through an "
                                f"aggregate ({instruction.type}), which is not supported yet")
                continue
            if scalar_rule(instruction) is None:
                raise missing_rule_error(instruction, function_name)


def _stored_into(blocks: Iterable[core.Block], slot: core.Alloca) -> list[core.Value]:
    """The values stored into stack slot `slot` (through pointers derived from it)."""
    return [i.operands[0] for b in blocks for i in b.instructions
            if isinstance(i, core.Store) and pointer_root(i.operands[1]) is slot]
