"""Reflected lists: numba's resizable buffers (NRT "varsize" MemInfos) and their shadows.

A list numba builds inside a kernel (`values = []`, `values.append(x)`) is a
MemInfo made by `NRT_MemInfo_new_varsize_dtor(bytes, destructor)` whose data
is the list's payload:

    {i64 size, i64 allocated, i8 dirty, <padding>, items from byte 24 on}

`append` grows the payload with `NRT_MemInfo_varsize_realloc(meminfo, bytes)`,
which moves the data (the old pointer dies) and keeps its contents; numba then
re-loads the data pointer from the MemInfo (byte 24) and zeroes the new tail
itself. So the shadow of a list is a list-shaped buffer of the same size:

- the allocation's shadow is a second varsize MemInfo of the same size, zeroed;
- each reallocation is mirrored on the shadow MemInfo, and the shadow's new
  tail is zeroed here (realloc leaves it undefined, and a reverse sweep adds
  adjoints into whatever a slot holds);
- nothing in the reverse sweep undoes a reallocation: both buffers keep their
  contents, and pointers into them are re-loaded from the MemInfos, which
  always hold the current data pointer (the MemInfos themselves stay alive
  until the reverse sweep passes their allocation, see `reverse.retained`).

The shadow's header (size, allocated) is never written: integers have no
derivative, and the shadow code reads only the items.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I1, I8, I64, PTR, VOID
from .calls import AllocationRule, allocation_rule, callee_name, register_allocation_rule

MEMINFO_DATA_OFFSET = 24
HEADER_BYTES = 24
"""The payload's header (size, allocated, dirty) before the items."""
MEMINFO_DESTRUCTOR_INFO_OFFSET = 16
"""A varsize MemInfo keeps the list's own destructor (it releases the items) here
(`NRT_MemInfo_new_varsize_dtor` writes it there too)."""
MEMINFO_SIZE_OFFSET = 32
"""The byte size of a varsize MemInfo's data."""


@dataclass(frozen=True)
class ResizableAllocationRule(AllocationRule):
    """`NRT_MemInfo_new_varsize[_dtor](bytes[, destructor])`: a list's MemInfo.

    The shadow gets no item destructor here: in reverse mode the items of a
    shadow list (shadow arrays, for a list of arrays) are released by their
    own allocations' shadows, and releasing them twice would free them twice.
    Forward mode adds the destructor (`give_item_destructor`).
    """

    def allocate_shadow(self, builder: Builder, call: core.Call) -> core.Value:
        allocate = builder.declare("NRT_MemInfo_new_varsize", PTR, [I64])
        shadow = builder.call(allocate, [call.operands[0]], name="shadow.list")
        field = builder.gep(I8, shadow, [constant_int(I64, MEMINFO_DATA_OFFSET)])
        data = builder.load(PTR, field, name="shadow.list.data", align=8)
        memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        builder.call(memset, [data, constant_int(I8, 0), call.operands[0], constant_int(I1, 0)])
        return shadow


def give_item_destructor(builder: Builder, call: core.Instruction, shadow_of: dict[core.Value, core.Value]) -> None:
    """Forward mode only: the shadow list gets the primal list's item destructor.

    Forward mode gives shadow arrays the reference counting of the primal ones,
    and the reference a list holds on its items is dropped by that destructor,
    in C, where enzpy cannot mirror it. Forward mode keeps the shadow's header
    equal to the primal's (`analysis.lists.writes_list_header`), so the
    destructor releases exactly the shadow items.
    (Reverse mode frees every shadow allocation itself, so its shadow lists have none.)
    """
    if not is_list_allocation(call) or len(call.operands) < 2 or call not in shadow_of:
        return
    field = builder.gep(I8, shadow_of[call], [constant_int(I64, MEMINFO_DESTRUCTOR_INFO_OFFSET)])
    builder.store(call.operands[1], field, align=8)


@dataclass(frozen=True)
class ReallocationRule:
    """`NRT_MemInfo_varsize_realloc(meminfo, bytes)`: the list grows or shrinks in place."""

    name: str

    def reallocate_shadow(self, builder: Builder, call: core.Call, shadow_meminfo: core.Value) -> core.Value:
        """Mirror the reallocation on the shadow MemInfo; zero what it gained. Returns the new data."""
        meminfo_size = builder.gep(I8, shadow_meminfo, [constant_int(I64, MEMINFO_SIZE_OFFSET)])
        old_bytes = builder.load(I64, meminfo_size, name="shadow.list.bytes", align=8)
        new_bytes = call.operands[1]
        # The shadow never shrinks: the reverse sweep still adds adjoints into the
        # slots of items a pop removed (and reads them where the items were stored).
        grown = builder.icmp("sgt", new_bytes, old_bytes)
        kept_bytes = builder.select(grown, new_bytes, old_bytes)
        data = builder.call(call.callee, [shadow_meminfo, kept_bytes], name="shadow.list.resized")
        tail_bytes = builder.sub(kept_bytes, old_bytes)
        tail = builder.gep(I8, data, [old_bytes], name="shadow.list.tail")
        memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        builder.call(memset, [tail, constant_int(I8, 0), tail_bytes, constant_int(I1, 0)])
        return data


_REALLOCATION_RULES = {"NRT_MemInfo_varsize_realloc": ReallocationRule("NRT_MemInfo_varsize_realloc")}

for _name in ("NRT_MemInfo_new_varsize", "NRT_MemInfo_new_varsize_dtor"):
    register_allocation_rule(ResizableAllocationRule(_name, returns_meminfo=True))


def is_list_allocation(call: core.Instruction) -> bool:
    """Whether `call` makes a resizable buffer (a reflected list's MemInfo)."""
    return isinstance(call, core.Call) and isinstance(allocation_rule(call), ResizableAllocationRule)


def reallocation_rule(call: core.Instruction) -> ReallocationRule | None:
    """The rule of a call that resizes a list's buffer, or None."""
    if not isinstance(call, core.Call):
        return None
    return _REALLOCATION_RULES.get(callee_name(call))
