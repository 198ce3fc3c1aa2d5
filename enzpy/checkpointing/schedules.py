"""Checkpointing schedules: which steps' states are kept, where, and what is recomputed.

A schedule is chosen with one of the small specs below and turned, for a loop
of `n` steps, into the action stream of the `checkpoint_schedules` library
(Forward, Reverse, Copy, Move, EndForward, EndReverse), which
`checkpointing.driver` follows:

- `Revolve(snapshots, disk_snapshots=0)`: binomial checkpointing, the fewest
  recomputed steps for the given number of snapshots (Griewank and Walther's
  bound). The library's `MultistageCheckpointSchedule` is used: it is optimal
  and fast to build, unlike its `Revolve` class (seconds for 10^3 steps).
  With `disk_snapshots`, that many more snapshots go to disk.
- `Periodic(every)`: a snapshot every `every` steps; the reverse sweep re-runs
  one period at a time, keeping its states. Written here (the library has no
  plain periodic schedule); it emits the same actions.
- `Online(snapshots, period)`: for loops whose length is known only when they
  end (`while` loops): a snapshot every `period` steps during the forward
  sweep, then binomial checkpointing with `snapshots` more between them (the
  library's `TwoLevelCheckpointSchedule`).

`directory=` on any of them puts the disk snapshots there (Revolve's
`disk_snapshots`, every snapshot of Periodic and of Online's periodic level);
the files are removed when the gradient returns or raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

from checkpoint_schedules import (Copy, EndForward, EndReverse, Forward, MultistageCheckpointSchedule, Reverse,
                                  StorageType, TwoLevelCheckpointSchedule)


@dataclass(frozen=True)
class Revolve:
    """Binomial checkpointing with `snapshots` states kept in memory (and `disk_snapshots` on disk).

    It recomputes the fewest steps for its snapshots: `binomial_recomputations`.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, Revolve, checkpointed
    >>> @numba.njit
    ... def step(u, rate):
    ...     u *= 1.0 - rate                          # the state u, in place
    >>> from enzpy.checkpointing import binomial_recomputations
    >>> Revolve(4)
    Revolve(snapshots=4, disk_snapshots=0, directory=None)
    >>> loop = checkpointed(step, 100, schedule=Revolve(4))
    >>> (drate,) = loop.autodiff(Duplicated(np.ones(2), np.ones(2)), Active(0.01))
    >>> loop.report.recomputed_steps, binomial_recomputations(100, 4), loop.report.peak_snapshots
    (374, 374, 4)
    """

    snapshots: int
    """States kept in memory at once (at least 1)."""
    disk_snapshots: int = 0
    """More states kept on disk, in `directory` (a temporary folder when None)."""
    directory: str | None = None
    """Where disk snapshots are written."""

    needs_length_upfront = True

    def actions(self, steps: int):
        _check_positive(self.snapshots, "Revolve's snapshots")
        return MultistageCheckpointSchedule(steps, self.snapshots, self.disk_snapshots)

    @property
    def uses_disk(self) -> bool:
        return self.disk_snapshots > 0


@dataclass(frozen=True)
class Periodic:
    """A snapshot every `every` steps; the reverse sweep re-runs one period at a time.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, Periodic, checkpointed
    >>> @numba.njit
    ... def step(u, rate):
    ...     u *= 1.0 - rate                          # the state u, in place
    >>> loop = checkpointed(step, 6, schedule=Periodic(3))      # snapshots of steps 0 and 3
    >>> u, du = np.array([1.0, 2.0]), np.ones(2)
    >>> loop.autodiff(Duplicated(u, du), Active(0.5))
    [-0.5625]
    >>> du
    array([0.015625, 0.015625])
    >>> loop.report.peak_snapshots
    2
    """

    every: int
    """Steps between snapshots (the states of one period are kept in the reverse sweep)."""
    directory: str | None = None
    """If given, the snapshots are written there instead of kept in memory."""

    needs_length_upfront = True

    def actions(self, steps: int):
        _check_positive(self.every, "Periodic's every")
        storage = StorageType.DISK if self.directory is not None else StorageType.RAM
        return _periodic_actions(steps, self.every, storage)

    @property
    def uses_disk(self) -> bool:
        return self.directory is not None


@dataclass(frozen=True)
class Online:
    """For loops of unknown length: a snapshot every `period` steps, then binomial
    checkpointing between them with `snapshots` more.

    The only schedule for `checkpointed(step, until=...)`, a loop that ends when `until` says so.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, Online, checkpointed
    >>> @numba.njit
    ... def step(u, rate):
    ...     u *= 1.0 - rate                          # the state u, in place
    >>> def small(u, rate):
    ...     return u[0] < 0.1                            # checked before each step
    >>> loop = checkpointed(step, until=small, schedule=Online(2, period=2))
    >>> u, du = np.array([1.0, 2.0]), np.ones(2)
    >>> loop.autodiff(Duplicated(u, du), Active(0.5))
    [-1.5]
    >>> loop.report.steps, du, u
    (4, array([0.0625, 0.0625]), array([0.0625, 0.125 ]))
    """

    snapshots: int
    """States kept in memory between two periodic snapshots during the reverse sweep."""
    period: int = 100
    """Steps between the snapshots taken while the loop runs."""
    directory: str | None = None
    """If given, the periodic snapshots are written there instead of kept in memory."""

    needs_length_upfront = False
    """The driver tells this schedule the loop's length when the loop ends (`finalize`)."""

    def actions(self, steps: int | None = None):
        _check_positive(self.period, "Online's period")
        return TwoLevelCheckpointSchedule(self.period, self.snapshots, binomial_storage=StorageType.RAM)

    @property
    def uses_disk(self) -> bool:
        return self.directory is not None

    def storage_of(self, storage: StorageType) -> StorageType:
        """The library writes the periodic level to DISK; without a directory enzpy keeps it in memory."""
        return storage if storage != StorageType.DISK or self.directory is not None else StorageType.RAM


Schedule = Revolve | Periodic | Online


def _check_positive(value: int, what: str) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def _periodic_actions(steps: int, every: int, storage: StorageType):
    starts = list(range(0, steps, every))
    for start in starts:
        yield Forward(start, min(start + every, steps), True, False, storage)
    yield EndForward()
    for start in reversed(starts):
        stop = min(start + every, steps)
        yield Copy(start, storage, StorageType.WORK)
        yield Forward(start, stop, False, True, StorageType.WORK)
        yield Reverse(stop, start, True)
    yield EndReverse()


def binomial_recomputations(steps: int, snapshots: int) -> int:
    """Griewank and Walther's fewest forward steps beyond the first sweep, for `steps`
    steps and `snapshots` snapshots: r n - C(s + r, s + 1), with r the least integer
    such that C(s + r, s) >= n (the repetition number)."""
    if steps <= 1:
        return 0
    repetitions = 0
    while comb(snapshots + repetitions, snapshots) < steps:
        repetitions += 1
    return repetitions * steps - comb(snapshots + repetitions, snapshots + 1)
