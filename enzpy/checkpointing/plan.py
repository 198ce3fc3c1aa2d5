"""A schedule, for a loop of n steps, as the operations the generated driver follows.

The driver (`generated.py`) runs in the gradient's own code; it asks for its
plan once per run of the loop, when n is known, through a C callback
(`enzpy_checkpoint_plan`, registered with LLVM under that name). The plan
is an int64 array:

    [operations, memory slots, most pending frames, 0, disk slots, 0, 0, 0,
     then (operation, a, b) per operation]

The last memory slot keeps the loop's final state (saved at END_FORWARD,
loaded at END), so that the arrays the loop wrote end as the primal leaves
them, not as the recomputation left them.

with the operations

    ADVANCE a b     the primal step for steps a..b-1
    AUGMENT a b     the step's augmented forward for steps a..b-1 (their frames kept)
    REVERSE a b     the step's reverse function for steps b-1 down to a (frames used up)
    SAVE s / LOAD s the state into / from memory snapshot slot s
    SAVE_DISK s / LOAD_DISK s   the same, with a file of the run's folder (`storage.py`)
    END_FORWARD     the first sweep ends here (the augmented forward returns)
    END             the last

made from the `checkpoint_schedules` action stream exactly as
`driver.follow` follows it for Python-level loops, so both ways recompute the
same steps. Plans are kept per (loop, n): building a binomial schedule is
Python work (seconds for 10^5 steps).
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np
from checkpoint_schedules import Copy, EndForward, EndReverse, Forward, Move, Reverse, StorageType

from .driver import LoopReport
from .marker import schedule_number, schedule_of

END, ADVANCE, AUGMENT, REVERSE, SAVE, LOAD, END_FORWARD, SAVE_DISK, LOAD_DISK = range(9)
FINAL_SLOT = -1
"""Stands for the memory slot after the schedule's own, which keeps the loop's final state."""
HEADER = 8
"""int64 fields before the operations."""
PLAN_SYMBOL = "enzpy_checkpoint_plan"


@dataclass
class Plan:
    """One loop length's operations and what following them costs."""

    operations: np.ndarray
    """The int64 array the driver reads (header, then triples)."""
    report: LoopReport
    """Steps run and recomputed, snapshots held (bytes filled in per run)."""


def plan_operations(schedule, steps: int) -> Plan:
    """Lower `schedule`'s actions for `steps` steps into driver operations."""
    report = LoopReport(schedule=repr(schedule), steps=max(steps, 0))
    operations: list[tuple[int, int, int]] = []
    if steps <= 0:
        return _plan(operations + [(END_FORWARD, 0, 0), (END, 0, 0)], 0, 0, 0, report)
    storage_of = getattr(schedule, "storage_of", lambda storage: storage)
    slots: dict[tuple[int, bool], int] = {}
    free: dict[bool, list[int]] = {False: [], True: []}
    used = {False: 0, True: 0}
    pending = most_pending = 0
    finalized = schedule.needs_length_upfront
    actions = schedule.actions(steps)

    def slot_of(step: int, storage, new: bool) -> tuple[int, bool]:
        on_disk = storage_of(storage) == StorageType.DISK
        if new:
            if free[on_disk]:
                slots[step, on_disk] = free[on_disk].pop()
            else:
                slots[step, on_disk] = used[on_disk]
                used[on_disk] += 1
        return slots[step, on_disk], on_disk

    for action in actions:
        if isinstance(action, Forward):
            stop = min(action.n1, steps)
            if action.n0 < stop:
                if action.write_ics:
                    slot, on_disk = slot_of(action.n0, action.storage, new=True)
                    operations.append((SAVE_DISK if on_disk else SAVE, slot, 0))
                kind = AUGMENT if action.write_adj_deps else ADVANCE
                operations.append((kind, action.n0, stop))
                report.forward_steps += stop - action.n0
                if action.write_adj_deps:
                    pending += stop - action.n0
                    most_pending = max(most_pending, pending)
            if not finalized and action.n1 >= steps:
                actions.finalize(steps)        # an online schedule learns the length when the loop ends
                finalized = True
        elif isinstance(action, Reverse):
            operations.append((REVERSE, action.n0, action.n1))
            report.reverse_steps += action.n1 - action.n0
            pending -= action.n1 - action.n0
        elif isinstance(action, (Copy, Move)):
            if action.to_storage != StorageType.WORK:
                raise NotImplementedError(f"checkpoint_range: the schedule copies snapshots between "
                                          f"storages ({action}); only loads into the work state are supported")
            slot, on_disk = slot_of(action.n, action.from_storage, new=False)
            operations.append((LOAD_DISK if on_disk else LOAD, slot, 0))
            if isinstance(action, Move):
                free[on_disk].append(slot)
                del slots[action.n, on_disk]
        elif isinstance(action, EndForward):
            # The loop's final state, put back at the end: the kernel's arrays end as the primal leaves them.
            operations.extend([(SAVE, FINAL_SLOT, 0), (END_FORWARD, 0, 0)])
        elif isinstance(action, EndReverse):
            break
        if isinstance(action, Reverse) and action.n0 == 0:
            break                               # online schedules never end on their own
    operations.extend([(LOAD, FINAL_SLOT, 0), (END, 0, 0)])
    report.peak_snapshots = used[False] + used[True]
    final = used[False]
    operations = [(kind, final if kind in (SAVE, LOAD) and a == FINAL_SLOT else a, b) for kind, a, b in operations]
    return _plan(operations, used[False] + 1, most_pending, used[True], report)


def _plan(operations, memory_slots, most_pending, disk_slots, report) -> Plan:
    array = np.zeros(HEADER + 3 * len(operations), dtype=np.int64)
    array[:5] = [len(operations), memory_slots, most_pending, 0, disk_slots]     # (3: unused)
    array[HEADER:] = np.asarray(operations, dtype=np.int64).reshape(-1)
    return Plan(array, report)


# ---------------------------------------------------------------- the callback

@dataclass
class LoopEntry:
    """A checkpointed loop some compiled gradient contains."""

    schedule_number: int
    loop_function: str
    """The loop function's name: the same for every compile of one kernel's loop."""

    @property
    def last_report(self) -> LoopReport | None:
        """What the last run of this loop (of any compile of its kernel) did."""
        return LAST_RUNS.get(self.loop_function)


LAST_RUNS: dict[str, LoopReport] = {}
"""The report of each loop's last run, by loop function name."""


_LOOPS: list[LoopEntry] = []
_PLANS: "OrderedDict[tuple[int, int], Plan]" = OrderedDict()
_KEPT_PLANS = 64
"""Plans kept for reuse (a running driver holds its own reference: see `_RUNNING`)."""
_LOCK = threading.Lock()


def register_loop(schedule_number: int, loop_function: str) -> int:
    """The number a generated driver passes to the callback for this loop."""
    with _LOCK:
        _LOOPS.append(LoopEntry(schedule_number, loop_function))
        return len(_LOOPS) - 1


def loop_entry(number: int) -> LoopEntry:
    return _LOOPS[number]


def cached_plan(schedule, steps: int) -> Plan:
    """The plan of `schedule` (an int or a spec, as `checkpoint_range` takes) for `steps` steps,
    built on first need. Building costs Python time and memory (the library's schedule: about
    18 MB and 0.3 s for Revolve(20) over 20,000 steps); a gradient that runs again with the same
    length reuses it, and calling this first takes the cost out of the first gradient."""
    return _cached_plan(schedule_number(schedule), steps)


def _cached_plan(number: int, steps: int) -> Plan:
    key = (number, steps)
    with _LOCK:
        plan = _PLANS.pop(key, None)
        if plan is None:
            plan = plan_operations(schedule_of(key[0]), steps)
        _PLANS[key] = plan
        while len(_PLANS) > _KEPT_PLANS:
            _PLANS.popitem(last=False)
    return plan


PLAN_FAILED = -72
"""Status of a driver whose plan could not be built; `raise_plan_failure` raises why."""
_FAILURES: list[BaseException] = []


def raise_plan_failure() -> None:
    """Raise the exception building a driver's plan raised (jit.py, on status PLAN_FAILED)."""
    error = _FAILURES.pop() if _FAILURES else RuntimeError("building a checkpoint plan failed")
    _FAILURES.clear()
    raise error


def _plan_for(loop: int, steps: int, regions: int) -> int:
    # An exception must not cross into generated code: it is kept, and the driver returns PLAN_FAILED.
    try:
        return _plan_address(loop, steps, regions)
    except BaseException as error:          # noqa: BLE001 (re-raised by raise_plan_failure)
        _FAILURES.append(error)
        return 0


def _plan_address(loop: int, steps: int, regions: int) -> int:
    entry = _LOOPS[loop]
    plan = _cached_plan(entry.schedule_number, steps)
    count = ctypes.c_int64.from_address(regions).value
    sizes = np.ctypeslib.as_array((ctypes.c_int64 * (2 * count)).from_address(regions + 8))[1::2]
    snapshot_bytes = int(sizes.sum())
    operations = plan.operations
    report = LoopReport(**{**plan.report.__dict__, "notes": list(plan.report.notes)})
    report.snapshot_bytes = snapshot_bytes
    report.peak_memory_bytes = snapshot_bytes * int(operations[1])
    report.peak_disk_bytes = snapshot_bytes * int(operations[4])
    LAST_RUNS[entry.loop_function] = report
    with _LOCK:
        held, count = _RUNNING.get(operations.ctypes.data, (operations, 0))
        _RUNNING[operations.ctypes.data] = (held, count + 1)
    return operations.ctypes.data


_RUNNING: dict[int, tuple[np.ndarray, int]] = {}
"""Plans handed to drivers still running, by address, with how many hold each: a plan the cache
drops stays alive while a driver follows it."""


def release_plan(address: int) -> None:
    with _LOCK:
        held, count = _RUNNING.pop(address, (None, 0))
        if count > 1:
            _RUNNING[address] = (held, count - 1)


_PLAN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)(
    lambda loop, steps, regions: _plan_for(loop, steps, regions))
_RELEASE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda address: release_plan(address))
RELEASE_SYMBOL = "enzpy_checkpoint_release"

llvm.add_symbol(PLAN_SYMBOL, ctypes.cast(_PLAN_CALLBACK, ctypes.c_void_p).value)
llvm.add_symbol(RELEASE_SYMBOL, ctypes.cast(_RELEASE_CALLBACK, ctypes.c_void_p).value)


# ---------------------------------------------------------------- disk snapshots

DISK_SYMBOL = "enzpy_checkpoint_disk"
SAVE_FILE, LOAD_FILE, REMOVE_FILES = 0, 1, 2
_DISK_RUNS: dict[int, str] = {}
"""Folder of each running driver that wrote disk snapshots, by its record's address."""


def _disk(operation: int, record: int, loop: int, slot: int, regions: int) -> None:
    import os
    import shutil
    import tempfile

    if operation == REMOVE_FILES:
        folder = _DISK_RUNS.pop(record, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if record not in _DISK_RUNS:
        directory = getattr(schedule_of(_LOOPS[loop].schedule_number), "directory", None)
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        _DISK_RUNS[record] = tempfile.mkdtemp(prefix="enzpy-checkpoints-", dir=directory)
    path = os.path.join(_DISK_RUNS[record], f"snapshot{slot}.bin")
    count = ctypes.c_int64.from_address(regions).value
    fields = (ctypes.c_int64 * (2 * count)).from_address(regions + 8)
    pieces = [(fields[2 * i], fields[2 * i + 1]) for i in range(count)]
    if operation == SAVE_FILE:
        with open(path, "wb") as file:
            for address, size in pieces:
                file.write(ctypes.string_at(address, size))
        if _LOOPS[loop].last_report is not None:
            _LOOPS[loop].last_report.disk_writes += 1
    else:
        with open(path, "rb") as file:
            for address, size in pieces:
                ctypes.memmove(address, file.read(size), size)


def left_over_snapshots() -> bool:
    """Whether some driver's disk snapshots are still there (its run did not end)."""
    return bool(_DISK_RUNS)


def remove_left_over_snapshots() -> None:
    """Remove the snapshot folders of drivers that never reached their end (the kernel raised
    between the sweeps); called after every gradient call."""
    for record in list(_DISK_RUNS):
        _disk(REMOVE_FILES, record, 0, 0, 0)


_DISK_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                  ctypes.c_void_p)(lambda *a: _disk(*(x or 0 for x in a)))
llvm.add_symbol(DISK_SYMBOL, ctypes.cast(_DISK_CALLBACK, ctypes.c_void_p).value)
