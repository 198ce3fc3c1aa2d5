"""Calls without scalar partials: allocations, reference counting, memory intrinsics.

Scalar math calls (sin, pow, ...) have partials in `math.py`; this module says
what happens to the *other* calls a kernel makes. Mode dispatch stays in
`enzpy.ad`: these functions only describe the shadow effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.numba import MEMINFO_DATA_OFFSET, NRT_ALLOCATORS
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I1, I8, I64, PTR, VOID

# Calls with no effect on derivatives: reference counting, hints, the
# exception machinery, freeing primal memory.
INACTIVE_FUNCTIONS = frozenset({
    "NRT_incref", "NRT_decref", "NRT_MemInfo_call_dtor", "NRT_Free", "NRT_decref_local",
    "numba_gil_ensure", "numba_gil_release", "numba_do_raise", "numba_unpickle",
    "numba_runtime_build_excinfo_struct", "PyErr_SetString", "PyErr_SetNone", "PyErr_Clear",
})
INACTIVE_INTRINSIC_PREFIXES = ("llvm.lifetime.", "llvm.assume", "llvm.experimental.noalias.scope.decl",
                               "llvm.dbg.", "llvm.invariant.", "llvm.prefetch", "llvm.trap",
                               "llvm.expect", "llvm.donothing", "llvm.sideeffect")


def callee_name(call: core.Call) -> str:
    return call.callee.name if isinstance(call.callee, core.Function) else ""


def is_inactive_call(call: core.Call) -> bool:
    name = callee_name(call)
    return name in INACTIVE_FUNCTIONS or name.startswith(INACTIVE_INTRINSIC_PREFIXES) \
        or name.startswith("__excinfo_unwrap_args")


@dataclass(frozen=True)
class AllocationRule:
    """An allocator whose result gets a zero-filled shadow allocation of the same size."""

    name: str
    """Allocator function name."""

    def allocate_shadow(self, builder: Builder, call: core.Call) -> core.Value:
        """Forward sweep: allocate the shadow MemInfo and zero its data."""
        shadow = builder.call(call.callee, call.operands, name="shadow.meminfo")
        field = builder.gep(I8, shadow, [constant_int(I64, MEMINFO_DATA_OFFSET)])
        data = builder.load(PTR, field, name="shadow.data", align=8)
        memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        builder.call(memset, [data, constant_int(I8, 0), call.operands[0], constant_int(I1, 0)])
        return shadow

    def free_shadow(self, builder: Builder, shadow: core.Value) -> None:
        """Reverse sweep, at the allocation: nothing later can use the shadow any more."""
        destructor = builder.declare("NRT_MemInfo_call_dtor", VOID, [PTR])
        builder.call(destructor, [shadow])


_ALLOCATION_RULES = {name: AllocationRule(name) for name in NRT_ALLOCATORS}


def allocation_rule(call: core.Instruction) -> AllocationRule | None:
    if not isinstance(call, core.Call):
        return None
    return _ALLOCATION_RULES.get(callee_name(call))


def is_memset(call: core.Instruction) -> bool:
    return isinstance(call, core.Call) and callee_name(call).startswith("llvm.memset.")


def is_memory_transfer(call: core.Instruction) -> bool:
    return isinstance(call, core.Call) and callee_name(call).startswith(("llvm.memcpy.", "llvm.memmove."))
