"""Typed lists (`numba.typed.List`) of floats and of arrays: a shadow list that mirrors the primal one.

A typed list lives in C (`numba/cext/listobject.c`): `numba_list_new(&list,
item_size, allocated)` writes the new list into a stack slot, `append(list,
&item)` copies the item in (and may move the items), and numba reads an item
straight from `numba_list_base_ptr(list)`, the items' current address.
Kernels keep the list in a MemInfo whose destructor frees it.

The shadow is a second typed list with the same item size:

- `numba_list_new` and `append` are mirrored on it (the shadow slot, the
  shadow of the item: in reverse mode's forward sweep that is a zero);
- the shadow of `base_ptr(list)` is `base_ptr(shadow list)`: both move when
  the lists grow, so the reverse sweep calls it again instead of keeping it
  (`analysis.lists.points_into_list`);
- the reverse of `append(list, &item)` takes the shadow list's last item off, the
  adjoint of what was appended, into the item's shadow: undoing appends in
  reverse order keeps the shadow list as long as the list was. An array item's
  shadow is the struct of the shadow array, whose adjoints sit in the shadow
  array's memory: its append is undone by deleting the item, nothing is added;
- a list of arrays keeps its items alive through a method table
  (`numba_list_set_method_table`: the item type's incref and decref). Forward
  mode gives the shadow list the same table, so the shadow arrays it holds get
  the reference counting of the primal arrays (`mirror_item_lifetimes`).
  Reverse mode does not: it frees every shadow allocation itself after the
  reverse sweep, and a table would release the shadow arrays a second time;
- the list's MemInfo gets a shadow MemInfo with the same destructor, so the
  shadow list is freed with it (calls.py registers `NRT_MemInfo_alloc_dtor`
  only for that).

Operations that remove or reorder items (`pop`, `del`, setitem, slices,
iteration by `numba_list_iter_next`, which hands out item pointers) still
have no rule: they stay refusals naming the list operation.
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I32, I64, PTR, StructType
from .calls import AllocationRule, callee_name, register_allocation_rule

NEW = "numba_list_new"
BASE_POINTER = "numba_list_base_ptr"
APPEND = "numba_list_append"
METHOD_TABLE = "numba_list_set_method_table"
OPERATIONS = (NEW, BASE_POINTER, APPEND, METHOD_TABLE)


def typed_list_operation(instruction: core.Instruction) -> str | None:
    """The name of a typed-list call enzpy differentiates, or None."""
    if not isinstance(instruction, core.Call):
        return None
    name = callee_name(instruction)
    return name if name in OPERATIONS else None


def is_base_pointer(instruction: core.Instruction) -> bool:
    return typed_list_operation(instruction) == BASE_POINTER


def handles(call: core.Call, shadowed: set[core.Value]) -> bool:
    """Whether the rules cover this call: a list of floats or of arrays that has a shadow list.

    Items of other kinds (tuples, lists of lists) stay a refusal.
    """
    operation = typed_list_operation(call)
    if operation is None or call.operands[0] not in shadowed:
        return False
    if operation == APPEND:
        item = call.operands[1]
        return isinstance(item, core.Alloca) and (item.allocated_type.is_float or holds_an_array(item))
    return True


def holds_an_array(item: core.Alloca) -> bool:
    """Whether a list item's stack slot is a numba array struct (meminfo, parent, sizes, data, shape, strides)."""
    ty = item.allocated_type
    return isinstance(ty, StructType) and len(ty.elements) == 7 and all(
        e.is_pointer for e in (ty.elements[0], ty.elements[1], ty.elements[4]))


def list_slots(instructions, points_at_floats) -> set[core.Value]:
    """The stack slots `numba_list_new` writes a list of floats into: roots of shadows."""
    return {call.operands[0] for call in instructions if typed_list_operation(call) == NEW
            and points_at_floats(call.operands[0])}


def mirror(builder: Builder, call: core.Call, shadow_of: dict[core.Value, core.Value]) -> None:
    """Forward: the same operation on the shadow list (creation, append)."""
    operation = typed_list_operation(call)
    if operation == NEW:
        builder.call(call.callee, [shadow_of[call.operands[0]], *call.operands[1:]])
    elif operation == APPEND:
        builder.call(call.callee, [shadow_of[call.operands[0]], shadow_of[call.operands[1]]])


def mirror_item_lifetimes(builder: Builder, call: core.Call, shadow_of: dict[core.Value, core.Value]) -> None:
    """Forward mode only: the primal's item method table on the shadow list (see the module docstring)."""
    if typed_list_operation(call) == METHOD_TABLE:
        builder.call(call.callee, [shadow_of[call.operands[0]], call.operands[1]])


def shadow_base_pointer(builder: Builder, call: core.Call, shadow_list: core.Value) -> core.Value:
    return builder.call(call.callee, [shadow_list], name="shadow.list.items")


def undo_append(builder: Builder, shadow_list: core.Value, item: core.Alloca, shadow_item: core.Value,
                entry_block: core.Block) -> None:
    """Reverse of `append(list, &item)`: the shadow list's last item is deleted; a float
    item's adjoint, read out first, goes to the item's shadow."""
    length = builder.call(builder.declare("numba_list_length", I64, [PTR]), [shadow_list])
    last = builder.sub(length, constant_int(I64, 1))
    float_type = item.allocated_type if item.allocated_type.is_float else None
    if float_type is not None:
        # numba's C API has no pop: read the last item, then delete it.
        slot = Builder(builder.module).before_instruction(entry_block.terminator).alloca(float_type, "list.adjoint")
        builder.call(builder.declare("numba_list_getitem", I32, [PTR, I64, PTR]), [shadow_list, last, slot])
    builder.call(builder.declare("numba_list_delitem", I32, [PTR, I64]), [shadow_list, last])
    if float_type is not None:
        adjoint = builder.load(float_type, slot)
        builder.store(builder.fadd(builder.load(float_type, shadow_item), adjoint), shadow_item)


class ListMemInfoRule(AllocationRule):
    """`NRT_MemInfo_alloc_dtor(8, _numba_list_dtor)`: the MemInfo holding a typed list.

    Its shadow is a MemInfo with the same destructor, which frees the shadow
    list kept in it. Other MemInfos with destructors (jitclass, structref)
    are not covered.
    """

    def applies(self, call: core.Call) -> bool:
        destructor = call.operands[1] if len(call.operands) > 1 else None
        return isinstance(destructor, core.Function) and destructor.name == "_numba_list_dtor"


register_allocation_rule(ListMemInfoRule("NRT_MemInfo_alloc_dtor", returns_meminfo=True))
