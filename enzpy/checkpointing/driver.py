"""Follow a checkpointing schedule's actions over a loop of steps.

The loop is described by three callbacks: `advance(k)` runs step k of the
primal on the work state, `reverse(k)` runs the adjoint of step k (the work
state holds the state at the start of step k, as it was in the first
sweep), and `ended(k)` says whether a loop of unknown length stops before
step k. The work state is a list of arrays updated in place; snapshots copy
them (`storage.Snapshots`), and the state of every step a `Forward` marks
for the adjoint is kept until its `Reverse`.

Action semantics (the `checkpoint_schedules` library's): Forward(n0, n1,
write_ics, write_adj_deps, storage) advances over steps n0..n1-1, first
storing the state at n0 when `write_ics`; Reverse(n1, n0) runs the adjoints of
steps n1-1 down to n0; Copy / Move(n, from, to) load snapshot n into the work
state (Move drops it); EndForward ends the first sweep, EndReverse the last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from checkpoint_schedules import Copy, EndForward, EndReverse, Forward, Move, Reverse, StorageType

from .storage import Snapshots


@dataclass
class LoopReport:
    """What the last checkpointed gradient did (`explain`)."""

    schedule: str
    """The schedule spec, e.g. Revolve(snapshots=20)."""
    steps: int = 0
    """The loop's length."""
    forward_steps: int = 0
    """Primal steps run, the first sweep included (the adjoint steps' own primal work excluded)."""
    reverse_steps: int = 0
    snapshot_bytes: int = 0
    """Bytes of one snapshot (the state the step writes)."""
    peak_snapshots: int = 0
    """The most snapshots held at once (memory and disk)."""
    peak_memory_bytes: int = 0
    """The most bytes held in memory at once by snapshots and by states kept for adjoint steps."""
    peak_disk_bytes: int = 0
    disk_writes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def recomputed_steps(self) -> int:
        return self.forward_steps - self.steps

    def __str__(self) -> str:
        lines = [f"checkpointed loop: {self.schedule}, {self.steps} steps",
                 f"  forward steps run: {self.forward_steps} ({self.recomputed_steps} recomputed), "
                 f"reverse steps: {self.reverse_steps}",
                 f"  one snapshot: {self.snapshot_bytes} bytes; at most {self.peak_snapshots} held, "
                 f"{self.peak_memory_bytes} bytes in memory" +
                 (f", {self.peak_disk_bytes} bytes on disk ({self.disk_writes} files written)"
                  if self.disk_writes else "")]
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def follow(actions, state: list[np.ndarray], advance: Callable[[int], None], reverse: Callable[[int], None],
           snapshots: Snapshots, report: LoopReport, steps: int | None,
           ended: Callable[[int], bool] | None = None, storage_of=lambda storage: storage,
           forward_done: Callable[[], None] = lambda: None) -> int:
    """Run the schedule; returns the loop's length. `steps` None: the loop ends when `ended(k)`
    says so, and the schedule is told then (`finalize`). `storage_of` maps the schedule's
    storage kinds onto what the user chose (an online schedule's DISK level kept in memory);
    `forward_done()` runs when the first sweep has reached the end."""
    kept: dict[int, list[np.ndarray]] = {}
    kept_bytes = 0
    one = sum(a.nbytes for a in state)
    report.snapshot_bytes = one
    length = steps
    for action in actions:
        if isinstance(action, Forward):
            for k in range(action.n0, action.n1):
                if length is None and ended(k):
                    length = k
                    actions.finalize(k)
                    break
                if length is not None and k >= length:
                    break
                if k == action.n0 and action.write_ics:
                    snapshots.write(k, storage_of(action.storage), state)
                if action.write_adj_deps:
                    kept[k] = [a.copy() for a in state]
                    kept_bytes += one
                report.peak_memory_bytes = max(report.peak_memory_bytes, snapshots.bytes_in_memory + kept_bytes)
                advance(k)
                report.forward_steps += 1
        elif isinstance(action, Reverse):
            for k in range(action.n1 - 1, action.n0 - 1, -1):
                for saved, array in zip(kept[k], state):
                    array[...] = saved
                reverse(k)
                report.reverse_steps += 1
                if action.clear_adj_deps:
                    del kept[k]
                    kept_bytes -= one
        elif isinstance(action, (Copy, Move)):
            snapshots.read(action.n, storage_of(action.from_storage), state, delete=isinstance(action, Move))
        elif isinstance(action, EndForward):
            forward_done()                  # the work state is the loop's final state
        elif isinstance(action, EndReverse):
            break
        if isinstance(action, Reverse) and action.n0 == 0:
            break                           # online schedules never end on their own
    report.steps = length or 0
    report.peak_snapshots = snapshots.peak_count
    report.peak_disk_bytes = snapshots.peak_bytes_on_disk
    report.disk_writes = snapshots.disk_writes
    return report.steps


__all__ = ["LoopReport", "follow", "StorageType"]
