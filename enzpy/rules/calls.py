"""Calls without scalar partials: allocations, reference counting, memory intrinsics.

Scalar math calls (sin, pow, ...) have partials in `math.py`; this module says
what happens to the *other* calls a kernel makes. Mode dispatch stays in
`enzpy.ad`: these functions only describe the shadow effects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..frontend.numba import MEMINFO_DATA_OFFSET, NRT_ALLOCATORS
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I1, I8, I64, PTR, VOID, Type
from .numba_helpers import INACTIVE_HELPERS

# Calls with no effect on derivatives: reference counting, hints, the
# exception machinery, freeing primal memory, and every numba C helper that
# moves no float (the table in numba_helpers.py says which and why).
INACTIVE_FUNCTIONS = frozenset({
    "NRT_decref_local", "PyErr_SetString", "PyErr_SetNone", "PyErr_Clear",
    "enzpy.checkpoint_range",    # checkpointing/marker.py: returns its count
    "enzpy.cuda.dynamic_shared_bytes",   # cuda/capture.py: the launch's dynamic shared memory size
}) | INACTIVE_HELPERS
INACTIVE_INTRINSIC_PREFIXES = ("llvm.lifetime.", "llvm.assume", "llvm.experimental.noalias.scope.decl",
                               "llvm.dbg.", "llvm.invariant.", "llvm.prefetch", "llvm.trap",
                               "llvm.expect", "llvm.donothing", "llvm.sideeffect",
                               "llvm.nvvm.read.ptx.sreg.")       # CUDA thread indices (enzpy/cuda/)


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

    def applies(self, call: core.Call) -> bool:
        """Whether this call of the allocator is one the rule covers (all, unless a subclass says)."""
        return True

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


def register_allocation_rule(rule: AllocationRule) -> AllocationRule:
    """Add an allocator (lists.py registers numba's resizable buffers)."""
    _ALLOCATION_RULES[rule.name] = rule
    return rule


def allocation_rule(call: core.Instruction) -> AllocationRule | None:
    if not isinstance(call, core.Call):
        return None
    rule = _ALLOCATION_RULES.get(callee_name(call))
    return rule if rule is not None and rule.applies(call) else None


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


# -- calls with memory effects (BLAS routines): rules stated once per routine

@dataclass(frozen=True)
class ArrayOperand:
    """A pointer operand of a memory call: a column-major block of `rows` x `columns`
    elements of `float_type`, columns `leading` elements apart (a vector: one column).

    An extent is one of the call's operands, or, where the call takes none that
    says it (LAPACK's min(m, n) singular values), a function that computes it
    with a Builder where a copy of the block is made."""

    position: int
    """Index of the pointer among the call's operands."""
    rows: "core.Value | Callable[[Builder], core.Value]"
    columns: "core.Value | Callable[[Builder], core.Value]"
    leading: "core.Value | Callable[[Builder], core.Value]"
    float_type: Type | None
    """None for an integer block (LAPACK's pivots): it carries no derivative and has no shadow."""
    reads: bool = True
    """The call reads the block (its inputs; the output of `y = alpha A x + beta y` too)."""
    writes: bool = False
    """The call writes the block (its outputs)."""
    element_type: Type | None = None
    """The element type of an integer block (float_type None), for copying it."""

    @property
    def element(self) -> Type:
        return self.float_type or self.element_type


class MemoryCallRule:
    """Derivatives of a call that reads and writes arrays through its pointer operands.

    A subclass states, once per routine, what the call reads and writes
    (`arrays`, `scalars`), what its adjoint needs of the inputs
    (`contents_needed`), its tangent code (`forward`) and its adjoint code
    (`reverse`). Both code functions write against a `MemoryCallContext` the
    mode drivers supply (`enzpy/ad/memory_calls.py`), so rules never look at
    the mode: the forward context hands out tangent shadows and the operands as
    they are at the call; the reverse context adjoint shadows, the operand
    values recovered in the reverse sweep, and the contents of input arrays as
    the call read them (re-read, or a copy the forward sweep made when the
    kernel overwrites them later).
    """

    names: tuple[str, ...] = ()
    """The callee names the rule is registered under."""
    communicates = False
    """The derivative code must run even where no operand has a shadow: it exchanges messages with
    other processes, which run theirs (MPI, rules/mpi.py)."""
    synchronizes = False
    """Other threads may write any memory but the caller's stack here (a CUDA barrier,
    rules/cuda.py): nothing read before the call is re-loaded after it."""

    def unsupported(self, call: core.Call) -> str | None:
        """Why the rule cannot differentiate this call (complex kinds, ...), or None."""
        return None

    def arrays(self, call: core.Call) -> list[ArrayOperand]:
        """The array operands, with their extents as values of the call's operands."""
        raise NotImplementedError

    def scalars(self, call: core.Call) -> list[tuple[int, Type]]:
        """(position, float type) of pointers to one float the call reads (BLAS's alpha, beta).

        They scale the result but carry no derivative: numba passes constants.
        """
        return []

    def contents_needed(self, call: core.Call, active: set[int]) -> set[int]:
        """Positions of input arrays whose contents the adjoint reads, given the positions
        of the array operands that carry derivatives."""
        raise NotImplementedError

    def results_needed(self, call: core.Call, active: set[int]) -> set[int]:
        """Positions of written arrays whose contents *after* the call the adjoint reads
        (LAPACK's factors: reading them back is cheaper than factoring again)."""
        return set()

    def forward(self, context: "MemoryCallContext") -> None:
        """Tangent code, right after the call: the outputs' shadows from the inputs'."""
        raise NotImplementedError

    def reverse(self, context: "MemoryCallContext") -> None:
        """Adjoint code: add into the inputs' shadows, then leave the outputs' shadows
        holding the adjoint of what they held before the call."""
        raise NotImplementedError

    def augment(self, context: "MemoryCallContext") -> None:
        """Reverse mode's forward sweep, right after the call (a forward-mode context): what the
        adjoint needs that no copy gives (MPI's nonblocking calls record their requests). None here."""


class MemoryCallContext:
    """What a memory-call rule's code may ask for (implemented by each mode's driver)."""

    call: core.Call
    """The primal call being differentiated."""
    builder: Builder
    """Where the derivative code goes."""

    def value(self, position: int) -> core.Value:
        """Operand `position` (a size, a pointer) as the derivative code can use it."""
        raise NotImplementedError

    def contents(self, position: int) -> core.Value:
        """A pointer to input array `position` with the contents the call read."""
        raise NotImplementedError

    def result(self, position: int) -> core.Value:
        """A pointer to written array `position` with the contents the call left there
        (only for positions `results_needed` names)."""
        raise NotImplementedError

    def done(self) -> None:
        """The rule's code is complete: free what the context made for it (forward mode's
        copies of inputs the call overwrites; reverse mode's copies are the driver's)."""

    def shadow(self, position: int) -> core.Value | None:
        """The shadow of array operand `position`, or None where it carries no derivative."""
        raise NotImplementedError

    def scalar(self, position: int) -> core.Value:
        """The float that scalar operand `position` pointed at when the call ran."""
        raise NotImplementedError

    def scalar_pointer(self, position: int) -> core.Value:
        """A pointer to that float (BLAS takes scalars by reference)."""
        raise NotImplementedError

    def slot(self, ty: Type) -> core.Value:
        """A stack slot of type `ty` for the derivative code's own scalars."""
        raise NotImplementedError


_MEMORY_CALL_RULES: dict[str, MemoryCallRule] = {}


def register_memory_call_rule(rule: MemoryCallRule) -> MemoryCallRule:
    for name in rule.names:
        if name in _MEMORY_CALL_RULES:
            raise ValueError(f"a memory-call rule for {name!r} is already registered")
        _MEMORY_CALL_RULES[name] = rule
    return rule


def memory_call_rule(call: core.Instruction) -> MemoryCallRule | None:
    """The rule of a call that reads and writes arrays (a BLAS routine), or None."""
    if not isinstance(call, core.Call):
        return None
    return _MEMORY_CALL_RULES.get(callee_name(call))


def written_operands(call: core.Instruction) -> list[core.Value] | None:
    """The pointers a call with a memory rule writes through; None for other instructions."""
    rule = memory_call_rule(call)
    if rule is None:
        return None
    return [call.operands[a.position] for a in rule.arrays(call) if a.writes]


def stored_constant(call: core.Call, pointer: core.Value) -> core.ConstantFloat | None:
    """The float constant last stored into the stack slot `pointer` names before `call`.

    numba passes BLAS's alpha and beta in stack slots it fills in the call's
    block right before the call; knowing the constant spares the reverse sweep
    a copy. None when the slot is not plainly an alloca, or something between
    the store and the call may write it.
    """
    slot = _without_casts(pointer)
    if not isinstance(slot, core.Alloca):
        return None
    block = call.parent
    for instruction in reversed(block.instructions[:block.instructions.index(call)]):
        if isinstance(instruction, core.Store) and _without_casts(instruction.operands[1]) is slot:
            value = instruction.operands[0]
            return value if isinstance(value, core.ConstantFloat) else None
        if isinstance(instruction, (core.Store, core.AtomicRMW, core.CmpXchg)) or (
                isinstance(instruction, core.Call) and not is_inactive_call(instruction)):
            # A write we cannot place may hit the slot through a derived pointer.
            written = instruction.operands[1] if isinstance(instruction, core.Store) else None
            if written is None or not isinstance(_without_casts(written), core.Alloca):
                return None
    return None


def _without_casts(pointer: core.Value) -> core.Value:
    while isinstance(pointer, core.Cast) and pointer.type.is_pointer and pointer.operands[0].type.is_pointer:
        pointer = pointer.operands[0]
    return pointer
