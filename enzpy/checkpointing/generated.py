"""After the AD: a checkpointed loop's derivative follows its schedule in generated code.

The AD differentiates across the loop function (`outline.py`) like any call
that stays a call: its augmented forward A runs every step's augmented
forward and keeps every step's frame, its reverse function R runs the
steps' reverse functions; memory grows with n. `run_checkpointed_loops`
replaces each call of A and of R with a *driver* that keeps A's parameters
in a record and follows the loop's plan (`plan.py`, asked for at run time
when n is known):

- the driver's forward half (in A's place) runs the plan up to END_FORWARD:
  primal steps, snapshots of the state (the regions the outline listed:
  arrays the steps write and the carried values) into memory slots, and the
  augmented forward of the steps whose reverse comes first (their frames
  kept on a small stack);
- its reverse half (in R's place) runs the rest: each REVERSE calls the
  step's reverse function on the kept frames, newest first; LOADs put a
  snapshot back into the state, ADVANCEs recompute from it.

The step functions push on and pop from the kernel's tape exactly as when
called from A and R (the plan's AUGMENT / REVERSE nest), so the kernel's
own code before and after the loop is unchanged. Tape memory is one
period's steps (one step for Revolve) plus the snapshots.

If the kernel raises between the two halves, the record, snapshots and
kept frames are not freed (as for prange loops); disk snapshots are
removed after the call (`plan.remove_left_over_snapshots`).
"""

from __future__ import annotations

from ..errors import DifferentiationError
from ..ir import core
from ..parallel.derivatives import merge_text
from .marker import STEP_COUNT_MISMATCH
from .outline import EXIT_FLAG_SLOT, checkpointed_loops
from .plan import (ADVANCE, AUGMENT, DISK_SYMBOL, END_FORWARD, HEADER, LOAD, LOAD_DISK, LOAD_FILE,
                   PLAN_FAILED, PLAN_SYMBOL, RELEASE_SYMBOL, REMOVE_FILES, REVERSE, SAVE, SAVE_DISK, SAVE_FILE,
                   register_loop)

RECORD_HEADER = 64
"""The record: plan (ptr) at 0, position at 8, snapshots at 16, kept frames at 24, how many at 32,
regions at 40, bytes of a snapshot at 48, the loop's number at 56; A's parameters from 64, 8 bytes each."""


def run_checkpointed_loops(module: core.Module) -> int:
    """Replace the calls of every checkpointed loop's A and R with its driver; returns how many loops."""
    done = 0
    for loop in checkpointed_loops(module):
        prefix = f"enzpy.augmented.{loop.loop_function.name}."
        for augmented in [f for name, f in list(module.functions.items()) if name.startswith(prefix)]:
            reverse = module.functions["enzpy.reverse.call." + augmented.name[len("enzpy.augmented."):]]
            number = register_loop(loop.schedule_number, loop.loop_function.name)
            forward_half, reverse_half = _drivers(module, loop, augmented, number)
            for function in list(module.functions.values()):
                if function in (augmented, reverse) or function.is_declaration:
                    continue
                for call in [i for i in function.instructions() if isinstance(i, core.Call)]:
                    if call.callee is augmented:
                        _replace_keeping_status(function, call, forward_half)
                    elif call.callee is reverse:
                        _replace_keeping_status(function, call, reverse_half)
            done += 1
    return done


def _replace_keeping_status(function, call, helper) -> None:
    new = core.Call(type=helper.function_type.return_type, name=call.name, opcode="call", callee=helper,
                    operands=list(call.operands), function_type=helper.function_type,
                    argument_attributes=[() for _ in call.operands])
    new.location = call.location
    block = call.parent
    block.instructions[block.instructions.index(call)] = new
    new.parent = block
    core.replace_all_uses(function, call, new)


def _step_calls(loop, augmented: core.Function):
    """The step's augmented forward as A calls it, and what each of its operands is in A."""
    prefix = f"enzpy.augmented.{loop.step.name}."
    calls = [i for i in augmented.instructions() if isinstance(i, core.Call)
             and getattr(i.callee, "name", "").startswith(prefix)]
    if len(calls) != 1:
        raise DifferentiationError(f"checkpointed loop @{loop.loop_function.name}: expected one call of the "
                                   f"step's augmented forward in {augmented.name}, found {len(calls)}")
    call = calls[0]
    sources = []
    for operand in call.operands[:-3]:          # then the frame slot, the tape and the log
        if isinstance(operand, core.Argument) and operand in augmented.arguments:
            sources.append(augmented.arguments.index(operand))
        elif isinstance(operand, core.Constant):
            sources.append(operand)
        else:
            raise DifferentiationError(f"checkpointed loop @{loop.loop_function.name}: the step's operand "
                                       f"{operand.name!r} is computed inside {augmented.name}")
    step_reverse = "enzpy.reverse.call." + call.callee.name[len("enzpy.augmented."):]
    return call.callee, sources, step_reverse


def _operand_text(source, types, prefix: str, lines: list[str]) -> str:
    """`type value` of one step operand: a parameter of A loaded from the record, or a constant."""
    from ..ir.writer import constant_text

    if isinstance(source, int):
        name = f"%{prefix}.{len(lines)}"
        lines.append(f"  {name}.at = getelementptr i8, ptr %record, i64 {RECORD_HEADER + 8 * source}")
        lines.append(f"  {name} = load {types[source]}, ptr {name}.at, align 8")
        return f"{types[source]} {name}"
    return f"{source.type} {constant_text(source)}"


_KEEP_FRAME = """  %kept = load i64, ptr %kept.at, align 8
  %frame.slot = getelementptr ptr, ptr %frames, i64 %kept
  %kept.next = add i64 %kept, 1
  store i64 %kept.next, ptr %kept.at, align 8
"""
"""AUGMENT's step frame goes to the next free place of the kept frames."""


def _steps_loop(label: str, before: str, operand_lines: str, call: str) -> str:
    """IR running steps a..b-1 with `call` (the primal step or its augmented forward): a step that
    fails returns its status; each checks the exit flag against k + 1 == n."""
    return f"""{label}:
  %{label}.k = phi i64 [ %a, %next ], [ %{label}.k.next, %{label}.checked ]
  %{label}.more = icmp slt i64 %{label}.k, %b
  br i1 %{label}.more, label %{label}.step, label %next
{label}.step:
{before}{operand_lines}
  %{label}.status = {call}
  %{label}.k.next = add i64 %{label}.k, 1
  %{label}.failed = icmp ne i32 %{label}.status, 0
  br i1 %{label}.failed, label %{label}.error, label %{label}.flag
{label}.flag:
  %{label}.exited = load i64, ptr %exit.flag, align 8
  %{label}.last = icmp eq i64 %{label}.k.next, %n
  %{label}.expected = zext i1 %{label}.last to i64
  %{label}.right = icmp eq i64 %{label}.exited, %{label}.expected
  br i1 %{label}.right, label %{label}.checked, label %mismatch
{label}.checked:
  br label %{label}
{label}.error:
  ret i32 %{label}.status
"""


def _drivers(module: core.Module, loop, augmented: core.Function, number: int):
    step_augmented, sources, step_reverse = _step_calls(loop, augmented)
    primal_count = len(loop.step.function_type.params)
    types = [str(t) for t in augmented.function_type.params]
    parameters = len(types) - 3               # then the frame slot, the tape and the log
    carried_index = 4                         # the loop function's `carried` parameter
    name = f"enzpy.checkpoint.{number}"
    primal_lines: list[str] = []
    primal_operands = ", ".join(_operand_text(s, types, "primal", primal_lines) for s in sources[:primal_count])
    augmented_lines: list[str] = []
    augmented_operands = ", ".join(_operand_text(s, types, "aug", augmented_lines) for s in sources)
    stores = "\n".join(
        f"  %keep.{i} = getelementptr i8, ptr %record, i64 {RECORD_HEADER + 8 * i}\n"
        f"  store {types[i]} %p{i}, ptr %keep.{i}, align 8" for i in range(parameters))
    signature = ", ".join(f"{t} %p{i}" for i, t in enumerate(types))
    record_bytes = RECORD_HEADER + 8 * parameters
    frame_slot, tape, log = (f"%p{i}" for i in range(parameters, parameters + 3))
    primal_lines_text = "\n".join(primal_lines)
    augmented_lines_text = "\n".join(augmented_lines)
    advance_loop = _steps_loop("advance", "", primal_lines_text,
                               f'call i32 @"{loop.step.name}"({primal_operands})')
    augment_loop = _steps_loop(
        "augment", _KEEP_FRAME, augmented_lines_text,
        f'call i32 @"{step_augmented.name}"({augmented_operands}, ptr %frame.slot, ptr %tape, ptr %log)')
    text = f"""
declare ptr @calloc(i64, i64)
declare ptr @malloc(i64)
declare void @free(ptr)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare ptr @{PLAN_SYMBOL}(i64, i64, ptr)
declare void @{RELEASE_SYMBOL}(ptr)
declare void @{DISK_SYMBOL}(i64, ptr, i64, i64, ptr)
declare i32 @"{loop.step.name}"({", ".join(str(t) for t in loop.step.function_type.params)})
declare i32 @"{step_augmented.name}"({", ".join(str(t) for t in step_augmented.function_type.params)})
declare i32 @"{step_reverse}"(ptr, ptr, ptr)

; The forward half, in place of the loop function's augmented forward.
define internal i32 @"{name}.forward"({signature}) {{
entry:
  %record = call ptr @calloc(i64 1, i64 {record_bytes})
{stores}
  %count = load i64, ptr %p3, align 8
  %pairs = mul i64 %count, 16
  %regions.bytes = add i64 %pairs, 8
  %regions = call ptr @malloc(i64 %regions.bytes)
  call void @llvm.memcpy.p0.p0.i64(ptr %regions, ptr %p3, i64 %regions.bytes, i1 false)
  %regions.at = getelementptr i8, ptr %record, i64 40
  store ptr %regions, ptr %regions.at, align 8
  %number.at = getelementptr i8, ptr %record, i64 56
  store i64 {number}, ptr %number.at, align 8
  %plan = call ptr @{PLAN_SYMBOL}(i64 {number}, i64 %p2, ptr %regions)
  %no.plan = icmp eq ptr %plan, null
  br i1 %no.plan, label %plan.failed, label %planned
plan.failed:
  call void @free(ptr %regions)
  call void @free(ptr %record)
  store ptr null, ptr {frame_slot}, align 8
  ret i32 {PLAN_FAILED}
planned:
  store ptr %plan, ptr %record, align 8
  %slots.at = getelementptr i64, ptr %plan, i64 1
  %slots = load i64, ptr %slots.at, align 8
  %kept.at = getelementptr i64, ptr %plan, i64 2
  %kept = load i64, ptr %kept.at, align 8
  %bytes = call i64 @"{name}.snapshot.bytes"(ptr %regions)
  %snapshot.bytes = mul i64 %slots, %bytes
  %snapshot.some = add i64 %snapshot.bytes, 8
  %snapshots = call ptr @malloc(i64 %snapshot.some)
  %snapshots.at = getelementptr i8, ptr %record, i64 16
  store ptr %snapshots, ptr %snapshots.at, align 8
  %kept.bytes = mul i64 %kept, 8
  %kept.some = add i64 %kept.bytes, 8
  %frames = call ptr @malloc(i64 %kept.some)
  %frames.at = getelementptr i8, ptr %record, i64 24
  store ptr %frames, ptr %frames.at, align 8
  %size.at = getelementptr i8, ptr %record, i64 48
  store i64 %bytes, ptr %size.at, align 8
  %status = call i32 @"{name}.run"(ptr %record, i1 true, ptr {tape}, ptr {log})
  %failed = icmp ne i32 %status, 0
  br i1 %failed, label %give.up, label %keep
keep:
  store ptr %record, ptr {frame_slot}, align 8
  ret i32 0
give.up:
  call void @"{name}.free"(ptr %record)
  store ptr null, ptr {frame_slot}, align 8
  ret i32 %status
}}

; The reverse half, in place of the loop function's reverse function.
define internal i32 @"{name}.reverse"(ptr %record, ptr %tape, ptr %log) {{
entry:
  %none = icmp eq ptr %record, null
  br i1 %none, label %exit, label %run
run:
  %status = call i32 @"{name}.run"(ptr %record, i1 false, ptr %tape, ptr %log)
  call void @"{name}.free"(ptr %record)
  ret i32 %status
exit:
  ret i32 0
}}

define internal void @"{name}.free"(ptr %record) {{
entry:
  %plan = load ptr, ptr %record, align 8
  %disk.at = getelementptr i64, ptr %plan, i64 4
  %disk = load i64, ptr %disk.at, align 8
  %uses.disk = icmp ne i64 %disk, 0
  br i1 %uses.disk, label %remove, label %release
remove:
  call void @{DISK_SYMBOL}(i64 {REMOVE_FILES}, ptr %record, i64 0, i64 0, ptr null)
  br label %release
release:
  call void @{RELEASE_SYMBOL}(ptr %plan)
  %snapshots.at = getelementptr i8, ptr %record, i64 16
  %snapshots = load ptr, ptr %snapshots.at, align 8
  call void @free(ptr %snapshots)
  %frames.at = getelementptr i8, ptr %record, i64 24
  %frames = load ptr, ptr %frames.at, align 8
  call void @free(ptr %frames)
  %regions.at = getelementptr i8, ptr %record, i64 40
  %regions = load ptr, ptr %regions.at, align 8
  call void @free(ptr %regions)
  call void @free(ptr %record)
  ret void
}}

; Bytes of one snapshot: the regions' sum.
define internal i64 @"{name}.snapshot.bytes"(ptr %regions) {{
entry:
  %count = load i64, ptr %regions, align 8
  br label %region
region:
  %index = phi i64 [ 0, %entry ], [ %index.next, %add ]
  %sum = phi i64 [ 0, %entry ], [ %sum.next, %add ]
  %more = icmp ult i64 %index, %count
  br i1 %more, label %add, label %exit
add:
  %pair = mul i64 %index, 2
  %bytes.index = add i64 %pair, 2
  %bytes.at = getelementptr i64, ptr %regions, i64 %bytes.index
  %bytes = load i64, ptr %bytes.at, align 8
  %sum.next = add i64 %sum, %bytes
  %index.next = add i64 %index, 1
  br label %region
exit:
  ret i64 %sum
}}

; Copy the state into (save) or out of (load) one memory snapshot slot.
define internal void @"{name}.copy"(ptr %record, i64 %slot, i1 %save) {{
entry:
  %snapshots.at = getelementptr i8, ptr %record, i64 16
  %snapshots = load ptr, ptr %snapshots.at, align 8
  %size.at = getelementptr i8, ptr %record, i64 48
  %size = load i64, ptr %size.at, align 8
  %offset = mul i64 %slot, %size
  %snapshot = getelementptr i8, ptr %snapshots, i64 %offset
  %regions.at = getelementptr i8, ptr %record, i64 40
  %regions = load ptr, ptr %regions.at, align 8
  %count = load i64, ptr %regions, align 8
  br label %region
region:
  %index = phi i64 [ 0, %entry ], [ %index.next, %copy ]
  %at = phi ptr [ %snapshot, %entry ], [ %at.next, %copy ]
  %more = icmp ult i64 %index, %count
  br i1 %more, label %copy, label %exit
copy:
  %pair = mul i64 %index, 2
  %address.index = add i64 %pair, 1
  %address.at = getelementptr i64, ptr %regions, i64 %address.index
  %address.int = load i64, ptr %address.at, align 8
  %address = inttoptr i64 %address.int to ptr
  %bytes.index = add i64 %pair, 2
  %bytes.at = getelementptr i64, ptr %regions, i64 %bytes.index
  %bytes = load i64, ptr %bytes.at, align 8
  %source = select i1 %save, ptr %address, ptr %at
  %target = select i1 %save, ptr %at, ptr %address
  call void @llvm.memcpy.p0.p0.i64(ptr %target, ptr %source, i64 %bytes, i1 false)
  %at.next = getelementptr i8, ptr %at, i64 %bytes
  %index.next = add i64 %index, 1
  br label %region
exit:
  ret void
}}

; Follow the plan from the record's position: to END_FORWARD in the forward half, to END in the reverse one.
define internal i32 @"{name}.run"(ptr %record, i1 %forward.half, ptr %tape, ptr %log) {{
entry:
  %plan = load ptr, ptr %record, align 8
  %position.at = getelementptr i8, ptr %record, i64 8
  %n.at = getelementptr i8, ptr %record, i64 {RECORD_HEADER + 8 * 2}
  %n = load i64, ptr %n.at, align 8
  %carried.at = getelementptr i8, ptr %record, i64 {RECORD_HEADER + 8 * carried_index}
  %carried = load ptr, ptr %carried.at, align 8
  %exit.flag = getelementptr i64, ptr %carried, i64 {EXIT_FLAG_SLOT}
  %frames.at = getelementptr i8, ptr %record, i64 24
  %frames = load ptr, ptr %frames.at, align 8
  %kept.at = getelementptr i8, ptr %record, i64 32
  %regions.at = getelementptr i8, ptr %record, i64 40
  %regions = load ptr, ptr %regions.at, align 8
  %number.at = getelementptr i8, ptr %record, i64 56
  %number = load i64, ptr %number.at, align 8
  br label %next
next:
  %position = load i64, ptr %position.at, align 8
  %position.next = add i64 %position, 1
  store i64 %position.next, ptr %position.at, align 8
  %triple = mul i64 %position, 3
  %field = add i64 %triple, {HEADER}
  %operation.at = getelementptr i64, ptr %plan, i64 %field
  %operation = load i64, ptr %operation.at, align 8
  %a.at = getelementptr i64, ptr %operation.at, i64 1
  %a = load i64, ptr %a.at, align 8
  %b.at = getelementptr i64, ptr %operation.at, i64 2
  %b = load i64, ptr %b.at, align 8
  switch i64 %operation, label %finish [ i64 {ADVANCE}, label %advance
                                         i64 {AUGMENT}, label %augment
                                         i64 {REVERSE}, label %reverse
                                         i64 {SAVE}, label %save
                                         i64 {LOAD}, label %load
                                         i64 {SAVE_DISK}, label %save.disk
                                         i64 {LOAD_DISK}, label %load.disk
                                         i64 {END_FORWARD}, label %end.forward ]
finish:
  ret i32 0
end.forward:
  br i1 %forward.half, label %finish, label %next

{advance_loop}
{augment_loop}
reverse:
  %reverse.k = phi i64 [ %b, %next ], [ %reverse.k.next, %reverse.step ]
  %reverse.more = icmp sgt i64 %reverse.k, %a
  br i1 %reverse.more, label %reverse.step, label %next
reverse.step:
  %reverse.kept = load i64, ptr %kept.at, align 8
  %reverse.index = sub i64 %reverse.kept, 1
  store i64 %reverse.index, ptr %kept.at, align 8
  %reverse.frame.at = getelementptr ptr, ptr %frames, i64 %reverse.index
  %reverse.frame = load ptr, ptr %reverse.frame.at, align 8
  %reverse.status = call i32 @"{step_reverse}"(ptr %reverse.frame, ptr %tape, ptr %log)
  %reverse.k.next = sub i64 %reverse.k, 1
  br label %reverse

save:
  call void @"{name}.copy"(ptr %record, i64 %a, i1 true)
  br label %next
load:
  call void @"{name}.copy"(ptr %record, i64 %a, i1 false)
  br label %next
save.disk:
  call void @{DISK_SYMBOL}(i64 {SAVE_FILE}, ptr %record, i64 %number, i64 %a, ptr %regions)
  br label %next
load.disk:
  call void @{DISK_SYMBOL}(i64 {LOAD_FILE}, ptr %record, i64 %number, i64 %a, ptr %regions)
  br label %next

mismatch:
  ret i32 {STEP_COUNT_MISMATCH}
}}
"""
    forward_half = merge_text(module, text, f"{name}.forward")
    return forward_half, module.functions[f"{name}.reverse"]
