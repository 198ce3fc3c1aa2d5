"""Derivatives of prange loops, run on numba's threading layer.

Both AD modes differentiate across each loop function (launches.py): forward
mode calls its *tangent function* T(retptr, excinfo, args, dims, steps, data,
shadow args...), reverse mode its *augmented forward* A (same operands, then
the shadow args, a frame slot, the tape and the allocation log) and, in the
reverse sweep, its *reverse function* R(frame, tape, log). Called as they are,
they run the whole schedule on the calling thread: correct, serial.
`run_derivatives_in_parallel` makes each such call a launch through
`numba_parallel_for`, as numba's own launcher does (the GIL released, the
thread count from `get_num_threads`, so `numba.set_num_threads` holds):

- forward: every call of the threading layer gets a share of the schedule
  (`args` offset by `steps`) and runs T on it. Its shadow args are offset the
  same way (each shadow pointer moves by what its primal moved). Tangents
  write where the primal writes, so they are as race-free as the primal.
- reverse, forward sweep: every call runs A on its share with a tape and an
  allocation log of its own, and records (frame, tape, log, thread id) in a
  block of records (calloc'd, one per schedule entry at most; the caller
  keeps the block as A's frame).
- reverse sweep: one work item per thread id of the forward sweep. A thread's
  shares depend on each other through the reduction arrays numba indexes by
  thread id, so each work item runs R on that thread's records newest first,
  on one thread; different thread ids run in parallel. Adjoints that two
  shares may add to the same element (a shared input, a stencil's
  neighbours) are added atomically (ReverseSpec.atomic_adjoints).

A loop whose reverse function still adds into shadow memory without atomics
(a BLAS call or a memory copy in the body: `launches.serial_reason`) keeps
both sweeps serial, which is correct, and `explain` says so.

If the kernel raises between the sweeps, the caller frees the block of records
(its allocation log holds it as A's frame); the per-share frames and tapes of
a launch whose reverse sweep never runs are not freed.
"""

from __future__ import annotations

import re

from ..ir import core
from ..ir.builder import constant_int
from ..ir.types import PTR
from ..ir.reader import parse_module
from .launches import LOOP_PREFIX, loop_shape, owned_sites, serial_reason
from .ownership import AREA_BYTES_PER_SITE

CACHE_LINES = 128
"""Each share's ownership area starts on its own pair of cache lines: the forward sweep updates it
at every load, and areas sharing a line would bounce it between the threads."""


def area_stride(sites: int) -> int:
    """Bytes from one share's ownership area to the next."""
    return -(-max(sites, 1) * AREA_BYTES_PER_SITE // CACHE_LINES) * CACHE_LINES


RECORD_BYTES = 64
"""One share's record: frame (ptr) at 0, tape at 8, allocation log at 32 (24 bytes each), thread id at 56.
The block starts with one record's worth of header: the number of records (i64) at 0."""

_DERIVATIVE = re.compile(r"^enzpy\.(tangent\d*|augmented|reverse\.call)\.(" + re.escape(LOOP_PREFIX) + r".*)$")


def run_derivatives_in_parallel(module: core.Module) -> int:
    """Make every call of a loop function's derivative a parallel launch; returns how many."""
    launched = 0
    for function in list(module.functions.values()):
        if LOOP_PREFIX in function.name or function.is_declaration:
            continue            # the derivatives themselves call each other serially (A's error path)
        for call in [i for i in function.instructions() if isinstance(i, core.Call)]:
            match = _DERIVATIVE.match(getattr(call.callee, "name", ""))
            if match is None or not match.group(2).endswith(".d2.a"):
                continue        # not a derivative of a loop function, or not for `args` alone
            shape = loop_shape(match.group(2))
            if shape is None:
                continue
            kind = match.group(1)
            if kind.startswith("tangent"):
                helper = _launch_tangent(module, call.callee, shape, lanes=len(call.operands) - 6)
                _replace(function, call, helper, call.operands[2:])
            elif serial_reason(module, "enzpy.reverse.call." + match.group(2)) is not None:
                # Both sweeps stay serial: the reverse one adds without atomics. No ownership area
                # (ownership.py): numba's launch passed null data, which LLVM may have made poison.
                if kind == "augmented":
                    call.operands[5] = core.ConstantNull(PTR)
                continue
            elif kind == "augmented":
                sites = owned_sites(module, "enzpy.reverse.call." + match.group(2))
                helper = _launch_augmented(module, call.callee, shape, sites)
                _replace(function, call, helper, call.operands[2:8])
            elif len(call.operands) == 3:
                helper = _launch_reverse(module, call.callee, owned_sites(module, call.callee.name))
                _replace(function, call, helper, call.operands[:1])
            else:
                continue
            launched += 1
    return launched


def _replace(function: core.Function, call: core.Call, helper: core.Function, operands) -> None:
    """Call `helper` with `operands` instead of `call`; the status it returned becomes 0 (the loop
    function never fails: numba's gufunc drops its body's status)."""
    new = core.Call(type=helper.function_type.return_type, name="", opcode="call", callee=helper,
                    operands=list(operands), function_type=helper.function_type,
                    argument_attributes=[() for _ in operands])
    new.location = call.location
    block = call.parent
    block.instructions.insert(block.instructions.index(call), new)
    new.parent = block
    block.instructions.remove(call)
    core.replace_all_uses(function, call, constant_int(call.type, 0))


# ---------------------------------------------------------------- generated functions

def _launcher_text() -> str:
    # numba's launcher, with the function and its data as parameters.
    return """
declare void @numba_gil_ensure(ptr)
declare void @numba_gil_release(ptr)
declare ptr @PyEval_SaveThread()
declare void @PyEval_RestoreThread(ptr)
declare i64 @get_num_threads()
declare i64 @get_thread_id()
declare void @numba_parallel_for(ptr, ptr, ptr, ptr, ptr, i64, i64, i64)
declare ptr @calloc(i64, i64)
declare ptr @aligned_alloc(i64, i64)
declare void @free(ptr)

define internal void @enzpy.parallel.launch(ptr %function, ptr %args, ptr %dims, ptr %steps, ptr %data,
                                            i64 %inner_ndim, i64 %array_count) noinline {
entry:
  %gil = alloca i32, align 4
  store i32 0, ptr %gil, align 4
  call void @numba_gil_ensure(ptr %gil)
  %state = call ptr @PyEval_SaveThread()
  %threads = call i64 @get_num_threads()
  call void @numba_parallel_for(ptr %function, ptr %args, ptr %dims, ptr %steps, ptr %data,
                                i64 %inner_ndim, i64 %array_count, i64 %threads)
  call void @PyEval_RestoreThread(ptr %state)
  call void @numba_gil_release(ptr %gil)
  ret void
}
"""


def _shadow_shares(arrays: int, lanes: int, shadow_fields: list[int]) -> tuple[str, list[str]]:
    """IR that builds each lane's shadow args for this call's share: shadow[j] + (args[j] - base[j])."""
    lines = ["  %base = load ptr, ptr %closure, align 8"]
    names = []
    for lane, field in zip(range(lanes), shadow_fields):
        lines += [f"  %shadow.field.{lane} = getelementptr ptr, ptr %closure, i64 {field}",
                  f"  %shadow.base.{lane} = load ptr, ptr %shadow.field.{lane}, align 8",
                  f"  %shadow.{lane} = alloca ptr, i64 {arrays}, align 8"]
        names.append(f"%shadow.{lane}")
    for j in range(arrays):
        lines += [f"  %arg.slot.{j} = getelementptr ptr, ptr %args, i64 {j}",
                  f"  %arg.{j} = load ptr, ptr %arg.slot.{j}, align 8",
                  f"  %base.slot.{j} = getelementptr ptr, ptr %base, i64 {j}",
                  f"  %base.{j} = load ptr, ptr %base.slot.{j}, align 8",
                  f"  %arg.int.{j} = ptrtoint ptr %arg.{j} to i64",
                  f"  %base.int.{j} = ptrtoint ptr %base.{j} to i64",
                  f"  %offset.{j} = sub i64 %arg.int.{j}, %base.int.{j}"]
        for lane in range(lanes):
            lines += [f"  %shadow.slot.{lane}.{j} = getelementptr ptr, ptr %shadow.base.{lane}, i64 {j}",
                      f"  %shadow.arg.{lane}.{j} = load ptr, ptr %shadow.slot.{lane}.{j}, align 8",
                      f"  %shadow.share.{lane}.{j} = getelementptr i8, ptr %shadow.arg.{lane}.{j}, i64 %offset.{j}",
                      f"  %shadow.out.{lane}.{j} = getelementptr ptr, ptr %shadow.{lane}, i64 {j}",
                      f"  store ptr %shadow.share.{lane}.{j}, ptr %shadow.out.{lane}.{j}, align 8"]
    lines += ["  %data.field = getelementptr ptr, ptr %closure, i64 1",
              "  %data = load ptr, ptr %data.field, align 8"]
    return "\n".join(lines), names


def _closure_stores(values: list[str]) -> str:
    lines = [f"  %closure = alloca ptr, i64 {len(values)}, align 8"]
    for index, value in enumerate(values):
        lines += [f"  %closure.{index} = getelementptr ptr, ptr %closure, i64 {index}",
                  f"  store ptr {value}, ptr %closure.{index}, align 8"]
    return "\n".join(lines)


def _launch_tangent(module: core.Module, tangent: core.Function, shape: tuple[int, int], lanes: int):
    arrays, inner_ndim = shape
    name = f"enzpy.parallel.forward.{tangent.name}"
    if name in module.functions:
        return module.functions[name]
    shares, shadows = _shadow_shares(arrays, lanes, [2 + lane for lane in range(lanes)])
    lane_parameters = ", ".join(f"ptr %shadow.arg{lane}" for lane in range(lanes))
    text = _launcher_text() + f"""
declare i32 @"{tangent.name}"(ptr, ptr, ptr, ptr, ptr, ptr{", ptr" * lanes})

define internal void @"{name}.share"(ptr %args, ptr %dims, ptr %steps, ptr %closure) {{
entry:
{shares}
  %status = call i32 @"{tangent.name}"(ptr null, ptr null, ptr %args, ptr %dims, ptr %steps, ptr %data, {", ".join(f"ptr {s}" for s in shadows)})
  ret void
}}

define internal void @"{name}"(ptr %args, ptr %dims, ptr %steps, ptr %data, {lane_parameters}) {{
entry:
{_closure_stores(["%args", "%data"] + [f"%shadow.arg{lane}" for lane in range(lanes)])}
  call void @enzpy.parallel.launch(ptr @"{name}.share", ptr %args, ptr %dims, ptr %steps, ptr %closure, i64 {inner_ndim}, i64 {arrays})
  ret void
}}
"""
    return merge_text(module, text, name)


def _launch_augmented(module: core.Module, augmented: core.Function, shape: tuple[int, int], sites: int):
    arrays, inner_ndim = shape
    area_bytes = area_stride(sites)
    name = f"enzpy.parallel.augmented.{augmented.name}"
    if name in module.functions:
        return module.functions[name]
    shares, shadows = _shadow_shares(arrays, 1, [2])
    text = _launcher_text() + f"""
declare i32 @"{augmented.name}"(ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr)

define internal void @"{name}.share"(ptr %args, ptr %dims, ptr %steps, ptr %closure) {{
entry:
{shares}
  %records.field = getelementptr ptr, ptr %closure, i64 3
  %records = load ptr, ptr %records.field, align 8
  %index = atomicrmw add ptr %records, i64 1 monotonic, align 8
  %record.offset = mul i64 %index, {RECORD_BYTES}
  %record.start = add i64 %record.offset, {RECORD_BYTES}
  %record = getelementptr i8, ptr %records, i64 %record.start
  %tape.field = getelementptr i8, ptr %record, i64 8
  %log.field = getelementptr i8, ptr %record, i64 32
  %thread.field = getelementptr i8, ptr %record, i64 56
  ; The share's tape and log live on its own stack while A pushes (records of other shares share
  ; cache lines with this one's), and move into the record afterwards.
  %tape = alloca {{ ptr, i64, i64 }}, align 8
  store {{ ptr, i64, i64 }} zeroinitializer, ptr %tape, align 8
  %log = alloca {{ ptr, i64, i64 }}, align 8
  store {{ ptr, i64, i64 }} zeroinitializer, ptr %log, align 8
  %areas.field = getelementptr ptr, ptr %closure, i64 4
  %areas = load ptr, ptr %areas.field, align 8
  %area.offset = mul i64 %index, {area_bytes}
  %area.start = getelementptr i8, ptr %areas, i64 %area.offset
  %area = select i1 {"true" if sites else "false"}, ptr %area.start, ptr null
  %status = call i32 @"{augmented.name}"(ptr null, ptr null, ptr %args, ptr %dims, ptr %steps, ptr %area, ptr {shadows[0]}, ptr %record, ptr %tape, ptr %log)
  %tape.value = load {{ ptr, i64, i64 }}, ptr %tape, align 8
  store {{ ptr, i64, i64 }} %tape.value, ptr %tape.field, align 8
  %log.value = load {{ ptr, i64, i64 }}, ptr %log, align 8
  store {{ ptr, i64, i64 }} %log.value, ptr %log.field, align 8
  %thread = call i64 @get_thread_id()
  store i64 %thread, ptr %thread.field, align 8
  ret void
}}

define internal void @"{name}"(ptr %args, ptr %dims, ptr %steps, ptr %data, ptr %shadow.args, ptr %frame.out) {{
entry:
  %entries = load i64, ptr %dims, align 8
  %count = add i64 %entries, 1
  %records = call ptr @calloc(i64 %count, i64 {RECORD_BYTES})
  %area.count = select i1 {"true" if sites else "false"}, i64 %entries, i64 0
  %area.total = mul i64 %area.count, {area_bytes}
  %areas = call ptr @aligned_alloc(i64 {CACHE_LINES}, i64 %area.total)
  %areas.field = getelementptr i8, ptr %records, i64 8
  store ptr %areas, ptr %areas.field, align 8
{_closure_stores(["%args", "%data", "%shadow.args", "%records", "%areas"])}
  call void @enzpy.parallel.launch(ptr @"{name}.share", ptr %args, ptr %dims, ptr %steps, ptr %closure, i64 {inner_ndim}, i64 {arrays})
  store ptr %records, ptr %frame.out, align 8
  ret void
}}
"""
    return merge_text(module, text, name)


def _launch_reverse(module: core.Module, reverse: core.Function, sites: int):
    name = f"enzpy.parallel.reverse.{reverse.name}"
    if name in module.functions:
        return module.functions[name]
    text = _launcher_text() + f"""
declare i32 @"{reverse.name}"(ptr, ptr, ptr)

; One work item per thread id of the forward sweep: its records, newest first.
define internal void @"{name}.share"(ptr %args, ptr %dims, ptr %steps, ptr %closure) {{
entry:
  %tape = alloca {{ ptr, i64, i64 }}, align 8
  %log = alloca {{ ptr, i64, i64 }}, align 8
  %items = load i64, ptr %dims, align 8
  %threads = load ptr, ptr %args, align 8
  %records = load ptr, ptr %closure, align 8
  %count = load i64, ptr %records, align 8
  br label %item.loop
item.loop:
  %item = phi i64 [ 0, %entry ], [ %item.next, %item.end ]
  %items.done = icmp eq i64 %item, %items
  br i1 %items.done, label %exit, label %item.body
item.body:
  %thread.slot = getelementptr i64, ptr %threads, i64 %item
  %thread = load i64, ptr %thread.slot, align 8
  br label %record.loop
record.loop:
  %left = phi i64 [ %count, %item.body ], [ %index, %record.next ]
  %records.done = icmp eq i64 %left, 0
  br i1 %records.done, label %item.end, label %record.check
record.check:
  %index = sub i64 %left, 1
  %record.offset = mul i64 %index, {RECORD_BYTES}
  %record.start = add i64 %record.offset, {RECORD_BYTES}
  %record = getelementptr i8, ptr %records, i64 %record.start
  %thread.field = getelementptr i8, ptr %record, i64 56
  %record.thread = load i64, ptr %thread.field, align 8
  %mine = icmp eq i64 %record.thread, %thread
  br i1 %mine, label %record.run, label %record.next
record.run:
  %frame = load ptr, ptr %record, align 8
  %tape.field = getelementptr i8, ptr %record, i64 8
  %log.field = getelementptr i8, ptr %record, i64 32
  %tape.value = load {{ ptr, i64, i64 }}, ptr %tape.field, align 8
  store {{ ptr, i64, i64 }} %tape.value, ptr %tape, align 8
  %log.value = load {{ ptr, i64, i64 }}, ptr %log.field, align 8
  store {{ ptr, i64, i64 }} %log.value, ptr %log, align 8
  %status = call i32 @"{reverse.name}"(ptr %frame, ptr %tape, ptr %log)
  %tape.data = load ptr, ptr %tape, align 8
  call void @free(ptr %tape.data)
  %log.data = load ptr, ptr %log, align 8
  call void @free(ptr %log.data)
  br label %record.next
record.next:
  br label %record.loop
item.end:
  %item.next = add i64 %item, 1
  br label %item.loop
exit:
  ret void
}}

define internal void @"{name}"(ptr %records) {{
entry:
  %null = icmp eq ptr %records, null
  br i1 %null, label %done, label %start
start:
  %count = load i64, ptr %records, align 8
  br label %scan
scan:
  %index = phi i64 [ 0, %start ], [ %index.next, %scan.body ]
  %most = phi i64 [ 0, %start ], [ %most.next, %scan.body ]
  %scanned = icmp eq i64 %index, %count
  br i1 %scanned, label %launch, label %scan.body
scan.body:
  %record.offset = mul i64 %index, {RECORD_BYTES}
  %thread.offset = add i64 %record.offset, {RECORD_BYTES + 56}
  %thread.field = getelementptr i8, ptr %records, i64 %thread.offset
  %thread = load i64, ptr %thread.field, align 8
  %thread.count = add i64 %thread, 1
  %larger = icmp ugt i64 %thread.count, %most
  %most.next = select i1 %larger, i64 %thread.count, i64 %most
  %index.next = add i64 %index, 1
  br label %scan
launch:
  %areas.field = getelementptr i8, ptr %records, i64 8
  %areas = load ptr, ptr %areas.field, align 8
  call void @enzpy.parallel.private_intervals(ptr %areas, i64 %count, i64 {sites}, i64 {area_stride(sites)})
  %threads = call ptr @calloc(i64 %most, i64 8)
  br label %fill
fill:
  %slot = phi i64 [ 0, %launch ], [ %slot.next, %fill.body ]
  %filled = icmp eq i64 %slot, %most
  br i1 %filled, label %run, label %fill.body
fill.body:
  %thread.slot = getelementptr i64, ptr %threads, i64 %slot
  store i64 %slot, ptr %thread.slot, align 8
  %slot.next = add i64 %slot, 1
  br label %fill
run:
  %args = alloca ptr, align 8
  store ptr %threads, ptr %args, align 8
  %dims = alloca i64, align 8
  store i64 %most, ptr %dims, align 8
  %steps = alloca i64, align 8
  store i64 8, ptr %steps, align 8
  %closure = alloca ptr, align 8
  store ptr %records, ptr %closure, align 8
  call void @enzpy.parallel.launch(ptr @"{name}.share", ptr %args, ptr %dims, ptr %steps, ptr %closure, i64 0, i64 1)
  call void @free(ptr %threads)
  call void @free(ptr %areas)
  call void @free(ptr %records)
  br label %done
done:
  ret void
}}
"""
    return merge_text(module, _PRIVATE_INTERVALS + text, name)


# Each share's private interval per site (ownership.py): its [min, max] shrunk until it meets no
# other share's [min, max] of any site. An empty range (min > max: the site never ran) meets nothing.
_PRIVATE_INTERVALS = """
define internal void @enzpy.parallel.private_intervals(ptr %areas, i64 %shares, i64 %sites, i64 %area.bytes) {
entry:
  %private.start = mul i64 %sites, 16
  br label %share.loop
share.loop:
  %share = phi i64 [ 0, %entry ], [ %share.next, %site.done ]
  %shares.done = icmp eq i64 %share, %shares
  br i1 %shares.done, label %exit, label %share.body
share.body:
  %share.offset = mul i64 %share, %area.bytes
  %area = getelementptr i8, ptr %areas, i64 %share.offset
  br label %site.loop
site.loop:
  %site = phi i64 [ 0, %share.body ], [ %site.next, %other.done ]
  %sites.done = icmp eq i64 %site, %sites
  br i1 %sites.done, label %site.done, label %site.body
site.body:
  %range.offset = mul i64 %site, 16
  %range = getelementptr i8, ptr %area, i64 %range.offset
  %low.0 = load i64, ptr %range, align 8
  %high.field = getelementptr i8, ptr %range, i64 8
  %high.0 = load i64, ptr %high.field, align 8
  br label %other.loop
other.loop:
  %other = phi i64 [ 0, %site.body ], [ %other.next, %other.next.block ]
  %low = phi i64 [ %low.0, %site.body ], [ %low.out, %other.next.block ]
  %high = phi i64 [ %high.0, %site.body ], [ %high.out, %other.next.block ]
  %others.done = icmp eq i64 %other, %shares
  br i1 %others.done, label %other.done, label %other.body
other.body:
  %other.offset = mul i64 %other, %area.bytes
  %other.area = getelementptr i8, ptr %areas, i64 %other.offset
  %same = icmp eq i64 %other, %share
  br label %foreign.loop
foreign.loop:
  %foreign = phi i64 [ 0, %other.body ], [ %foreign.next, %foreign.body ]
  %low.in = phi i64 [ %low, %other.body ], [ %low.next, %foreign.body ]
  %high.in = phi i64 [ %high, %other.body ], [ %high.next, %foreign.body ]
  %foreign.done = icmp eq i64 %foreign, %sites
  %skip = or i1 %foreign.done, %same
  br i1 %skip, label %other.next.block, label %foreign.body
foreign.body:
  %foreign.offset = mul i64 %foreign, 16
  %foreign.range = getelementptr i8, ptr %other.area, i64 %foreign.offset
  %a = load i64, ptr %foreign.range, align 8
  %b.field = getelementptr i8, ptr %foreign.range, i64 8
  %b = load i64, ptr %b.field, align 8
  %nonempty = icmp ule i64 %a, %b
  %below.high = icmp ule i64 %a, %high.in
  %above.low = icmp uge i64 %b, %low.in
  %meets.0 = and i1 %nonempty, %below.high
  %meets = and i1 %meets.0, %above.low
  %from.left = icmp ule i64 %a, %low.in
  %b.plus = add i64 %b, 1
  %a.minus = sub i64 %a, 1
  %cut.low = select i1 %from.left, i64 %b.plus, i64 %low.in
  %cut.high = select i1 %from.left, i64 %high.in, i64 %a.minus
  %low.next = select i1 %meets, i64 %cut.low, i64 %low.in
  %high.next = select i1 %meets, i64 %cut.high, i64 %high.in
  %foreign.next = add i64 %foreign, 1
  br label %foreign.loop
other.next.block:
  %low.out = phi i64 [ %low.in, %foreign.loop ]
  %high.out = phi i64 [ %high.in, %foreign.loop ]
  %other.next = add i64 %other, 1
  br label %other.loop
other.done:
  %private.offset = add i64 %private.start, %range.offset
  %private = getelementptr i8, ptr %area, i64 %private.offset
  store i64 %low, ptr %private, align 8
  %private.high = getelementptr i8, ptr %private, i64 8
  store i64 %high, ptr %private.high, align 8
  %site.next = add i64 %site, 1
  br label %site.loop
site.done:
  %share.next = add i64 %share, 1
  br label %share.loop
exit:
  ret void
}
"""


def merge_text(module: core.Module, text: str, name: str) -> core.Function:
    """Parse `text` and add its functions to `module`; those the module has already (its libc
    declarations, the derivative called, the launcher an earlier loop added) are the module's own."""
    parsed = parse_module(text)
    same = {}
    for function_name, function in parsed.functions.items():
        if function_name in module.functions:
            same[function] = module.functions[function_name]
        else:
            module.functions[function_name] = function
    for function in parsed.functions.values():
        if function in same:
            continue
        for instruction in function.instructions():
            if isinstance(instruction, core.Call) and instruction.callee in same:
                instruction.callee = same[instruction.callee]
            instruction.operands = [same.get(o, o) if isinstance(o, core.Function) else o
                                    for o in instruction.operands]
    return module.functions[name]
