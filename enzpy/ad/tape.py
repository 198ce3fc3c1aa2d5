"""The tape: a growable stack of 8-byte slots the reverse sweep pops in LIFO order.

The augmented forward sweep pushes the values the reverse sweep cannot get
otherwise (per-iteration operands, shadow pointers, the id of every block it
leaves); the reverse sweep pops them back. Floats are stored as their bits,
pointers as integers, narrower integers widened. The runtime is a few small
LLVM functions (below) added to the module and inlined by the post-AD pipeline.
"""

from __future__ import annotations

import weakref

from ..analysis.alias_scopes import TAPE
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.reader import parse_module
from ..ir.types import DOUBLE, FLOAT, I32, I64, PTR, VOID, IntType, PointerType, StructType

TAPE_TYPE = StructType((PTR, I64, I64))
SLOT_BYTES = 8
"""Every tape entry takes one 8-byte slot."""
INITIAL_SLOTS = 1024
"""A tape's first buffer, in slots: a whole kernel's gradient."""
THREAD_TAPE_SLOTS = 16
"""The first buffer of a thread tape (ReverseSpec.thread_tapes, a CUDA thread's gradient)."""
# A thread tape also starts empty and frees its own buffer: the spare buffer every gradient shares
# through one global would cost an atomic exchange per thread call, contended between CPU workers,
# and 8 KiB malloc / free churn; a 16-slot buffer comes from malloc's per-thread cache.

# The next call reuses the last call's buffer (up to 256 MiB), kept in a global: a
# fresh buffer would be faulted in page by page on every call. The exchange is
# atomic, so concurrent calls each get the spare or none.
_SPARE_SLOTS_LIMIT = (256 << 20) // 8

_LIBC = """
declare ptr @realloc(ptr, i64)
declare void @free(ptr)
"""

_RUNTIME = f"""
@enzpy.tape.spare = internal global ptr null, align 8

define internal i64 @enzpy.tape.pop(ptr %tape) alwaysinline {{
entry:
  %size.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 1
  %size = load i64, ptr %size.field, align 8
  %top = add i64 %size, -1
  store i64 %top, ptr %size.field, align 8
  %data = load ptr, ptr %tape, align 8
  %slot = getelementptr inbounds i64, ptr %data, i64 %top
  %value = load i64, ptr %slot, align 8
  ret i64 %value
}}

define internal void @enzpy.tape.start(ptr %tape) alwaysinline {{
entry:
  %spare = atomicrmw xchg ptr @enzpy.tape.spare, ptr null acquire, align 8
  %none = icmp eq ptr %spare, null
  br i1 %none, label %empty, label %reuse
empty:
  store {{ ptr, i64, i64 }} zeroinitializer, ptr %tape, align 8
  ret void
reuse:
  %capacity = load i64, ptr %spare, align 8
  store ptr %spare, ptr %tape, align 8
  %size.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 1
  store i64 0, ptr %size.field, align 8
  %capacity.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 2
  store i64 %capacity, ptr %capacity.field, align 8
  ret void
}}

define internal void @enzpy.tape.start.empty(ptr %tape) alwaysinline {{
entry:
  store {{ ptr, i64, i64 }} zeroinitializer, ptr %tape, align 8
  ret void
}}

define internal void @enzpy.tape.release(ptr %tape) alwaysinline {{
entry:
  %data = load ptr, ptr %tape, align 8
  call void @free(ptr %data)
  ret void
}}

define internal void @enzpy.tape.free(ptr %tape) alwaysinline {{
entry:
  %data = load ptr, ptr %tape, align 8
  %capacity.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 2
  %capacity = load i64, ptr %capacity.field, align 8
  %small = icmp ule i64 %capacity, {_SPARE_SLOTS_LIMIT}
  %some = icmp ne ptr %data, null
  %keep = and i1 %small, %some
  br i1 %keep, label %spare, label %release
spare:
  store i64 %capacity, ptr %data, align 8
  %previous = atomicrmw xchg ptr @enzpy.tape.spare, ptr %data acq_rel, align 8
  call void @free(ptr %previous)
  ret void
release:
  call void @free(ptr %data)
  ret void
}}
"""


# Room for `{{count}}` more slots: `%needed`, and whether the tape is too small for it.
_CHECK = """
  %size.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 1
  %capacity.field = getelementptr inbounds {{ ptr, i64, i64 }}, ptr %tape, i64 0, i32 2
  %size = load i64, ptr %size.field, align 8
  %capacity = load i64, ptr %capacity.field, align 8
  %needed = add nuw i64 %size, {count}
  %full = icmp ugt i64 %needed, %capacity
"""

# A tape too small grows to twice its slots, an empty one to `initial_slots` (one function per
# first size: push_function), either to %needed if that is more.
_GROW = """
  %doubled = shl i64 %capacity, 1
  %empty = icmp eq i64 %capacity, 0
  %first = select i1 %empty, i64 {initial_slots}, i64 %doubled
  %short = icmp ult i64 %first, %needed
  %new.capacity = select i1 %short, i64 %needed, i64 %first
  %old.data = load ptr, ptr %tape, align 8
  %bytes = shl i64 %new.capacity, 3
  %new.data = call ptr @realloc(ptr %old.data, i64 %bytes)
  store ptr %new.data, ptr %tape, align 8
  store i64 %new.capacity, ptr %capacity.field, align 8
"""

# Store %value in the slot above the top (the room is there).
_STORE = """
  %data = load ptr, ptr %tape, align 8
  %slot = getelementptr inbounds i64, ptr %data, i64 %size
  store i64 %value, ptr %slot, align 8
  %next = add nuw i64 %size, 1
  store i64 %next, ptr %size.field, align 8
"""

_PUSH = """
define internal void @"{name}"(ptr %tape, i64 %value) alwaysinline {{
entry:""" + _CHECK.replace("{count}", "1") + """  br i1 %full, label %grow, label %store
grow:""" + _GROW + """  br label %store
store:""" + _STORE + """  ret void
}}
"""


# The pushes of one block (the values it caches, the id of the block it came from) check the
# capacity once: `reserve` makes room for all of them, then each is an unchecked store. A block of
# BA's residual loop pushes seven values per observation; seven checks and seven realloc paths
# there kept the tape's pointer in a chain of phis through the loop.
_RESERVE = """
define internal void @"{name}.reserve"(ptr %tape, i64 %count) alwaysinline {{
entry:""" + _CHECK.replace("{count}", "%count") + """  br i1 %full, label %grow, label %done
grow:""" + _GROW + """  br label %done
done:
  ret void
}}
"""

_PUSH_RESERVED = """
define internal void @enzpy.tape.push.reserved(ptr %tape, i64 %value) alwaysinline {
entry:
  %size.field = getelementptr inbounds { ptr, i64, i64 }, ptr %tape, i64 0, i32 1
  %size = load i64, ptr %size.field, align 8""" + _STORE + """  ret void
}
"""

_BUFFER_POINTERS = ("slot", "data", "spare")
"""Pointers into the tape's heap buffer in the runtime above: a label tells LLVM that
pushes and pops touch no array or adjoint (analysis/alias_scopes.py)."""


def add_runtime(module: core.Module) -> None:
    """Add the tape functions (once) to `module`, sharing its libc declarations."""
    if "enzpy.tape.pop" not in module.functions:
        _add_functions(module, _LIBC + _PUSH.format(name=_push_name(INITIAL_SLOTS), initial_slots=INITIAL_SLOTS)
                       + _RUNTIME)


def push_function(module: core.Module, initial_slots: int = INITIAL_SLOTS) -> core.Function:
    """The push of tapes whose first buffer holds `initial_slots` (added to `module` on first need)."""
    add_runtime(module)
    name = _push_name(initial_slots)
    if name not in module.functions:
        _add_functions(module, _LIBC + _PUSH.format(name=name, initial_slots=initial_slots))
    return module.functions[name]


def reserving_functions(module: core.Module, initial_slots: int) -> tuple[core.Function, core.Function]:
    """(reserve, unchecked push) for tapes whose first buffer holds `initial_slots`."""
    push_function(module, initial_slots)
    name = _push_name(initial_slots) + ".reserve"
    if name not in module.functions:
        _add_functions(module, _LIBC + _RESERVE.format(name=_push_name(initial_slots), initial_slots=initial_slots))
    if "enzpy.tape.push.reserved" not in module.functions:
        _add_functions(module, _PUSH_RESERVED)
    return module.functions[name], module.functions["enzpy.tape.push.reserved"]


def _push_name(initial_slots: int) -> str:
    return "enzpy.tape.push" if initial_slots == INITIAL_SLOTS else f"enzpy.tape.push.{initial_slots}"


def _add_functions(module: core.Module, text: str) -> None:
    """Add the runtime functions of `text` to `module`; its declarations become the module's own."""
    runtime = parse_module(text)
    for function in runtime.functions.values():
        for instruction in function.instructions():
            if isinstance(instruction, (core.Load, core.Store)) \
                    and instruction.operands[-1].name in _BUFFER_POINTERS:
                instruction.memory = TAPE
    for name, function in runtime.functions.items():
        if function.is_declaration and name in module.functions:
            existing = module.functions[name]
            for other in runtime.functions.values():
                for instruction in other.instructions():
                    if isinstance(instruction, core.Call) and instruction.callee is function:
                        instruction.callee = existing
        else:
            module.functions[name] = function
    for name, variable in runtime.globals.items():
        module.globals[name] = variable


class Tape:
    """Emits pushes and pops of one tape (an alloca'd TAPE_TYPE in the gradient's entry)."""

    def __init__(self, module: core.Module, pointer: core.Value, initial_slots: int = INITIAL_SLOTS):
        add_runtime(module)
        self.module = module
        self.pointer = pointer
        self.push_function = push_function(module, initial_slots)
        self.initial_slots = initial_slots
        self.pushes = 0
        """Pushes emitted so far (none: the tape is never used)."""
        self.pop_function = module.functions["enzpy.tape.pop"]
        self.free_function = module.functions["enzpy.tape.free"]

    @classmethod
    def start(cls, module: core.Module, builder: Builder, spare: bool = True,
              initial_slots: int = INITIAL_SLOTS) -> "Tape":
        """A tape on the stack at `builder`, holding the spare buffer of an earlier call if
        there is one. `spare=False`: an empty tape that frees its own buffer and leaves the
        spare alone (one spare per gradient: a small tape must not evict the big one's).
        `initial_slots`: the first buffer a push makes for an empty tape."""
        pointer = builder.alloca(TAPE_TYPE, "tape")
        tape = cls(module, pointer, initial_slots)
        builder.call(module.functions["enzpy.tape.start" if spare else "enzpy.tape.start.empty"], [pointer])
        if not spare:
            tape.free_function = module.functions["enzpy.tape.release"]
        return tape

    def push(self, builder: Builder, value: core.Value) -> None:
        self.pushes += 1
        builder.call(self.push_function, [self.pointer, to_slot(builder, value)])

    def reserve_per_block(self, function: core.Function) -> None:
        """Check the capacity once for each run of two or more pushes in a block of `function`.

        A run ends at any other call given this tape (a pop, an augmented callee that pushes
        onto it): the room reserved before it would not count the callee's slots."""
        reserve, reserved_push = reserving_functions(self.module, self.initial_slots)
        for block in function.blocks:
            runs, run = [], []
            for instruction in block.instructions:
                if not isinstance(instruction, core.Call) or self.pointer not in instruction.operands:
                    continue
                if instruction.callee is self.push_function and instruction.operands[0] is self.pointer:
                    run.append(instruction)
                    continue
                runs.append(run)
                run = []
            runs.append(run)
            for pushes in runs:
                if len(pushes) < 2:
                    continue
                Builder(self.module).before_instruction(pushes[0]).call(
                    reserve, [self.pointer, constant_int(I64, len(pushes))])
                for push in pushes:
                    push.callee = reserved_push

    def without_spare_if_unused(self, function: core.Function) -> None:
        """A tape nothing was pushed onto starts empty and leaves the spare buffer alone: taking
        and giving back the spare is an atomic exchange on one global per call (contended when
        threads call gradients at once, as a CUDA grid's threads do)."""
        if self.pushes:
            return
        replacements = {self.module.functions["enzpy.tape.start"]: self.module.functions["enzpy.tape.start.empty"],
                        self.module.functions["enzpy.tape.free"]: self.module.functions["enzpy.tape.release"]}
        for instruction in function.instructions():
            if isinstance(instruction, core.Call) and instruction.callee in replacements \
                    and instruction.operands[:1] == [self.pointer]:
                instruction.callee = replacements[instruction.callee]

    def pop(self, builder: Builder, like: core.Value | None = None, ty=None) -> core.Value:
        slot = builder.call(self.pop_function, [self.pointer])
        return from_slot(builder, slot, ty if ty is not None else like.type)

    def slots(self, builder: Builder) -> core.Value:
        """How many slots the tape holds now."""
        return builder.load(I64, self.size_field(builder), "tape.slots")

    def size_field(self, builder: Builder) -> core.Value:
        """A pointer to the slot count (storing a smaller count drops the slots above it)."""
        return builder.gep(TAPE_TYPE, self.pointer, [core.ConstantInt(I32, 0), core.ConstantInt(I32, 1)])

    def free(self, builder: Builder) -> None:
        builder.call(self.free_function, [self.pointer])


def to_slot(builder: Builder, value: core.Value) -> core.Value:
    ty = value.type
    if isinstance(ty, PointerType):
        return builder.cast("ptrtoint", value, I64)
    if ty == DOUBLE:
        return builder.cast("bitcast", value, I64)
    if ty == FLOAT:
        return builder.cast("bitcast", builder.cast("fpext", value, DOUBLE), I64)
    if isinstance(ty, IntType):
        return value if ty.width == 64 else builder.cast("zext", value, I64)
    raise TypeError(f"cannot put a {ty} on the tape")


def from_slot(builder: Builder, slot: core.Value, ty) -> core.Value:
    if isinstance(ty, PointerType):
        return builder.cast("inttoptr", slot, ty)
    if ty == DOUBLE:
        return builder.cast("bitcast", slot, DOUBLE)
    if ty == FLOAT:
        return builder.cast("fptrunc", builder.cast("bitcast", slot, DOUBLE), FLOAT)
    if isinstance(ty, IntType):
        return slot if ty.width == 64 else builder.cast("trunc", slot, ty)
    raise TypeError(f"cannot take a {ty} off the tape")


def tape_constant_zero() -> core.ZeroInitializer:
    return core.ZeroInitializer(TAPE_TYPE)



_RECORDED_RELEASES: "weakref.WeakKeyDictionary[core.Module, set[str]]" = weakref.WeakKeyDictionary()


class AllocationLog:
    """What the forward sweep allocated or kept alive, released if the kernel raises.

    The reverse sweep frees shadow allocations and drops the extra reference on
    kernel allocations as it passes them; a kernel that raises (status != 0)
    returns before any reverse code runs, so without the log each such call
    leaked them. Every entry is a pointer and the function that releases it.

    A callee's gradient (ad/calls.py) records into its caller's log (`lent`, the
    pointer to it): if the caller raises, all is released at once; if the callee
    raises, it releases what it recorded itself, down to where it started.
    """

    RELEASES = ("NRT_MemInfo_release", "NRT_MemInfo_call_dtor", "NRT_Free", "free", "_ZdlPv", "_ZdaPv")
    """Release functions, by the index recorded next to each pointer (`free`: a callee's frame or a C
    heap block's shadow; `_ZdlPv` / `_ZdaPv`: the shadow of C++'s new / new[])."""

    def __init__(self, module: core.Module, builder: Builder, lent: core.Value | None = None,
                 initial_slots: int = INITIAL_SLOTS):
        self.module = module
        self.lent = lent is not None
        self.tape = Tape(module, lent, initial_slots) if self.lent \
            else Tape.start(module, builder, spare=False, initial_slots=initial_slots)
        self.base = self.tape.slots(builder) if self.lent else constant_int(I64, 0)

    def record(self, builder: Builder, pointer: core.Value, release: str) -> None:
        _RECORDED_RELEASES.setdefault(self.module, set()).add(release)
        self.tape.push(builder, pointer)
        self.tape.push(builder, constant_int(I64, self.RELEASES.index(release)))

    def release_all(self, function: core.Function, builder: Builder, done: core.Block) -> None:
        """From `builder` on: release every recorded pointer, newest first, then go to `done`."""
        check = function.append_block("release.check")
        release = function.append_block("release.next")
        builder.br(check)
        builder.at_end(check)
        empty = builder.icmp("eq", self.tape.slots(builder), self.base)
        builder.cond_br(empty, done, release)
        builder.at_end(release)
        kind = self.tape.pop(builder, ty=I64)
        pointer = self.tape.pop(builder, ty=PTR)
        cases = []
        # Only the release functions something in this module records (a C program has no NRT_Free):
        # entries are recorded before the release code is made, callees' before their callers'.
        recorded = _RECORDED_RELEASES.get(self.module, set())
        for index, name in enumerate(self.RELEASES):
            if name not in recorded:
                continue
            block = function.append_block(f"release.{name}")
            case = Builder(builder.module).at_end(block)
            case.call(case.declare(name, VOID, [PTR]), [pointer])
            case.br(check)
            cases.append((index, block))
        builder.switch(kind, check, cases)

    def free(self, builder: Builder) -> None:
        if not self.lent:
            self.tape.free(builder)
