"""How each argument of a derivative call takes part: Const, Active, Duplicated (Enzyme's names).

They live apart from api.py so that every module that reads them (explain, jacobian, the CUDA
and njit-call paths) can import them without importing the API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Const:
    """An argument without derivative: no adjoint in reverse mode, no tangent in forward mode.

    Any value may be Const; a plain value passed to an Enzyme-style call is Const too.

    >>> import numpy as np
    >>> from enzpy import Active, Const, differentiate
    >>> @differentiate
    ... def scale(x, a):
    ...     return a * x[0]
    >>> scale.autodiff(Const(np.array([2.0])), Active(3.0))
    (2.0,)
    """

    value: object
    """The argument."""


@dataclass(frozen=True)
class Active:
    """A float scalar whose derivative `autodiff` returns.

    Reverse mode returns the Active arguments' derivatives as a tuple, in
    argument order. In forward mode an Active scalar gets the tangent 1.0 (use
    `Duplicated(x, dx)` for another tangent).

    >>> import numpy as np
    >>> from enzpy import Active, Const, differentiate
    >>> @differentiate
    ... def scale(x, a):
    ...     return a * x[0]
    >>> scale.autodiff(Const(np.array([2.0])), Active(3.0))
    (2.0,)
    >>> scale.autodiff(Const(np.array([2.0])), Active(3.0), mode="forward")
    2.0
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

    >>> import numpy as np
    >>> from enzpy import Duplicated, differentiate
    >>> @differentiate
    ... def square_into(out, x):
    ...     for i in range(x.shape[0]):
    ...         out[i] = x[i] * x[i]
    >>> x, dx = np.array([1.0, 3.0]), np.zeros(2)
    >>> out, dout = np.zeros(2), np.ones(2)      # dout: the adjoint of out's final contents
    >>> square_into.autodiff(Duplicated(out, dout), Duplicated(x, dx))
    ()
    >>> dx, dout
    (array([2., 6.]), array([0., 0.]))
    >>> tout = np.zeros(2)                       # forward mode: receives the tangent of out
    >>> square_into.autodiff(Duplicated(out, tout), Duplicated(x, np.array([1.0, 0.0])), mode="forward")
    >>> tout
    array([2., 0.])
    """

    value: np.ndarray
    """The argument."""
    shadow: np.ndarray
    """Same shape and dtype as `value`."""


@dataclass(frozen=True)
class DuplicatedNoNeed(Duplicated):
    """Like Duplicated; the primal result may be skipped (Enzyme's `enzyme_dupnoneed`).

    enzpy computes it exactly as Duplicated today: the array still holds what
    a plain call leaves, but callers should not rely on it.

    >>> import numpy as np
    >>> from enzpy import Duplicated, DuplicatedNoNeed, differentiate
    >>> @differentiate
    ... def square_into(out, x):
    ...     for i in range(x.shape[0]):
    ...         out[i] = x[i] * x[i]
    >>> x, dx = np.array([1.0, 3.0]), np.zeros(2)
    >>> square_into.autodiff(DuplicatedNoNeed(np.zeros(2), np.ones(2)), Duplicated(x, dx))
    ()
    >>> dx
    array([2., 6.])
    """
