"""Full Jacobians from forward (vector) mode or reverse mode, chosen by shape.

`Differentiable.jacobian` documents the layout: rows are the outputs (the
float return value, the float leaves of an array or tuple result, or else
the float arrays the kernel writes), columns the
inputs (`wrt`), both flattened in C order and concatenated in argument order.
Forward mode fills `width` columns per sweep, reverse mode `width` rows per sweep (vector
reverse mode; one row per sweep for kernels it does not cover);
"auto" takes forward when there are fewer columns than rows.

Every float array is given a shadow in both modes, whether it is an input,
an output or neither: a scratch array the kernel writes and reads back must
carry its derivatives, or they would be lost.
"""

from __future__ import annotations

import numpy as np
from numba.core import types as numba_types

from . import results
from .annotations import Active, Const, Duplicated
from .errors import DifferentiationError
from .selection import differentiated_positions


def jacobian(differentiable, args, wrt=None, mode: str = "auto", width: int = 8) -> np.ndarray:
    """`differentiable`'s Jacobian at `args` (see `Differentiable.jacobian` for the layout and the modes)."""
    args = tuple(args)
    is_float_array = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args]
    inputs = differentiated_positions(differentiable, args, wrt)
    return_type = differentiable._result_type(args)
    returns_float = isinstance(return_type, numba_types.Float)
    if results.is_structured(return_type):
        # The result's float leaves are the rows: the output form writes them into arrays.
        layout = results.result_layout(return_type, differentiable.__name__)
        shapes = results.leaf_shapes(layout, differentiable.dispatcher(*_copies(args)))
        buffers = results.output_buffers(layout, shapes)
        outputs = [len(args) + j for j, leaf in enumerate(layout.leaves) if leaf.is_float]
        if not outputs:
            raise ValueError(f"kernel {differentiable.__name__!r} returns {return_type}, which has no float "
                             "part: it has no Jacobian")
        differentiable = results.output_form(differentiable, layout, len(args))
        args = args + tuple(buffers)
        is_float_array += [leaf.is_float for leaf in layout.leaves]
    elif returns_float:
        outputs = []
    else:
        outputs = sorted(differentiable.written_arguments(args))
        if not outputs:
            raise ValueError(f"kernel {differentiable.__name__!r} neither returns a float nor writes a float "
                             "array: it has no Jacobian")
    columns = sum(_size(args[i]) for i in inputs)
    rows = 1 if returns_float else sum(args[i].size for i in outputs)
    if mode == "auto":
        mode = "forward" if columns < rows else "reverse"
    if mode == "forward":
        return _forward_jacobian(differentiable, args, inputs, outputs, rows, columns, is_float_array, width)
    if mode == "reverse":
        return _reverse_jacobian(differentiable, args, inputs, outputs, rows, columns, is_float_array, width)
    raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', not {mode!r}")


def _size(value) -> int:
    return value.size if isinstance(value, np.ndarray) else 1


def _copies(args) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _forward_jacobian(differentiable, args, inputs, outputs, rows, columns, is_float_array, width):
    width = max(1, min(width, columns))
    matrix = np.zeros((rows, columns))
    # Column c is position `offset` inside input argument `argument`.
    column_owner = [(i, offset) for i in inputs for offset in range(_size(args[i]))]
    for first in range(0, columns, width):
        chunk = column_owner[first:first + width]
        values = _copies(args)
        tangents = []
        for index, value in enumerate(values):
            if is_float_array[index] and index in inputs:
                lanes = np.zeros((width, *value.shape), dtype=value.dtype)
                for lane, (owner, offset) in enumerate(chunk):
                    if owner == index:
                        lanes[(lane, *np.unravel_index(offset, value.shape))] = 1.0
                tangents.append(lanes)
            elif index in inputs:
                tangents.append(np.array([1.0 if owner == index else 0.0 for owner, _ in chunk]
                                         + [0.0] * (width - len(chunk))))
            else:
                tangents.append(None)
        _, result = differentiable.jvp(values, tangents, width=width)
        if outputs:
            block = np.concatenate([np.asarray(result[i], dtype=np.float64).reshape(width, -1) for i in outputs],
                                   axis=1)
        else:
            block = np.asarray(result, dtype=np.float64).reshape(width, 1)
        matrix[:, first:first + len(chunk)] = block[:len(chunk)].T
    return matrix


def _reverse_jacobian(differentiable, args, inputs, outputs, rows, columns, is_float_array, width=8):
    """Rows `width` at a time: vector reverse mode carries `width` cotangents through one forward and
    one reverse sweep (kernels it does not cover fall back to one sweep per row)."""
    matrix = np.zeros((rows, columns))
    # Row r is position `offset` inside output argument `argument` (None: the return value).
    row_owner = [(i, offset) for i in outputs for offset in range(args[i].size)] or [(None, 0)]
    width = max(1, min(width, len(row_owner)))
    first = 0
    while first < len(row_owner):
        chunk = row_owner[first:first + width]
        try:
            matrix[first:first + len(chunk)] = _reverse_rows(differentiable, args, inputs, chunk, is_float_array,
                                                             width)[:len(chunk)]
        except DifferentiationError as error:
            if width == 1 or "vector reverse mode" not in str(error):
                raise
            width = 1                              # not covered by lanes: one row per sweep from here on
            continue
        first += len(chunk)
    return matrix


def _reverse_rows(differentiable, args, inputs, chunk, is_float_array, width) -> np.ndarray:
    """The Jacobian rows `chunk` ((argument or None, offset) each, padded to `width` lanes with zero
    cotangents) from one reverse call."""
    annotated = []
    for index, value in enumerate(_copies(args)):
        if is_float_array[index]:
            shadow = np.zeros((width, *value.shape), dtype=value.dtype)
            for lane, (owner, offset) in enumerate(chunk):
                if index == owner:
                    shadow[(lane, *np.unravel_index(offset, value.shape))] = 1.0
            annotated.append(Duplicated(value, shadow if width > 1 else shadow[0]))
        elif index in inputs:
            annotated.append(Active(value))
        else:
            annotated.append(Const(value))
    seeds = [1.0 if owner is None else 0.0 for owner, _ in chunk] + [0.0] * (width - len(chunk))
    if width == 1:
        active = iter(np.array([d]) for d in differentiable.autodiff(*annotated, seed=seeds[0]))
    else:
        active = iter(differentiable.autodiff(*annotated, seed=seeds, width=width))
    pieces = []
    for index, annotation in enumerate(annotated):
        if isinstance(annotation, Active):
            derivative = next(active)
            if index in inputs:
                pieces.append((index, np.asarray(derivative, dtype=np.float64).reshape(width, 1)))
        elif isinstance(annotation, Duplicated) and index in inputs:
            pieces.append((index, np.asarray(annotation.shadow, dtype=np.float64).reshape(width, -1)))
    order = {index: position for position, index in enumerate(inputs)}
    return np.concatenate([piece for _, piece in sorted(pieces, key=lambda p: order[p[0]])], axis=1)
