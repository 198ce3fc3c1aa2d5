"""Memory-call rules (BLAS) in the two modes: the contexts their code runs against,
and what reverse mode keeps from the forward sweep for them.

A `MemoryCallRule` (enzpy/rules/calls.py) states a routine's tangent and
adjoint code once, against a `MemoryCallContext`. Forward mode runs the
tangent code right after the call, where every operand is what the call saw.
Reverse mode runs the adjoint code in the reverse sweep, after the whole
forward sweep: sizes and pointers come from `ReverseValues` (recomputed,
re-loaded or taped like any forward value), and an input array the adjoint
reads is re-read from the primal memory when nothing writes it after the
call (OverwriteAnalysis), or else copied before the call into a buffer the
reverse code frees after its last use (`OperandCopies`); a result the adjoint
reads (`results_needed`: LAPACK's factors) likewise, copied right after the
call. A kernel that raises frees the copies through the allocation log, as it
frees shadows. In forward mode an input the call overwrites (LAPACK works in
place) is copied before the call when the tangent code asks for it, and freed
when the rule says it is `done`.
"""

from __future__ import annotations

from ..analysis.overwrites import OverwriteAnalysis
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I1, I64, PTR, VOID, Type, size_in_bytes
from ..rules.calls import MemoryCallContext, MemoryCallRule, stored_constant
from .recompute import ReverseValues
from .tape import AllocationLog


def _entry_slot(module: core.Module, entry_block: core.Block, ty: Type) -> core.Value:
    return Builder(module).before_instruction(entry_block.terminator).alloca(ty, "blas.scalar")


def active_arrays(call: core.Call, rule: MemoryCallRule, shadowed: set[core.Value]) -> set[int]:
    """Positions of the call's array operands that carry derivatives (have shadows)."""
    return {a.position for a in rule.arrays(call) if call.operands[a.position] in shadowed}


def check_memory_call(call: core.Call, rule: MemoryCallRule, shadowed: set[core.Value], varied: set[core.Value],
                      stores_into, error) -> None:
    """Refuse a memory call whose derivative enzpy would get wrong or lose.

    `stores_into(alloca)` gives the values the function stores into a stack slot.
    """
    arrays = rule.arrays(call)
    active = active_arrays(call, rule, shadowed)
    if not active:
        return
    problem = rule.unsupported(call)
    if problem is not None:
        raise error(call, f"call to {problem}")
    from ..analysis.memory_types import pointer_root
    if any(a.reads and a.position in active for a in arrays):
        for a in arrays:
            pointer = call.operands[a.position]
            if a.float_type is None:
                continue                              # integers (pivots) carry no derivative
            if a.writes and pointer not in shadowed and not isinstance(pointer_root(pointer), core.Argument):
                raise error(call, f"'{call.callee.name}' writes a differentiable result into memory enzpy "
                            "cannot track (no shadow)")
    for position, _ in rule.scalars(call):
        pointer = call.operands[position]
        if stored_constant(call, pointer) is not None or pointer not in shadowed:
            continue
        slot = pointer_root(pointer)
        if not isinstance(slot, core.Alloca) or any(v in varied for v in stores_into(slot)):
            raise error(call, f"'{call.callee.name}': a differentiable alpha or beta (operand {position}) "
                        "is not supported")


class ForwardMemoryCall(MemoryCallContext):
    """Forward mode, one lane: right after the call, operands are what the call saw."""

    def __init__(self, call: core.Call, builder: Builder, shadow_of: dict[core.Value, core.Value],
                 shadowed: set[core.Value], entry_block: core.Block):
        self.call, self.builder = call, builder
        self.shadow_of, self.shadowed, self.entry_block = shadow_of, shadowed, entry_block
        self.scalar_types = dict(_rule(call).scalars(call))
        self.arrays = {a.position: a for a in _rule(call).arrays(call)}
        self.copies: dict[int, core.Value] = {}
        """Inputs the call overwrites, copied before it for the tangent code."""

    def value(self, position):
        return self.call.operands[position]

    def contents(self, position):
        array = self.arrays.get(position)
        if array is None or not array.writes:
            return self.call.operands[position]      # right after the call: as the call read it
        if position not in self.copies:              # overwritten in place (LAPACK): copied before the call
            before = Builder(self.builder.module).before_instruction(self.call)
            before.location = self.call.location
            self.copies[position] = _copy(before, self.call.operands[position], array)
        return self.copies[position]

    def result(self, position):
        return self.call.operands[position]

    def done(self):
        free = self.builder.declare("NRT_Free", VOID, [PTR])
        for buffer in self.copies.values():
            self.builder.call(free, [buffer])
        self.copies = {}

    def shadow(self, position):
        pointer = self.call.operands[position]
        return self.shadow_of[pointer] if pointer in self.shadowed else None

    def scalar(self, position):
        pointer = self.call.operands[position]
        constant = stored_constant(self.call, pointer)
        return constant if constant is not None else self.builder.load(self.scalar_types[position], pointer)

    def scalar_pointer(self, position):
        return self.call.operands[position]          # BLAS leaves alpha and beta as they were

    def slot(self, ty):
        return _entry_slot(self.builder.module, self.entry_block, ty)


class OperandCopies:
    """Reverse mode: the inputs and scalars memory calls' adjoints read, kept by the forward sweep."""

    def __init__(self, module: core.Module, entry_block: core.Block, overwrites: OverwriteAnalysis,
                 allocation_log: AllocationLog | None, minimize: bool):
        self.module, self.entry_block, self.overwrites = module, entry_block, overwrites
        self.allocation_log, self.minimize = allocation_log, minimize
        self.copies: dict[tuple[core.Call, int], core.Value] = {}
        """(call, operand position) -> the buffer the forward sweep copied the operand into."""
        self.scalars: dict[tuple[core.Call, int], core.Value] = {}
        """(call, operand position) -> the constant, or the forward sweep's load of it."""
        self.results: dict[tuple[core.Call, int], core.Value] = {}
        """(call, operand position) -> the buffer the forward sweep copied a result into."""

    def save(self, call: core.Call, rule: MemoryCallRule, shadowed: set[core.Value]) -> None:
        """Forward sweep, before `call`: copy the inputs the adjoint reads that may change later."""
        builder = Builder(self.module).before_instruction(call)
        builder.location = call.location
        arrays = {a.position: a for a in rule.arrays(call)}
        made: dict[tuple, core.Value] = {}
        for position in sorted(rule.contents_needed(call, active_arrays(call, rule, shadowed))):
            pointer = call.operands[position]
            if self.minimize and self.overwrites.unchanged_after(call, pointer, including_itself=True,
                                                                 through_merges=True):
                continue                             # the reverse sweep re-reads the primal memory
            array = arrays[position]
            region = (pointer, array.rows, array.columns, array.leading)
            if region in made:                       # np.dot(y, y): one copy serves both operands
                self.copies[(call, position)] = made[region]
                continue
            self.copies[(call, position)] = made[region] = self._logged_copy(builder, pointer, array)
        results = rule.results_needed(call, active_arrays(call, rule, shadowed))
        if results:
            after = Builder(self.module).before_instruction(call.parent.instructions[
                call.parent.instructions.index(call) + 1])
            after.location = call.location
            for position in sorted(results):
                pointer = call.operands[position]
                if self.minimize and self.overwrites.unchanged_after(call, pointer, through_merges=True):
                    continue                         # the reverse sweep re-reads what the call left
                self.results[(call, position)] = self._logged_copy(after, pointer, arrays[position])
        for position, ty in rule.scalars(call):
            pointer = call.operands[position]
            constant = stored_constant(call, pointer)
            self.scalars[(call, position)] = constant if constant is not None else \
                builder.load(ty, pointer, f"blas.scalar.{position}")

    def _logged_copy(self, builder: Builder, pointer: core.Value, array) -> core.Value:
        buffer = _copy(builder, pointer, array)
        if self.allocation_log is not None:
            self.allocation_log.record(builder, buffer, "NRT_Free")
        return buffer

    def context(self, call: core.Call, builder: Builder, values: ReverseValues,
                shadowed: set[core.Value], lane: int = 0) -> "ReverseMemoryCall":
        return ReverseMemoryCall(self, call, builder, values, shadowed, lane)

    def release(self, call: core.Call, builder: Builder, values: ReverseValues) -> None:
        """After the call's adjoint code: free its copies."""
        free = builder.declare("NRT_Free", VOID, [PTR])
        buffers = {id(b): b for copies in (self.copies, self.results)
                   for (copied, _), b in copies.items() if copied is call}
        for buffer in buffers.values():
            builder.call(free, [values.value(builder, buffer)])


class ReverseMemoryCall(MemoryCallContext):
    """Reverse mode: forward values recovered in the reverse sweep, inputs as the call read them."""

    def __init__(self, copies: OperandCopies, call: core.Call, builder: Builder, values: ReverseValues,
                 shadowed: set[core.Value], lane: int = 0):
        self.copies, self.call, self.builder = copies, call, builder
        self.values, self.shadowed = values, shadowed
        self.lane = lane
        """Whose shadows the rule's code reads and adds into (vector reverse mode runs it once per lane)."""

    def value(self, position):
        return self.values.value(self.builder, self.call.operands[position])

    def contents(self, position):
        buffer = self.copies.copies.get((self.call, position))
        if buffer is not None:
            return self.values.value(self.builder, buffer)
        if not self.copies.minimize or not self.copies.overwrites.unchanged_after(
                self.call, self.call.operands[position], including_itself=True, through_merges=True):
            raise DifferentiationError(f"internal: no copy of operand {position} of '{self.call.callee.name}' "
                                       "was made for the reverse sweep")
        return self.value(position)

    def result(self, position):
        buffer = self.copies.results.get((self.call, position))
        if buffer is not None:
            return self.values.value(self.builder, buffer)
        if not self.copies.minimize or not self.copies.overwrites.unchanged_after(
                self.call, self.call.operands[position], through_merges=True):
            raise DifferentiationError(f"internal: no copy of result {position} of '{self.call.callee.name}' "
                                       "was made for the reverse sweep")
        return self.value(position)

    def shadow(self, position):
        pointer = self.call.operands[position]
        return self.values.shadow(self.builder, pointer, self.lane) if pointer in self.shadowed else None

    def scalar(self, position):
        value = self.copies.scalars[(self.call, position)]
        return value if isinstance(value, core.Constant) else self.values.value(self.builder, value)

    def scalar_pointer(self, position):
        slot = self.slot(self.copies.scalars[(self.call, position)].type)
        self.builder.store(self.scalar(position), slot)
        return slot

    def slot(self, ty):
        return _entry_slot(self.builder.module, self.copies.entry_block, ty)


def _copy(builder: Builder, pointer: core.Value, array) -> core.Value:
    """A fresh buffer (NRT_Allocate) holding the block `array` describes at `pointer`."""
    extents = [extent(builder) if callable(extent) else extent for extent in (array.rows, array.columns,
                                                                               array.leading)]
    bytes_ = _extent_bytes(builder, *extents, array.element)
    buffer = builder.call(builder.declare("NRT_Allocate", PTR, [I64]), [bytes_], name="blas.copy")
    memcpy = builder.declare("llvm.memcpy.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
    builder.call(memcpy, [buffer, pointer, bytes_, constant_int(I1, 0)])
    return buffer


def _extent_bytes(builder: Builder, rows, columns, leading, float_type: Type) -> core.Value:
    """Bytes from a column-major block's first element past its last: ((columns-1) leading + rows)
    elements, 0 for an empty block."""
    rows, columns, leading = (_as_i64(builder, v) for v in (rows, columns, leading))
    span = builder.add(builder.mul(builder.add(columns, constant_int(I64, -1)), leading), rows)
    empty = builder.binary("or", builder.binary("or", builder.icmp("slt", rows, constant_int(I64, 1)),
                                                builder.icmp("slt", columns, constant_int(I64, 1))),
                           builder.icmp("slt", span, rows))      # a negative stride: BLAS reads nothing
    elements = builder.select(empty, constant_int(I64, 0), span)
    return builder.mul(elements, constant_int(I64, size_in_bytes(float_type)), "blas.copy.bytes")


def _as_i64(builder: Builder, value: core.Value) -> core.Value:
    return value if value.type == I64 else builder.cast("sext", value, I64)


def _rule(call: core.Call) -> MemoryCallRule:
    from ..rules.calls import memory_call_rule
    return memory_call_rule(call)
