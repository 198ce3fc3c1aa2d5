"""A reverse-mode call prepared once and made many times on the same arrays.

`Differentiable.autodiff` checks its annotations, looks the compiled gradient
up by the arguments' types and explodes every array into numba's parameters
on each call: about 30 µs, several times the gradient of a small time step.
A loop that differentiates the same step kernel thousands of times on the
same arrays (`checkpointing.loop`) does all that once:

    step_gradient = prepare_reverse(step, annotated)      # checks, compiles, binds
    derivatives = step_gradient()                          # one C call
    derivatives = step_gradient(first=k)                   # an int first argument changed

The arrays are bound by address: the caller keeps them alive and changes only
their contents between calls (their shape, strides and dtype stay).
"""

from __future__ import annotations

import numpy as np

from .api import Active, Const, Differentiable, Duplicated, copy_back


class PreparedReverse:
    """See the module docstring: `__call__` returns the Active arguments' derivatives, in order.

    Made by `prepare_reverse`.

    >>> import numpy as np
    >>> from enzpy import Active, Const, Duplicated, differentiate
    >>> from enzpy.prepared import PreparedReverse, prepare_reverse
    >>> @differentiate
    ... def weighted(k, x, a):
    ...     return k * a * np.sum(x * x)
    >>> x, dx = np.array([1.0, 2.0]), np.zeros(2)
    >>> gradient = prepare_reverse(weighted, [Const(1), Duplicated(x, dx), Active(0.5)])
    >>> isinstance(gradient, PreparedReverse)
    True
    >>> gradient(), dx
    ([5.0], array([1., 2.]))
    """

    def __init__(self, differentiable: Differentiable, annotated, seed: float = 1.0):
        annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in annotated]
        differentiable._check_shadows_are_separate(annotated)
        gradient, self._parameters, self._copied_back, self._outputs = differentiable.bound_reverse(annotated, seed)
        self._entry = gradient.entry
        convention = gradient.entry.convention
        values = [a.value for a in annotated]
        first = convention.arguments[0] if convention.arguments else None
        # The first argument may be rebound when it is one integer parameter (a step number).
        self._first_is_integer = (first is not None and not first.is_array and not first.is_float
                                  and isinstance(values[0], (int, np.integer)))

    def __call__(self, first: int | None = None) -> list[float]:
        """One reverse call: the Active arguments' derivatives (from zero each call), while the
        shadows accumulate (+=) as `autodiff`'s do. `first`: a new value of an integer first
        argument (a step number); the bound arrays' current contents are used.

        >>> import numpy as np
        >>> from enzpy import Active, Const, Duplicated, differentiate
        >>> from enzpy.prepared import prepare_reverse
        >>> @differentiate
        ... def weighted(k, x, a):
        ...     return k * a * np.sum(x * x)
        >>> x, dx = np.array([1.0, 2.0]), np.zeros(2)
        >>> gradient = prepare_reverse(weighted, [Const(1), Duplicated(x, dx), Active(0.5)])
        >>> gradient()
        [5.0]
        >>> gradient(first=2)                # the same call with k = 2
        [10.0]
        >>> dx
        array([3., 6.])
        >>> x[:] = [2.0, 0.0]                # new contents of a bound array
        >>> gradient(first=1)
        [4.0]
        """
        if first is not None:
            if not self._first_is_integer:
                raise ValueError("only an integer first argument can be changed between prepared calls")
            self._parameters[0] = int(first)
        for output in self._outputs:
            output[0] = 0
        for shadow, laid_out in self._copied_back:
            # A pair of one array is a prange kernel's scratch shadow (Differentiable._with_scratch_shadows):
            # what the last call added into it must not reach this one.
            laid_out[...] = shadow if shadow is not laid_out else 0
        self._entry.call_raw(self._parameters)
        copy_back(self._copied_back)
        return [output[0].item() for output in self._outputs]


def prepare_reverse(differentiable: Differentiable, annotated, seed: float = 1.0) -> PreparedReverse:
    """A reverse-mode call of `differentiable` on these annotated arguments, made ready to repeat.

    `seed` scales the result's adjoint, as `autodiff`'s does. The arrays are bound by address:
    keep them alive, and change only their contents between calls.

    >>> import numpy as np
    >>> from enzpy import Active, Const, Duplicated, differentiate
    >>> from enzpy.prepared import prepare_reverse
    >>> @differentiate
    ... def weighted(k, x, a):
    ...     return k * a * np.sum(x * x)
    >>> x, dx = np.array([1.0, 2.0]), np.zeros(2)
    >>> gradient = prepare_reverse(weighted, [Const(1), Duplicated(x, dx), Active(0.5)])
    >>> gradient()                       # the Active derivatives; dx accumulates, as with autodiff
    [5.0]
    >>> dx
    array([1., 2.])
    >>> prepare_reverse(weighted, [Const(1), Duplicated(x, dx), Active(0.5)], seed=2.0)()
    [10.0]
    """
    return PreparedReverse(differentiable, annotated, seed)
