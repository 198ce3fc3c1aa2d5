"""The record type that describes one kernel of the corpus."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    """One numerical kernel together with a recipe for its arguments."""

    name: str
    """Unique snake_case identifier, used as the pytest id."""

    func: Callable
    """The kernel: a numba dispatcher (`@numba.njit`) or a plain Python
    function that the frontend compiles with `numba.njit` itself."""

    make_args: Callable[[np.random.Generator], tuple]
    """Builds the arguments deterministically from the generator, with new
    arrays on every call so that in-place kernels never share state."""

    sig: str | None = None
    """Numba signature string such as "float64(float64[::1], int64)";
    None lets numba infer the types (and array layouts) from the arguments."""

    tags: frozenset[str] = frozenset()
    """Features the kernel exercises, e.g. "loop", "while", "2d", "strided", "large"
    (tens of thousands of lines of numba IR: the unoptimized-AD variants skip it),
    "float32", "inplace"; used to select subsets of the corpus."""

    constant_arguments: tuple[int, ...] = ()
    """Positions of float arguments that are parameters of an algorithm
    (tolerances, bracket ends of a bisection) rather than inputs: the
    result is piecewise constant in them, so derivative tests hold them
    fixed instead of comparing against finite differences across a jump."""

    @property
    def python_function(self) -> Callable:
        """The undecorated Python function of the kernel."""
        return getattr(self.func, "py_func", self.func)
