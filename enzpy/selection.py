"""`wrt=`: which arguments a derivative is taken with respect to, as JAX's `argnums`.

Without `wrt`, every float array and float scalar is differentiated and the
gradients come aligned with all arguments (None for the others: integers are
constants). With `wrt=i` the result is that argument's gradient alone, with
`wrt=(i, j)` a tuple of theirs; naming an argument that cannot carry a
derivative (an integer, a bool, an integer array) is an error, not a silent
None.
"""

from __future__ import annotations

import numpy as np


def is_differentiable(value) -> bool:
    """Float arrays and float scalars carry derivatives; everything else is a constant."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f"
    return isinstance(value, (float, np.floating))


def _kind(value) -> str:
    name = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def differentiated_positions(differentiable, args, wrt) -> list[int]:
    """The positions `wrt` names (default: every float argument), each checked."""
    if wrt is None:
        return [i for i, value in enumerate(args) if is_differentiable(value)]
    positions = [wrt] if isinstance(wrt, (int, np.integer)) else list(wrt)
    for index in positions:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(args):
            raise ValueError(f"wrt names argument {index!r}, but the kernel takes {len(args)} arguments")
        if not is_differentiable(args[index]):
            raise TypeError(f"wrt names argument {index} ({differentiable._argument_name(index)!r}), which is "
                            f"{_kind(args[index])}: only float arrays and float scalars have derivatives "
                            "(pass a float to differentiate with respect to a number)")
    return [int(i) for i in positions]


def selected(gradients: tuple, wrt):
    """Gradients aligned with all arguments, narrowed to what `wrt` asked for."""
    if wrt is None:
        return gradients
    if isinstance(wrt, (int, np.integer)):
        return gradients[int(wrt)]
    return tuple(gradients[int(i)] for i in wrt)
