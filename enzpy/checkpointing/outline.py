"""Pre-AD pass: each `checkpoint_range` loop becomes a call of a *loop function* over a *step function*.

`marker.py` makes `for t in checkpoint_range(n, schedule)` a loop whose trip
count is the result of a call of `enzpy.checkpoint_range`. After the pre-AD
pipeline that loop is rotated: one trip of its blocks is one Python
iteration, and it leaves through its latch. This pass cuts it out:

- the *step function* `i32 step(retptr, excinfo, carried, carried floats,
  inputs, live-ins...)` is one trip of the loop. The values the loop carries
  from one trip to the next (its header's phis) and the values it hands to the
  code after it live in two stack arrays (floats apart: the AD refuses integer
  reads of float memory), so a step's whole state is memory; float values
  from before the loop are read from `inputs` (their adjoints then collect in
  its shadow, summed over the steps); other values from before the loop are
  parameters. It returns 0, or the status of a raise path of the loop
  (cloned along); its first slot of `carried` says whether the loop's exit
  test said done.
- the *loop function* `i32 loop(retptr, excinfo, n, regions, carried, carried
  floats, inputs, live-ins...)` calls the step n times. Called as it is (forward mode, or by
  the primal) it is the loop. `regions` lists the memory the steps overwrite
  (address and bytes of each region, as i64: never active), which is what a
  snapshot copies: the arrays the step writes, from their array arguments'
  sizes, their NRT allocations or their stack slots, and the carried values.

Both functions have numba's convention and are `noinline`, so the AD
differentiates across them (ad/calls.py): the loop function's derivative
calls the step's augmented forward and reverse functions, and
`driver.py` replaces the calls of the loop function's augmented forward and
reverse functions with the checkpointing driver, which runs the step, its
augmented forward and its reverse function as the schedule says.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

from ..analysis.loops import LoopInfo
from ..analysis.memory_types import pointer_root
from ..analysis.writes import write_targets, written_parameters
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.clone import clone_body
from ..ir.types import I8, I32, I64, PTR, ArrayType, FunctionType, size_in_bytes
from ..rules.calls import allocation_rule
from .marker import MARKER, STEP_COUNT_MISMATCH, schedule_of

LOOP_PREFIX = "enzpy.checkpointed_loop."
STEP_PREFIX = "enzpy.checkpoint_step."
EXIT_FLAG_SLOT = 0
"""`carried`'s slot the step sets to 1 when the loop's exit test said done, to 0 otherwise (a
status would not do: the AD's reverse functions skip a call whose status is not 0)."""
MEMINFO_DATA, MEMINFO_SIZE = 24, 32
"""Offsets of the data pointer and the byte size in numba's NRT MemInfo."""
_LOOP_PARAMETERS = 7
"""retptr, excinfo, n, regions, carried, carried floats, inputs: the loop function's parameters
before the live-ins."""
_STEP_PARAMETERS = 5
"""retptr, excinfo, carried, carried floats, inputs: the step's parameters before the live-ins."""


@dataclass
class CheckpointedLoop:
    """One loop cut out of a kernel."""

    loop_function: core.Function
    step: core.Function
    schedule_number: int
    """Index of the schedule in marker.py's table."""
    location: core.SourceLocation | None
    """The marker call's source line, when the kernel was compiled with debug info."""
    function: str
    """The function the loop was in."""

    @property
    def schedule(self):
        return schedule_of(self.schedule_number)


_FAILURE_BLOCKS: "weakref.WeakSet[core.Block]" = weakref.WeakSet()
"""Blocks that return the non-zero status of a loop function's call."""
_LOOPS: "weakref.WeakKeyDictionary[core.Module, list[CheckpointedLoop]]" = weakref.WeakKeyDictionary()


def checkpointed_loops(module: core.Module) -> list[CheckpointedLoop]:
    """The loops `outline_checkpointed_loops` cut out of `module`."""
    return _LOOPS.get(module, [])


def remove_markers(module: core.Module) -> None:
    """Forward mode needs no checkpoints: each marker call becomes its count."""
    for function in module.functions.values():
        for call in [i for i in function.instructions() if _is_marker(i)]:
            _erase(function, call, call.operands[0])


def outline_checkpointed_loops(module: core.Module) -> list[CheckpointedLoop]:
    """Cut every marked loop out of its function (innermost first, so that an outer
    checkpointed loop's step calls the inner one's loop function)."""
    found = _LOOPS.setdefault(module, [])
    while True:
        pending = [(function, call) for function in list(module.functions.values())
                   if not function.is_declaration for call in function.instructions() if _is_marker(call)]
        if not pending:
            return found
        # The marker whose loop holds no other marker's loop: the one no other marker's block follows inside.
        for function, call in pending:
            loop = _marked_loop(function, call)
            others = [c for f, c in pending if f is function and c is not call]
            if not any(c.parent in loop.blocks for c in others):
                found.append(_outline(module, function, call, loop, len(found)))
                break


def _is_marker(instruction: core.Instruction) -> bool:
    return isinstance(instruction, core.Call) and getattr(instruction.callee, "name", "") == MARKER


def _refuse(function: core.Function, marker: core.Call, what: str) -> DifferentiationError:
    line = f", Python source {marker.location}" if marker.location else ""
    return DifferentiationError(f"checkpoint_range loop in @{function.name}{line}: {what}")


def _marked_loop(function: core.Function, marker: core.Call):
    info = LoopInfo(function.blocks, function.entry, function.name)
    # The count as the loop reads it: the marker, or what LLVM made of it before the loop (smax, casts).
    counts, grew = {marker}, True
    around = set(info.loops_of(marker.parent))
    while grew:
        derived = {i for i in function.instructions() if set(info.loops_of(i.parent)) <= around
                   and isinstance(i, (core.Cast, core.BinaryOperator, core.Compare, core.Select, core.Call))
                   and i not in counts and any(o in counts for o in i.operands)}
        grew = bool(derived)
        counts |= derived
    candidates = [loop for loop in info.loops if marker.parent not in loop.blocks
                  and any(o in counts for b in loop.blocks for i in b.instructions for o in i.operands)]
    if not candidates:
        raise _refuse(function, marker, "no loop runs over its range (was the loop body empty?)")
    loop = max(candidates, key=lambda c: len(c.blocks))
    loop.info = info
    return loop


# ---------------------------------------------------------------- the cut

def _outline(module: core.Module, function: core.Function, marker: core.Call, loop, number: int):
    info = loop.info
    if len(loop.entries) != 1:
        raise _refuse(function, marker, "the loop is entered from several places")
    preheader = loop.entries[0]
    exits = info.exits(loop)
    raising = {target for _, target in exits if _raise_path(target) is not None}
    normal = [(source, target) for source, target in exits if target not in raising]
    if len(normal) != 1:
        raise _refuse(function, marker, "`break` or `return` inside the loop is not supported")
    exiting, after = normal[0]
    if exiting not in loop.latches:
        raise _refuse(function, marker, "the loop's exit test is not at its end (an unrotated loop)")
    cloned = set(loop.blocks) | {b for target in raising for b in _raise_path(target)}
    order = [b for b in function.blocks if b in cloned]

    header_phis = loop.header.phis()
    defined = {i for b in order for i in b.instructions}
    live_outs = _live_outs(function, loop.blocks, cloned)
    live_ins = []
    for block in order:
        for instruction in block.instructions:
            for operand in instruction.operands:
                if isinstance(instruction, core.Phi) and instruction.parent is loop.header \
                        and instruction.incoming_blocks[instruction.operands.index(operand)] not in loop.blocks:
                    continue    # a phi's start value: stored into `carried` before the loop
                if isinstance(operand, (core.Argument, core.Instruction)) and operand not in defined \
                        and operand not in live_ins:
                    live_ins.append(operand)
    carried_values = header_phis + [v for v in live_outs if v not in header_phis]
    for value in carried_values:
        if size_in_bytes(value.type) > 8:
            raise _refuse(function, marker, f"the loop carries a value of type {value.type} (at most 8 bytes)")
    float_inputs = [v for v in live_ins if v.type.is_float]
    parameters = [v for v in live_ins if not v.type.is_float and v is not function.arguments[1]]
    for value in float_inputs:
        if size_in_bytes(value.type) > 8:
            raise _refuse(function, marker, f"the loop reads a value of type {value.type} from before it")

    schedule = marker.operands[1].value if isinstance(marker.operands[1], core.ConstantInt) else 0
    tag = f"{number}.{function.name}"
    step = _step_function(module, f"{STEP_PREFIX}{tag}", function, loop, order, header_phis, carried_values,
                          float_inputs, parameters, exiting, after, live_outs)
    loop_function = _loop_function(module, f"{LOOP_PREFIX}{schedule}.{tag}", step)
    _check_state(function, marker, step)

    # The kernel: stores, the call, loads, then on to `after`.
    entry = Builder(module).before_instruction(function.entry.instructions[_first_non_alloca(function.entry)])
    slots = _CarriedSlots(carried_values)
    carried = entry.alloca(ArrayType(8 * slots.integer_count, I8), "checkpoint.carried", align=8)
    carried_floats = entry.alloca(ArrayType(8 * slots.float_count, I8), "checkpoint.carried.floats", align=8)
    inputs = entry.alloca(ArrayType(8 * max(len(float_inputs), 1), I8), "checkpoint.inputs", align=8)
    call_block = core.Block("checkpoint.loop", function)
    function.blocks.insert(function.blocks.index(loop.header), call_block)
    builder = Builder(module).at_end(call_block)
    builder.location = marker.location
    for index, phi in enumerate(header_phis):
        start = phi.operands[phi.incoming_blocks.index(preheader)]
        builder.store(start, slots.address(builder, phi, carried, carried_floats))
    for index, value in enumerate(float_inputs):
        builder.store(value, _slot(builder, inputs, index))
    regions = _regions(builder, entry, function, marker, step, parameters,
                       [(carried, 8 * slots.integer_count), (carried_floats, 8 * slots.float_count)])
    count = marker.operands[0]
    status = builder.call(loop_function, [core.ConstantNull(PTR), function.arguments[1], count, regions,
                                          carried, carried_floats, inputs, *parameters], "checkpoint.status")
    failed = core.Block("checkpoint.failed", function)
    done = core.Block("checkpoint.done", function)
    function.blocks.insert(function.blocks.index(loop.header), failed)
    function.blocks.insert(function.blocks.index(loop.header), done)
    builder.cond_br(builder.icmp("eq", status, constant_int(I32, 0)), done, failed)
    Builder(module).at_end(failed).ret(status)
    _FAILURE_BLOCKS.add(failed)             # an outer checkpointed loop's step takes it along as a raise path
    builder.at_end(done)
    loaded = {v: builder.load(v.type, slots.address(builder, v, carried, carried_floats), "checkpoint.out")
              for v in live_outs}
    builder.br(after)

    core.retarget(preheader, loop.header, call_block)
    for phi in after.phis():
        phi.incoming_blocks = [done if b is exiting else b for b in phi.incoming_blocks]
    for block in function.blocks:
        if block in loop.blocks:
            continue
        for instruction in block.instructions:
            instruction.operands = [loaded.get(o, o) for o in instruction.operands]
    function.blocks = [b for b in function.blocks if b not in loop.blocks]
    _drop_unreachable(function)             # raise paths only the loop reached; phis of shared ones
    _erase(function, marker, marker.operands[0])
    return CheckpointedLoop(loop_function, step, schedule, marker.location, function.name)


def _raise_path(target: core.Block) -> list[core.Block] | None:
    """The blocks from `target` to a `ret` of a constant non-zero status (a raise path of numba's,
    which stores its exception into excinfo and returns), or None."""
    path, block, previous = [], target, None
    while len(path) < 8:
        path.append(block)
        terminator = block.terminator
        if isinstance(terminator, core.Return):
            status = terminator.operands[0] if terminator.operands else None
            if isinstance(status, core.Phi) and status.parent is block and previous is not None:
                status = status.operands[status.incoming_blocks.index(previous)]
            raising = isinstance(status, core.ConstantInt) and status.value != 0
            return path if raising or block in _FAILURE_BLOCKS else None
        if isinstance(terminator, core.Unreachable):
            return path
        successors = list(dict.fromkeys(block.successors()))
        if len(successors) != 1:
            return None
        previous, block = block, successors[0]
    return None


def _drop_unreachable(function: core.Function) -> None:
    reached, work = set(), [function.entry]
    while work:
        block = work.pop()
        if block not in reached:
            reached.add(block)
            work.extend(block.successors())
    function.blocks = [b for b in function.blocks if b in reached]
    for block in function.blocks:
        for phi in block.phis():
            _keep_incoming(phi, reached)


def _keep_incoming(phi: core.Phi, blocks) -> None:
    """Drop the phi's entries from predecessors not in `blocks`."""
    keep = [i for i, b in enumerate(phi.incoming_blocks) if b in blocks]
    phi.operands = [phi.operands[i] for i in keep]
    phi.incoming_blocks = [phi.incoming_blocks[i] for i in keep]


def _live_outs(function: core.Function, loop_blocks, cloned) -> list[core.Value]:
    """Values defined in the loop and used after it."""
    inside = {i for b in loop_blocks for i in b.instructions}
    found = []
    for block in function.blocks:
        if block in cloned:
            continue
        for instruction in block.instructions:
            for operand in instruction.operands:
                if operand in inside and operand not in found:
                    found.append(operand)
    return found


class _CarriedSlots:
    """Where each carried value lives: an 8-byte slot of the integer array (after the exit
    flag) or of the float array."""

    def __init__(self, values):
        floats = [v for v in values if v.type.is_float]
        others = [v for v in values if not v.type.is_float]
        self.place = {v: (True, i) for i, v in enumerate(floats)}
        self.place.update({v: (False, 1 + i) for i, v in enumerate(others)})
        self.integer_count, self.float_count = 1 + len(others), max(len(floats), 1)

    def address(self, builder: Builder, value, carried, carried_floats) -> core.Value:
        is_float, index = self.place[value]
        return _slot(builder, carried_floats if is_float else carried, index)


def _slot(builder: Builder, array: core.Value, index: int) -> core.Value:
    return builder.gep(I64, array, [constant_int(I64, index)], "checkpoint.slot")


def _first_non_alloca(block: core.Block) -> int:
    return next(i for i, instruction in enumerate(block.instructions) if not isinstance(instruction, core.Alloca))


def _erase(function: core.Function, instruction: core.Instruction, replacement: core.Value) -> None:
    core.replace_all_uses(function, instruction, replacement)
    instruction.parent.instructions.remove(instruction)


# ---------------------------------------------------------------- the two functions

def _step_function(module, name, function, loop, order, header_phis, carried_values, float_inputs,
                   parameters, exiting, after, live_outs) -> core.Function:
    types = (PTR,) * _STEP_PARAMETERS + tuple(v.type for v in parameters)
    names = ["retptr", "excinfo", "carried", "carried.floats", "inputs"] + [f"in.{i}" for i in range(len(parameters))]
    step = core.Function(name, FunctionType(I32, types), names)
    step.attributes = ("noinline",)
    module.add_function(step)
    retptr, excinfo, carried, carried_floats, inputs = step.arguments[:_STEP_PARAMETERS]
    slots = _CarriedSlots(carried_values)
    entry = step.append_block("entry")
    builder = Builder(module).at_end(entry)
    value_map: dict = {function.arguments[1]: excinfo}      # the kernel's retptr, if used, is a live-in
    value_map.update(zip(parameters, step.arguments[_STEP_PARAMETERS:]))
    starts = [builder.load(phi.type, slots.address(builder, phi, carried, carried_floats), f"carried.{index}")
              for index, phi in enumerate(header_phis)]
    for index, value in enumerate(float_inputs):
        value_map[value] = builder.load(value.type, _slot(builder, inputs, index), f"input.{index}")
    source = core.Function(function.name, function.function_type)
    source.blocks = order                        # clone_body only walks `blocks`
    clone_body(source, step, value_map)
    builder.br(value_map[loop.header])

    # Phis of the header are loads now; the back edges store the next trip's values and return.
    header = value_map[loop.header]
    for phi, start in zip(header_phis, starts):
        core.replace_all_uses(step, value_map[phi], start)
        header.instructions.remove(value_map[phi])
        value_map[phi] = start
    cloned_blocks = {value_map[b] for b in order}
    for original in order:
        block = value_map[original]
        for phi in block.phis():
            _keep_incoming(phi, cloned_blocks)
    for latch in loop.latches:
        next_trip = step.append_block(f"next.{latch.name}")
        tail = Builder(module).at_end(next_trip)
        for index, phi in enumerate(header_phis):
            value = phi.operands[phi.incoming_blocks.index(latch)]
            tail.store(value_map.get(value, value), slots.address(tail, phi, carried, carried_floats))
        tail.store(constant_int(I64, 0), _slot(tail, carried, EXIT_FLAG_SLOT))
        tail.ret(constant_int(I32, 0))
        core.retarget(value_map[latch], header, next_trip)
    done = step.append_block("loop.done")
    tail = Builder(module).at_end(done)
    for value in live_outs:
        tail.store(value_map.get(value, value), slots.address(tail, value, carried, carried_floats))
    tail.store(constant_int(I64, 1), _slot(tail, carried, EXIT_FLAG_SLOT))
    tail.ret(constant_int(I32, 0))
    core.retarget(value_map[exiting], after, done)
    return step


def _loop_function(module: core.Module, name: str, step: core.Function) -> core.Function:
    live_ins = step.function_type.params[_STEP_PARAMETERS:]
    loop = core.Function(name, FunctionType(I32, (PTR, PTR, I64, PTR, PTR, PTR, PTR) + tuple(live_ins)),
                         ["retptr", "excinfo", "n", "regions", "carried", "carried.floats", "inputs"]
                         + [f"in.{i}" for i in range(len(live_ins))])
    loop.attributes = ("noinline",)
    module.add_function(loop)
    retptr, excinfo, count, _, carried, carried_floats, inputs = loop.arguments[:_LOOP_PARAMETERS]
    entry, body, next_step, check, done, failed, mismatch = (
        loop.append_block(n) for n in ("entry", "step", "next", "check", "done", "failed", "mismatch"))
    builder = Builder(module).at_end(entry)
    builder.br(body)
    builder.at_end(body)
    k = builder.phi(I64, "k")
    status = builder.call(step, [retptr, excinfo, carried, carried_floats, inputs,
                                 *loop.arguments[_LOOP_PARAMETERS:]], "status")
    builder.cond_br(builder.icmp("eq", status, constant_int(I32, 0)), next_step, failed)
    builder.at_end(next_step)
    k_next = builder.add(k, constant_int(I64, 1), "k.next")
    exited = builder.icmp("ne", builder.load(I64, _slot(builder, carried, EXIT_FLAG_SLOT), "exited"),
                          constant_int(I64, 0))
    last = builder.icmp("eq", k_next, count, "last")
    builder.cond_br(builder.icmp("eq", exited, last), check, mismatch)
    builder.at_end(check)
    builder.cond_br(last, done, body)
    k.operands, k.incoming_blocks = [constant_int(I64, 0), k_next], [entry, check]
    Builder(module).at_end(done).ret(constant_int(I32, 0))
    Builder(module).at_end(failed).ret(status)
    # The step ran a trip more or less than range(n): an enzpy bug, named by jit.py.
    Builder(module).at_end(mismatch).ret(constant_int(I32, STEP_COUNT_MISMATCH))
    return loop


# ---------------------------------------------------------------- what a snapshot holds

def _written_roots(step: core.Function) -> list[core.Value]:
    """Roots (in the step) of the memory the step writes (what allocators return is the step's own)."""
    return [pointer_root(target) for i in step.instructions()
            if not (isinstance(i, core.Call) and allocation_rule(i) is not None)
            for target in write_targets(i) if target.type.is_pointer]


def _check_state(function, marker, step: core.Function) -> None:
    """Every write of the step must land in its parameters' memory or in memory it allocates."""
    for root in _written_roots(step):
        if isinstance(root, (core.Argument, core.Alloca, core.ConstantNull)):
            continue
        if isinstance(root, core.Call) and allocation_rule(root) is not None:
            continue
        if isinstance(root, core.Load) and isinstance(pointer_root(root.operands[0]), core.Call) \
                and allocation_rule(pointer_root(root.operands[0])) is not None:
            continue        # the data of an array the step allocates
        raise _refuse(function, marker, f"the loop writes memory through a pointer it loads or selects "
                                        f"(%{root.name or root.opcode}: arrays swapped between steps?); "
                                        "checkpointing needs the written arrays to be the same in every step")


_ARRAY_FIELD = re.compile(r"^(?P<array>.+)\.(?P<field>\d+)$")


def _regions(builder, entry, function, marker, step, parameters, stack_arrays) -> core.Value:
    """The stack array [count, address, bytes, address, bytes...] of what the steps overwrite."""
    written = written_parameters(step)
    regions: list[tuple[core.Value, core.Value]] = []
    roots = []
    for position in sorted(written):
        if position < _STEP_PARAMETERS:
            continue                         # retptr (unused), excinfo (an exception), carried (below)
        root = pointer_root(parameters[position - _STEP_PARAMETERS])
        if root in roots:
            continue
        roots.append(root)
        regions.append((root, _extent(builder, function, marker, root)))
    regions.extend((array, constant_int(I64, size)) for array, size in stack_arrays)
    array = entry.alloca(ArrayType(1 + 2 * len(regions), I64), "checkpoint.regions", align=8)
    builder.store(constant_int(I64, len(regions)), _slot(builder, array, 0))
    for index, (address, size) in enumerate(regions):
        builder.store(builder.cast("ptrtoint", address, I64), _slot(builder, array, 1 + 2 * index))
        builder.store(size, _slot(builder, array, 2 + 2 * index))
    return array


def _extent(builder: Builder, function: core.Function, marker: core.Call, root: core.Value) -> core.Value:
    """Bytes of the memory object `root` starts (an array argument, an NRT array, a stack slot)."""
    if isinstance(root, core.Argument):
        match = _ARRAY_FIELD.match(root.name)
        by_name = {a.name: a for a in function.arguments}
        if match and match.group("field") == "4":
            count, itemsize = (by_name.get(f"{match.group('array')}.{k}") for k in (2, 3))
            if count is not None and itemsize is not None:
                return builder.mul(count, itemsize)
    if isinstance(root, core.Alloca) and isinstance(root.operands[0], core.ConstantInt):
        return constant_int(I64, size_in_bytes(root.allocated_type) * root.operands[0].value)
    if isinstance(root, core.Call) and allocation_rule(root) is not None:
        if not allocation_rule(root).returns_meminfo:
            return root.operands[0]
    if isinstance(root, core.Load):
        meminfo_field = root.operands[0]
        if isinstance(meminfo_field, core.GetElementPtr) and len(meminfo_field.operands) == 2 \
                and isinstance(meminfo_field.operands[1], core.ConstantInt) \
                and meminfo_field.operands[1].value == MEMINFO_DATA:
            meminfo = meminfo_field.operands[0]
            if isinstance(meminfo, core.Call) and allocation_rule(meminfo) is not None:
                return meminfo.operands[0]         # the allocator's size (argument 0 of every NRT allocator)
            size_field = builder.gep(I64, meminfo, [constant_int(I64, MEMINFO_SIZE // 8)], "checkpoint.meminfo.size")
            return builder.load(I64, size_field, "checkpoint.bytes", align=8)
    raise _refuse(function, marker, f"the loop writes memory whose size enzpy cannot tell ({root.name or root})")
