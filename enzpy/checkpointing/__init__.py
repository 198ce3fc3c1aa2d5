"""Checkpointing long time loops: snapshots at the steps a schedule picks, recomputation
in the reverse sweep (Revolve, periodic and online schedules; memory or disk).

Two ways in, the same schedules (`schedules.py`, from the `checkpoint_schedules`
library):

- `checkpointed(step, steps, schedule=...)` checkpoints a loop written in
  Python around a numba step kernel (`loop.py`, followed by `driver.py`, with
  snapshots kept by `storage.py`). It is imported by `enzpy` itself, not here:
  it builds on the API, which builds on this package.
- `checkpoint_range(n, schedule)` inside a kernel (`marker.py`): the pre-AD
  pass `outline.py` cuts the loop into a step function, and `generated.py`
  runs the step's derivative as the schedule says, in generated code
  (`plan.py` turns the schedule into the operations it follows).
"""

from .marker import checkpoint_range  # noqa: F401
from .schedules import Online, Periodic, Revolve, binomial_recomputations  # noqa: F401
