"""How each argument of a derivative call takes part: Const, Active, Duplicated (Enzyme's names).

They live apart from api.py so that every module that reads them (explain, jacobian, the CUDA
and njit-call paths) can import them without importing the API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Const:
    """An argument without derivative."""

    value: object
    """The argument."""


@dataclass(frozen=True)
class Active:
    """A float scalar whose derivative `autodiff` returns.

    In forward mode an Active scalar gets the tangent 1.0 (use
    `Duplicated(x, dx)` for another tangent).
    """

    value: float
    """The argument."""


@dataclass(frozen=True)
class Duplicated:
    """An array with a shadow: derivatives are accumulated (+=) into `shadow`.

    For an array the kernel writes, `shadow` holds on entry the adjoint of its
    final contents and is consumed, as in Enzyme.

    In forward mode `shadow` holds the tangent of the array on entry; for an
    array the kernel writes it receives the tangent of what is written. A
    float scalar may be Duplicated too in forward mode: `shadow` is its tangent.
    """

    value: np.ndarray
    """The argument."""
    shadow: np.ndarray
    """Same shape and dtype as `value`."""


@dataclass(frozen=True)
class DuplicatedNoNeed(Duplicated):
    """Like Duplicated; the primal result may be skipped."""
