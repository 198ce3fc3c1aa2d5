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
    """Allocator function name; its argument 0 is the size in bytes."""
    returns_meminfo: bool
    """True for NRT MemInfo allocators (data pointer inside), False for raw buffers."""

    def allocate_shadow(self, builder: Builder, call: core.Call) -> core.Value:
        """Forward sweep: allocate the shadow and zero its data."""
        shadow = builder.call(call.callee, call.operands, name="shadow.allocation")
        data = shadow
        if self.returns_meminfo:
            field = builder.gep(I8, shadow, [constant_int(I64, MEMINFO_DATA_OFFSET)])
            data = builder.load(PTR, field, name="shadow.data", align=8)
        memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        builder.call(memset, [data, constant_int(I8, 0), call.operands[0], constant_int(I1, 0)])
        return shadow

    @property
    def shadow_release(self) -> str:
        """The runtime function that frees a shadow allocation."""
        return "NRT_MemInfo_call_dtor" if self.returns_meminfo else "NRT_Free"

    def free_shadow(self, builder: Builder, shadow: core.Value) -> None:
        """Reverse sweep, at the allocation: nothing later can use the shadow any more."""
        builder.call(builder.declare(self.shadow_release, VOID, [PTR]), [shadow])


_ALLOCATION_RULES = {name: AllocationRule(name, returns_meminfo=True) for name in NRT_ALLOCATORS}
_ALLOCATION_RULES["NRT_Allocate"] = AllocationRule("NRT_Allocate", returns_meminfo=False)


def allocation_rule(call: core.Instruction) -> AllocationRule | None:
    if not isinstance(call, core.Call):
        return None
    return _ALLOCATION_RULES.get(callee_name(call))


def is_memset(call: core.Instruction) -> bool:
    return isinstance(call, core.Call) and callee_name(call).startswith("llvm.memset.")


def is_memory_transfer(call: core.Instruction) -> bool:
    return isinstance(call, core.Call) and callee_name(call).startswith(("llvm.memcpy.", "llvm.memmove."))


# Reverse of `memcpy(destination, source, bytes)` on float memory:
# shadow_source[i] += shadow_destination[i]; shadow_destination[i] = 0.
_TRANSFER_ADJOINT = """
define internal void @enzpy.memcpy.adjoint.{kind}(ptr %destination, ptr %source, i64 %bytes) alwaysinline {{
entry:
  %count = udiv i64 %bytes, {size}
  %empty = icmp eq i64 %count, 0
  br i1 %empty, label %done, label %loop
loop:
  %index = phi i64 [ 0, %entry ], [ %next, %loop ]
  %to = getelementptr inbounds {kind}, ptr %destination, i64 %index
  %from = getelementptr inbounds {kind}, ptr %source, i64 %index
  %adjoint = load {kind}, ptr %to
  %old = load {kind}, ptr %from
  %sum = fadd {kind} %old, %adjoint
  store {kind} %sum, ptr %from
  store {kind} 0.0, ptr %to
  %next = add nuw i64 %index, 1
  %finished = icmp eq i64 %next, %count
  br i1 %finished, label %done, label %loop
done:
  ret void
}}
"""


def transfer_adjoint_function(module: core.Module, kind: str) -> core.Function:
    """The (once-per-module) function that moves a copy's adjoint back to its source."""
    from ..ir.reader import parse_module

    name = f"enzpy.memcpy.adjoint.{kind}"
    if name not in module.functions:
        size = {"double": 8, "float": 4}[kind]
        helper = parse_module(_TRANSFER_ADJOINT.format(kind=kind, size=size)).functions[name]
        module.functions[name] = helper
    return module.functions[name]
