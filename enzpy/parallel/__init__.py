"""prange loops: how numba launches them, and how enzpy differentiates them.

`launches` finds each parallel launch in a captured module (numba's
launcher -> `numba_parallel_for` -> gufunc -> body chain), describes it as a
`ParallelLoop` and turns it into a *loop function* the AD differentiates
across; `derivatives` runs the derivatives of those loop functions on numba's
threading layer again.
"""

from .derivatives import run_derivatives_in_parallel
from .launches import ParallelLoop, find_parallel_loops, is_loop_function, run_loops_in_place

__all__ = ["ParallelLoop", "find_parallel_loops", "is_loop_function", "run_derivatives_in_parallel",
           "run_loops_in_place"]
