"""The benchmark problems: each module gives instances of one problem family.

An instance carries its data (generated with a fixed seed) and knows how to
build every contender on it: the numba primal, enzpy's gradient (optimized or
not), and idiomatic JAX and PyTorch versions. It also gives a plain NumPy
objective, to check the numba kernel before anything is timed, and a flat
view of its differentiated inputs, so the harness can check every gradient
against finite differences without knowing the problem.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

SEED = 20240601
"""Every instance is generated from this seed, so runs are comparable."""

SCALES = ("tiny", "quick", "full")
"""tiny: the test suite's smoke sizes; quick: `--quick`; full: the default run."""


@dataclass
class Contender:
    """One way of computing the gradient (or the Jacobian), ready to be timed."""

    call: Callable[[], object]
    """One evaluation; its first call compiles. Returns whatever is cheapest to return."""
    gradient_of: Callable[[object], np.ndarray]
    """The flat float64 gradient from a call's result (done outside the timing)."""
    value_of: Callable[[object], object] | None = None
    """The objective value from a call's result, when the contender returns it."""


class Instance(ABC):
    """One problem at one size."""

    family: str = ""
    """Row group: GMM, BA, LSTM, Burgers, ODE."""
    adbench: bool = False
    """Counts towards the ADBench targets."""
    gradient_kind: str = "gradient"
    """What the gradient columns compute (BA: the sparse Jacobian)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """Size, e.g. "d=10 K=25"."""

    @abstractmethod
    def numpy_objective(self):
        """The objective computed by plain, vectorized NumPy: the reference value."""

    @abstractmethod
    def primal(self, fresh: bool) -> Callable[[], object]:
        """A call running the numba kernel once; `fresh` compiles a new dispatcher on first call."""

    @abstractmethod
    def enzpy_gradient(self, optimize: bool) -> Contender:
        """enzpy reverse mode on a freshly compiled copy of the kernel."""

    @abstractmethod
    def jax_gradient(self, jax) -> Contender:
        """jit(value_and_grad) (or jit(jacobian)) of an idiomatic vectorized JAX version."""

    @abstractmethod
    def torch_gradient(self, torch) -> Contender:
        """PyTorch autograd on the CPU of an idiomatic PyTorch version."""

    @abstractmethod
    def parameters(self) -> np.ndarray:
        """The differentiated inputs, flattened in the order the gradients use."""

    @abstractmethod
    def objective_at(self, flat: np.ndarray):
        """The numba objective with the differentiated inputs replaced by `flat` (for finite differences)."""

    def directional(self, gradient: np.ndarray, direction: np.ndarray):
        """The derivative along `direction` that `gradient` predicts (a Jacobian overrides this)."""
        return float(gradient @ direction)

    def direction_scale(self) -> float:
        """Size of random directions; 1 suits inputs of order one."""
        return 1.0


def fresh_kernel(kernel):
    """A new numba dispatcher for the same Python function, so its first call compiles.

    njit callees keep their already compiled overloads: a first call then times
    compiling the kernel itself, which is what the user waits for.
    """
    return numba.njit(kernel.py_func)


def numpy_float(value) -> np.ndarray:
    """A framework's output (JAX array, torch tensor, float) as a float64 NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach()
    return np.asarray(value, dtype=np.float64)


def concatenate(parts) -> np.ndarray:
    return np.concatenate([numpy_float(p).ravel() for p in parts])


def all_problems() -> dict:
    """name -> module with `instances(scale)`; imported here so `--problems` can name them."""
    from . import ba, burgers, gmm, lstm, mlp, ode, solve
    return {"gmm": gmm, "ba": ba, "lstm": lstm, "burgers": burgers, "ode": ode, "mlp": mlp, "solve": solve}
