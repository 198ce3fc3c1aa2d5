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
    """See the module docstring: `__call__` returns the Active arguments' derivatives, in order."""

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
    """A reverse-mode call of `differentiable` on these annotated arguments, made ready to repeat."""
    return PreparedReverse(differentiable, annotated, seed)
