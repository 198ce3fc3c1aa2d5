"""Per-thread code with barriers as a resumable step function, for running a block on one CPU thread.

A CUDA block's threads meet at each `cuda.syncthreads()`. On the CPU the
threads of a block run one after another on one CPU thread, in rounds: each
round runs every thread from where it stopped to its next barrier (or its
end). So the per-thread function F (the primal, its tangent function or its
gradient: the lowering runs after the AD, and the gradient's mirrored barriers
are barriers like the others) becomes

    i32 step(i32 resume, ptr frame, ptr context, F's parameters...)

which starts at barrier `resume` (0: the beginning) and returns the number
of the barrier it stopped at, or 0 when the thread finished (F's status then
sits at frame + 0). This is Polygeist's barrier fission written as a state
machine: the values live across a barrier (SSA liveness at the point after
it) are kept per thread in `frame` (stored where defined, loaded where used),
and so are the stack slots a barrier separates from their uses; everything
else stays in registers. `context` holds the thread's indices, in the order
of `threads.CONTEXT` (13 i32: the indices, the dynamic shared bytes). The block driver (cuda/launch.py) owns
the frames: FRAME_HEADER bytes of its own (status, resume point), then the
spilled values.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FrontendError
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I8, I32, I64, PTR, FunctionType, alignment_of, size_in_bytes
from ..rules.cuda import BARRIER
from .threads import CONTEXT

FRAME_HEADER = 16
"""Bytes at the start of a thread's frame: i32 status at 0, i32 resume point at 4 (the driver's)."""


@dataclass(frozen=True)
class SteppedFunction:
    """The step function made from a per-thread function."""

    step: core.Function
    """`i32 step(i32 resume, ptr frame, ptr context, parameters...)`."""
    frame_bytes: int
    """Bytes of one thread's frame (a multiple of 16)."""
    barriers: int
    """How many barriers the function passes (resume points besides 0)."""


def lower_barriers(module: core.Module, function: core.Function, name: str) -> SteppedFunction:
    """Replace `function` in `module` by its step function `name`."""
    for block in function.blocks:
        block.instructions = [i for i in block.instructions if not _is_debug_intrinsic(i)]
    resume_blocks = _split_after_barriers(function)
    live = _live_in(function)
    spilled: list[core.Instruction] = []
    for block in resume_blocks:
        spilled.extend(v for v in live[block] if v not in spilled)

    step = core.Function(name, FunctionType(I32, (I32, PTR, PTR, *function.function_type.params)),
                         ["resume", "frame", "context", *(a.name for a in function.arguments)])
    step.linkage = "internal"
    resume, frame, context = step.arguments[:3]
    entry = core.Block("step.entry", step)
    step.blocks = [entry] + function.blocks
    for block in function.blocks:
        block.parent = step
    for old, new in zip(function.arguments, step.arguments[3:]):
        core.replace_all_uses(step, old, new)
    del module.functions[function.name]
    module.functions[name] = step

    builder = Builder(module).at_end(entry)
    offset = FRAME_HEADER
    original_entry = function.blocks[0]
    # Stack slots: those a barrier separates from their uses live in the frame, the rest move to
    # the step's entry (a static slot outside the entry block would not be promoted).
    for block in function.blocks:
        for instruction in list(block.instructions):
            if not isinstance(instruction, core.Alloca):
                continue
            if instruction in spilled:
                count = instruction.operands[0]
                if not isinstance(count, core.ConstantInt):
                    raise FrontendError(f"{function.name}: a stack array of run-time size lives across a "
                                        "barrier (cuda.syncthreads)")
                offset = _aligned(offset, max(8, instruction.align or 1, alignment_of(instruction.allocated_type)))
                region = builder.gep(I8, frame, [constant_int(I64, offset)], name=instruction.name)
                offset += size_in_bytes(instruction.allocated_type) * count.value
                core.replace_all_uses(step, instruction, region)
                block.instructions.remove(instruction)
                spilled.remove(instruction)
            elif block is original_entry:
                block.instructions.remove(instruction)
                builder.insert(instruction)
    slots = {}
    for value in spilled:
        offset = _aligned(offset, alignment_of(value.type))
        slots[value] = builder.gep(I8, frame, [constant_int(I64, offset)], name=f"frame.{value.name}")
        offset += size_in_bytes(value.type)
    _keep_in_frame(module, step, slots)
    _read_thread_indices(module, step, builder, context)
    _store_status(module, step, frame)
    barriers = _stop_at_barriers(module, step, resume_blocks)
    builder.at_end(entry)
    builder.switch(resume, original_entry, [(k + 1, block) for k, block in enumerate(resume_blocks)])
    return SteppedFunction(step, _aligned(offset, 16), barriers)


def _is_debug_intrinsic(instruction: core.Instruction) -> bool:
    return isinstance(instruction, core.Call) and isinstance(instruction.callee, core.Function) \
        and instruction.callee.name.startswith("llvm.dbg.")


def _is_barrier(instruction: core.Instruction) -> bool:
    return isinstance(instruction, core.Call) and isinstance(instruction.callee, core.Function) \
        and instruction.callee.name == BARRIER


def _split_after_barriers(function: core.Function) -> list[core.Block]:
    """Cut each block right after each barrier; the blocks that start after one, in order."""
    resume_blocks = []
    index = 0
    while index < len(function.blocks):
        block = function.blocks[index]
        position = next((p for p, i in enumerate(block.instructions) if _is_barrier(i)), None)
        if position is not None:
            rest = core.Block(f"{block.name}.after.barrier", function)
            for instruction in block.instructions[position + 1:]:
                rest.append(instruction)
            block.instructions = block.instructions[:position + 1]
            for successor in rest.successors():
                for phi in successor.phis():
                    phi.incoming_blocks = [rest if b is block else b for b in phi.incoming_blocks]
            Builder(None).at_end(block).br(rest)
            function.blocks.insert(index + 1, rest)
            resume_blocks.append(rest)
        index += 1
    return resume_blocks


def _live_in(function: core.Function) -> dict[core.Block, set[core.Instruction]]:
    """SSA liveness: the instructions whose values are needed at the start of each block."""
    upward: dict[core.Block, set] = {}
    defined: dict[core.Block, set] = {}
    phi_uses: dict[tuple[core.Block, core.Block], set] = {}
    for block in function.blocks:
        uses, defs = set(), set()
        for instruction in block.instructions:
            if isinstance(instruction, core.Phi):
                for value, predecessor in zip(instruction.operands, instruction.incoming_blocks):
                    if isinstance(value, core.Instruction):
                        phi_uses.setdefault((predecessor, block), set()).add(value)
            else:
                uses.update(v for v in instruction.operands if isinstance(v, core.Instruction) and v not in defs)
            defs.add(instruction)
        upward[block], defined[block] = uses, defs
    live = {block: set() for block in function.blocks}
    changed = True
    while changed:
        changed = False
        for block in reversed(function.blocks):
            out = set()
            for successor in block.successors():
                out |= live[successor] | phi_uses.get((block, successor), set())
            new = upward[block] | (out - defined[block])
            if new != live[block]:
                live[block], changed = new, True
    return live


def _keep_in_frame(module: core.Module, step: core.Function, slots: dict) -> None:
    """Each spilled value is stored to its slot where defined and loaded where used."""
    if not slots:
        return
    users = []
    for block in step.blocks:
        for instruction in block.instructions:
            if any(operand in slots for operand in instruction.operands):
                users.append(instruction)
    for value, slot in slots.items():
        block = value.parent
        position = block.instructions.index(value) + 1
        if isinstance(value, core.Phi):
            position = len(block.phis())
        Builder(module).before_instruction(block.instructions[position]).store(value, slot)
    for user in users:
        if isinstance(user, core.Phi):
            loaded = {}
            for index, (value, predecessor) in enumerate(zip(user.operands, user.incoming_blocks)):
                if value in slots:
                    key = (value, predecessor)
                    if key not in loaded:
                        loaded[key] = Builder(module).before_instruction(predecessor.terminator).load(
                            value.type, slots[value])
                    user.operands[index] = loaded[key]
            continue
        builder = Builder(module).before_instruction(user)
        user.operands = [builder.load(v.type, slots[v]) if v in slots else v for v in user.operands]


def _read_thread_indices(module: core.Module, step: core.Function, entry_builder: Builder,
                         context: core.Value) -> None:
    """Thread-index intrinsics -> loads from the context, once, in the step's entry."""
    loaded = {}
    for block in step.blocks[1:]:
        for instruction in list(block.instructions):
            callee = instruction.callee if isinstance(instruction, core.Call) else None
            if isinstance(callee, core.Function) and callee.name in CONTEXT:
                if callee.name not in loaded:
                    field = entry_builder.gep(I8, context, [constant_int(I64, 4 * CONTEXT.index(callee.name))])
                    loaded[callee.name] = entry_builder.load(I32, field, name=callee.name.split(".", 4)[-1])
                core.replace_all_uses(step, instruction, loaded[callee.name])
                block.instructions.remove(instruction)


def _stop_at_barriers(module: core.Module, step: core.Function, resume_blocks: list[core.Block]) -> int:
    """`barrier; br after` -> `ret <number of the barrier>`."""
    for number, after in enumerate(resume_blocks, start=1):
        block = next(b for b in step.blocks if b.terminator is not None and after in b.successors()
                     and len(b.instructions) >= 2 and _is_barrier(b.instructions[-2]))
        block.instructions = block.instructions[:-2]
        Builder(module).at_end(block).ret(constant_int(I32, number))
    remaining = [i for i in step.instructions() if _is_barrier(i)]
    if remaining:
        raise FrontendError(f"{step.name}: a barrier was left after the lowering (an enzpy bug)")
    return len(resume_blocks)


def _store_status(module: core.Module, step: core.Function, frame: core.Value) -> None:
    """`ret i32 s` (the thread finished) -> store s at frame + 0; ret 0. Runs before the barriers
    become returns, so every return it sees is the thread's end."""
    for block in step.blocks:
        terminator = block.terminator
        if isinstance(terminator, core.Return):
            Builder(module).before_instruction(terminator).store(terminator.operands[0], frame)
            terminator.operands = [constant_int(I32, 0)]


def _aligned(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
