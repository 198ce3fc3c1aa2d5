"""prange loops: how numba launches them, and how enzpy differentiates them.

`launches` finds each parallel launch in a captured module (numba's
launcher -> `numba_parallel_for` -> gufunc -> body chain) and describes it as
a `ParallelLoop`; the AD then sees the loop itself instead of a runtime call.
"""

from .launches import ParallelLoop, find_parallel_loops, run_loops_in_place

__all__ = ["ParallelLoop", "find_parallel_loops", "run_loops_in_place"]
