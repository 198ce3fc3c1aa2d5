"""Checkpointing long time loops: snapshots at the steps a schedule picks, recomputation
in the reverse sweep (Revolve, periodic and online schedules; memory or disk).

`checkpointed(step, steps, schedule=...)` checkpoints a loop written in Python
around a numba step kernel (`loop.py`); the schedules (`schedules.py`) come
from the `checkpoint_schedules` library, followed by `driver.py`, with
snapshots kept by `storage.py`.
"""

from .loop import CheckpointedLoop, checkpointed  # noqa: F401
from .schedules import Online, Periodic, Revolve, binomial_recomputations  # noqa: F401
