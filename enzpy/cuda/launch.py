"""Running a grid on CPU threads: the block driver (LLVM text) and the Python launch.

`block_driver` writes

    i32 driver(i64 first, i64 last, ptr launch, parameters of the per-thread function...)

which runs blocks first .. last - 1 one after another. Per block it zeroes the
block's shared buffers (the shared memory, and its shadows in a derivative:
a shadow starts at zero), then runs the threads in rounds through the step
function (cuda/barriers.py) until every thread has finished. `launch` holds
i64 grid x, y, z, block x, y, z, the shared bytes per block and the dynamic shared bytes among them. Threads that
stop at different barriers in one round is the divergent barrier CUDA leaves
undefined: the driver stops with DIVERGENT_BARRIER.

`run_grid` splits the blocks into one contiguous range per worker and calls
the driver from a thread pool (ctypes lets go of the GIL during the call), so
blocks run in parallel as on a GPU; the threads of one block share one CPU
thread, so nothing inside a block needs atomics, and memory several blocks
add into is added atomically (the primal's `cuda.atomic.add`, the gradient's
adjoints: ReverseSpec.atomic_adjoints).
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import KernelError
from .barriers import FRAME_HEADER, SteppedFunction

DIVERGENT_BARRIER = 0x7E5A0001
"""Driver status: threads of one block waited at different barriers."""
_OUT_OF_MEMORY = 0x7E5A0002


def block_driver(name: str, stepped: SteppedFunction, parameter_types: tuple[str, ...],
                 per_block: tuple[int, ...]) -> str:
    """LLVM text of the driver `name` for `stepped` (see the module docstring).

    `parameter_types`: the per-thread function's parameters (retptr and excinfo first; the driver
    makes its own); `per_block`: positions of the shared-memory buffers it allocates per block.
    """
    frame = stepped.frame_bytes
    parameters = ", ".join(f"{t} %p{i}" for i, t in enumerate(parameter_types))
    arguments = []
    for index, ty in enumerate(parameter_types):
        if index == 0:
            arguments.append("ptr %retptr")
        elif index == 1:
            arguments.append("ptr %excinfo")
        elif index in per_block:
            arguments.append(f"ptr %buffer{per_block.index(index)}")
        else:
            arguments.append(f"{ty} %p{index}")
    call_arguments = ", ".join(["i32 %state", "ptr %frame", "ptr %context", *arguments])
    buffers = "\n".join(f"  %buffer{k} = call ptr @malloc(i64 %buffer.bytes)" for k in range(len(per_block)))
    zero = "\n".join(f"  call void @llvm.memset.p0.i64(ptr %buffer{k}, i8 0, i64 %shared.bytes, i1 false)"
                     for k in range(len(per_block)))
    free = "\n".join(f"  call void @free(ptr %buffer{k})" for k in range(len(per_block)))
    field = "\n".join(f"  %f{i}.p = getelementptr i64, ptr %launch, i64 {i}\n  %f{i} = load i64, ptr %f{i}.p"
                      for i in range(8))
    return f"""
define i32 @"{name}"(i64 %first, i64 %last, ptr %launch, {parameters}) {{
entry:
  %retptr = alloca [16 x i8], align 16
  %excinfo = alloca ptr, align 8
  %context = alloca [13 x i32], align 16
{field}
  %threads.xy = mul i64 %f3, %f4
  %threads = mul i64 %threads.xy, %f5
  %blocks.xy = mul i64 %f0, %f1
  %shared.bytes = add i64 %f6, 0
  %buffer.bytes = add i64 %f6, 16
  %frames = call ptr @calloc(i64 %threads, i64 {frame})
{buffers}
  %c3 = getelementptr i32, ptr %context, i64 3
  %c4 = getelementptr i32, ptr %context, i64 4
  %c5 = getelementptr i32, ptr %context, i64 5
  %c9 = getelementptr i32, ptr %context, i64 9
  %c10 = getelementptr i32, ptr %context, i64 10
  %c11 = getelementptr i32, ptr %context, i64 11
  %bx32 = trunc i64 %f3 to i32
  %by32 = trunc i64 %f4 to i32
  %bz32 = trunc i64 %f5 to i32
  %gx32 = trunc i64 %f0 to i32
  %gy32 = trunc i64 %f1 to i32
  %gz32 = trunc i64 %f2 to i32
  store i32 %bx32, ptr %c3
  store i32 %by32, ptr %c4
  store i32 %bz32, ptr %c5
  store i32 %gx32, ptr %c9
  store i32 %gy32, ptr %c10
  store i32 %gz32, ptr %c11
  %c12 = getelementptr i32, ptr %context, i64 12
  %dynamic32 = trunc i64 %f7 to i32
  store i32 %dynamic32, ptr %c12
  %no.frames = icmp eq ptr %frames, null
  br i1 %no.frames, label %exit, label %blocks

blocks:
  %block = phi i64 [ %first, %entry ], [ %block.next, %block.done ]
  %more.blocks = icmp slt i64 %block, %last
  br i1 %more.blocks, label %block.start, label %exit

block.start:
  %ctaid.x = urem i64 %block, %f0
  %block.yz = udiv i64 %block, %f0
  %ctaid.y = urem i64 %block.yz, %f1
  %ctaid.z = udiv i64 %block, %blocks.xy
  %cx = trunc i64 %ctaid.x to i32
  %cy = trunc i64 %ctaid.y to i32
  %cz = trunc i64 %ctaid.z to i32
  %c6 = getelementptr i32, ptr %context, i64 6
  %c7 = getelementptr i32, ptr %context, i64 7
  %c8 = getelementptr i32, ptr %context, i64 8
  store i32 %cx, ptr %c6
  store i32 %cy, ptr %c7
  store i32 %cz, ptr %c8
{zero}
  br label %reset

reset:
  %reset.thread = phi i64 [ 0, %block.start ], [ %reset.next, %reset ]
  %reset.frame.offset = mul i64 %reset.thread, {frame}
  %reset.frame = getelementptr i8, ptr %frames, i64 %reset.frame.offset
  %reset.state = getelementptr i8, ptr %reset.frame, i64 4
  store i32 0, ptr %reset.state
  %reset.next = add i64 %reset.thread, 1
  %reset.more = icmp slt i64 %reset.next, %threads
  br i1 %reset.more, label %reset, label %round

round:
  br label %thread

thread:
  %t = phi i64 [ 0, %round ], [ %t.next, %thread.next ]
  %waiting = phi i1 [ false, %round ], [ %waiting.next, %thread.next ]
  %barrier = phi i32 [ 0, %round ], [ %barrier.next, %thread.next ]
  %frame.offset = mul i64 %t, {frame}
  %frame = getelementptr i8, ptr %frames, i64 %frame.offset
  %state.slot = getelementptr i8, ptr %frame, i64 4
  %state = load i32, ptr %state.slot
  %done = icmp slt i32 %state, 0
  br i1 %done, label %thread.next, label %thread.run

thread.run:
  %tid.x = urem i64 %t, %f3
  %t.yz = udiv i64 %t, %f3
  %tid.y = urem i64 %t.yz, %f4
  %tid.z = udiv i64 %t, %threads.xy
  %tx = trunc i64 %tid.x to i32
  %ty = trunc i64 %tid.y to i32
  %tz = trunc i64 %tid.z to i32
  store i32 %tx, ptr %context
  %c1 = getelementptr i32, ptr %context, i64 1
  %c2 = getelementptr i32, ptr %context, i64 2
  store i32 %ty, ptr %c1
  store i32 %tz, ptr %c2
  %stopped = call i32 @"{stepped.step.name}"({call_arguments})
  %finished.thread = icmp eq i32 %stopped, 0
  br i1 %finished.thread, label %thread.end, label %thread.wait

thread.end:
  store i32 -1, ptr %state.slot
  %status = load i32, ptr %frame
  %status.ok = icmp eq i32 %status, 0
  %status.none = icmp eq i32 %status, -2
  %status.fine = or i1 %status.ok, %status.none
  br i1 %status.fine, label %thread.next, label %exit

thread.wait:
  store i32 %stopped, ptr %state.slot
  %first.waiter = icmp eq i32 %barrier, 0
  %same.barrier = icmp eq i32 %barrier, %stopped
  %agrees = or i1 %first.waiter, %same.barrier
  br i1 %agrees, label %thread.next, label %exit

thread.next:
  %waiting.next = phi i1 [ %waiting, %thread ], [ %waiting, %thread.end ], [ true, %thread.wait ]
  %barrier.next = phi i32 [ %barrier, %thread ], [ %barrier, %thread.end ], [ %stopped, %thread.wait ]
  %t.next = add i64 %t, 1
  %more.threads = icmp slt i64 %t.next, %threads
  br i1 %more.threads, label %thread, label %round.end

round.end:
  %again = phi i1 [ %waiting.next, %thread.next ]
  br i1 %again, label %round, label %block.done

block.done:
  %block.next = add i64 %block, 1
  br label %blocks

exit:
  ; every block finished, a thread failed, threads waited at different barriers, or no frames
  %result = phi i32 [ 0, %blocks ], [ %status, %thread.end ],
                    [ {DIVERGENT_BARRIER}, %thread.wait ], [ {_OUT_OF_MEMORY}, %entry ]
  call void @free(ptr %frames)
{free}
  ret i32 %result
}}
"""


DRIVER_DECLARATIONS = """
declare ptr @malloc(i64)
declare ptr @calloc(i64, i64)
declare void @free(ptr)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
"""


def grid_shape(dimensions, what: str) -> tuple[int, int, int]:
    """An int or a tuple of up to three positive ints, as (x, y, z)."""
    values = (dimensions,) if isinstance(dimensions, (int, np.integer)) else tuple(dimensions)
    if not 1 <= len(values) <= 3 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in values):
        raise ValueError(f"{what} must be a positive int or a tuple of 1 to 3 positive ints, got {dimensions!r}")
    return tuple(int(v) for v in values) + (1,) * (3 - len(values))


def worker_count(blocks: int) -> int:
    """CPU threads for `blocks` blocks: numba's thread count (numba.set_num_threads holds)."""
    try:
        import numba
        threads = numba.get_num_threads()
    except Exception:
        threads = os.cpu_count() or 1
    return max(1, min(blocks, threads))


_POOL: list = [None, 0]
"""The thread pool launches share (a time loop launches thousands of times) and its size."""


def _pool(workers: int) -> ThreadPoolExecutor:
    if _POOL[1] < workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=False)
        _POOL[0], _POOL[1] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enzpy-cuda"), workers
    return _POOL[0]


def run_grid(driver, grid, block, shared_bytes: int, parameters_for, dynamic_shared: int = 0) -> None:
    """Run every block through `driver` (a ctypes function), on `worker_count` threads.

    `parameters_for(worker)` gives the parameters after the launch pointer for one worker (each
    worker may get its own accumulators)."""
    launch = (ctypes.c_int64 * 8)(*grid, *block, shared_bytes, dynamic_shared)
    blocks = grid[0] * grid[1] * grid[2]
    workers = worker_count(blocks)
    bounds = [blocks * k // workers for k in range(workers + 1)]
    calls = [(bounds[k], bounds[k + 1], parameters_for(k)) for k in range(workers)]
    if workers == 1:
        statuses = [driver(calls[0][0], calls[0][1], launch, *calls[0][2])]
    else:
        statuses = list(_pool(workers).map(lambda c: driver(c[0], c[1], launch, *c[2]), calls))
    for status in statuses:
        if status == DIVERGENT_BARRIER:
            raise KernelError("threads of one block waited at different barriers (cuda.syncthreads in "
                              "code that not every thread of the block reaches alike)")
        if status == _OUT_OF_MEMORY:
            raise MemoryError("no memory for the threads' frames of a block")
        if status != 0:
            raise KernelError(f"the kernel failed with status {status}")


__all__ = ["FRAME_HEADER", "block_driver", "grid_shape", "run_grid"]
