"""The per-thread function before the AD: what it may contain, and its float atomics as rule calls.

`refuse_unsupported` names each CUDA construct enzpy cannot run or
differentiate (warp-level operations, cooperative groups, float atomics other
than add, ...) with the Python line numba-cuda's line info gives.
`atomic_adds_as_calls` turns `atomicrmw fadd` (`cuda.atomic.add` on floats)
into a call of `enzpy.cuda.atomic_add.<f64|f32>(target, value slot)`, whose
derivative rules/cuda.py states; its old value must be unused (which thread
adds first decides it). `check_primitives_inlined` runs after the pre-AD
pipeline: thread indices and barriers must then sit in the kernel itself
(device functions are inlined), where the lowering finds them.
"""

from __future__ import annotations

from ..errors import FrontendError
from ..ir import core
from ..ir.builder import Builder
from ..ir.types import DOUBLE, FLOAT, VOID
from ..rules.cuda import ATOMIC_ADD, BARRIER

THREAD_INDICES = tuple(f"llvm.nvvm.read.ptx.sreg.{register}.{axis}"
                       for register in ("tid", "ntid", "ctaid", "nctaid") for axis in "xyz")
"""The thread-index registers the lowering provides, in the order of a thread's context."""
CONTEXT = THREAD_INDICES + ("enzpy.cuda.dynamic_shared_bytes",)
"""What a thread's context holds (i32 each): its indices, then the launch's dynamic shared bytes."""

_CONSTRUCTS = (
    ("llvm.nvvm.shfl.", "a warp shuffle (cuda.shfl_sync, shfl_up_sync, shfl_down_sync, shfl_xor_sync)"),
    ("llvm.nvvm.vote.", "a warp vote (cuda.all_sync, any_sync, eq_sync, ballot_sync)"),
    ("llvm.nvvm.match.", "a warp match (cuda.match_any_sync, match_all_sync)"),
    ("llvm.nvvm.bar.warp.sync", "cuda.syncwarp"),
    ("llvm.nvvm.barrier0.popc", "cuda.syncthreads_count"),
    ("llvm.nvvm.barrier0.and", "cuda.syncthreads_and"),
    ("llvm.nvvm.barrier0.or", "cuda.syncthreads_or"),
    ("llvm.nvvm.barrier.cta.red", "a counting barrier (cuda.syncthreads_count / _and / _or)"),
    ("llvm.nvvm.read.ptx.sreg.laneid", "cuda.laneid"),
    ("llvm.nvvm.read.ptx.sreg.warpsize", "cuda.warpsize"),
    ("llvm.nvvm.read.ptx.sreg.clock", "a clock read (cuda.clock, nanosleep)"),
    ("llvm.nvvm.read.ptx.sreg.", "a special register other than the thread and block indices"),
    ("llvm.nvvm.membar", "a memory fence (cuda.threadfence)"),
    ("cudaCG", "cooperative groups (cuda.cg.this_grid().sync())"),
    ("cudaGetParameterBuffer", "dynamic parallelism (a kernel launch from a kernel)"),
    ("cudaLaunchDevice", "dynamic parallelism (a kernel launch from a kernel)"),
    ("___numba_atomic_", "a float atomic other than add (cuda.atomic.max, min, exch, cas, ...)"),
    ("llvm.nvvm.", "a CUDA intrinsic"),
)


def refuse_unsupported(module: core.Module, kernel_name: str) -> None:
    """Raise FrontendError for the first CUDA construct enzpy cannot run, naming it and its line."""
    for function in module.functions.values():
        for instruction in function.instructions():
            construct = _unsupported(instruction)
            if construct is not None:
                raise FrontendError(_message(kernel_name, construct, instruction))


def _unsupported(instruction: core.Instruction) -> str | None:
    if isinstance(instruction, core.AtomicRMW) and instruction.type.is_float and instruction.operation != "fadd":
        return f"a float atomic '{instruction.operation}' (cuda.atomic.add is the float atomic enzpy runs)"
    if isinstance(instruction, core.CmpXchg) and not instruction.operands[1].type.is_integer:
        return "a compare-and-swap on floats (cuda.atomic.cas)"
    if not isinstance(instruction, core.Call) or not isinstance(instruction.callee, core.Function):
        return None
    name = instruction.callee.name
    if name in THREAD_INDICES or name.startswith("llvm.nvvm.read.ptx.sreg.") and name[-2:] in (".x", ".y", ".z") \
            and name.split(".")[-2] in ("tid", "ntid", "ctaid", "nctaid"):
        return None
    for prefix, construct in _CONSTRUCTS:
        if name.startswith(prefix):
            return f"{construct} ('{name}')"
    return None


def _message(kernel_name: str, construct: str, instruction: core.Instruction) -> str:
    import linecache

    where = ""
    if instruction.location is not None:
        where = f" at {instruction.location}"
        if instruction.location.file:
            text = linecache.getline(instruction.location.file, instruction.location.line).strip()
            where += f": {text}" if text else ""
    return f"CUDA kernel {kernel_name!r}: {construct} is not supported on the CPU or by the AD{where}"


def atomic_adds_as_calls(module: core.Module, kernel_name: str) -> None:
    """`atomicrmw fadd p, v` -> `store v, slot; call atomic_add(p, slot)` (its result must be unused)."""
    for function in list(module.functions.values()):
        used = {operand for instruction in function.instructions() for operand in instruction.operands}
        for block in function.blocks:
            for instruction in list(block.instructions):
                if not (isinstance(instruction, core.AtomicRMW) and instruction.operation == "fadd"):
                    continue
                if instruction in used:
                    raise FrontendError(_message(
                        kernel_name, "using the old value cuda.atomic.add returns for a float (it depends on "
                        "which thread adds first, so it has no derivative)", instruction))
                float_type = instruction.type
                if float_type not in (DOUBLE, FLOAT):
                    raise FrontendError(_message(kernel_name, f"an atomic add of {float_type}", instruction))
                pointer, value = instruction.operands
                slot = Builder(module).before_instruction(function.entry.instructions[0]).alloca(float_type,
                                                                                       "atomic.value")
                builder = Builder(module).before_instruction(instruction)
                builder.store(value, slot)
                callee = builder.declare(ATOMIC_ADD[float_type], VOID, [pointer.type, slot.type])
                call = builder.call(callee, [pointer, slot])
                call.location = instruction.location
                block.instructions.remove(instruction)


def check_primitives_inlined(module: core.Module, entry: str, kernel_name: str) -> None:
    """After inlining: barriers and thread indices only in the kernel itself."""
    for function in module.functions.values():
        if function.name == entry:
            continue
        for instruction in function.instructions():
            if isinstance(instruction, core.Call) and isinstance(instruction.callee, core.Function) \
                    and (instruction.callee.name == BARRIER or instruction.callee.name in CONTEXT):
                raise FrontendError(_message(
                    kernel_name, f"a device function '{function.name}' that stays a call (recursive or "
                    "noinline) and reads thread indices or synchronizes", instruction))
