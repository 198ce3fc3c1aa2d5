"""Arrays that share memory: which do, and shadows and copies that overlap the same way.

A numba kernel receives memory, not values: two arguments may be views of
one buffer (`y[1:]` and `y[:-1]`), and a write through one changes what the
other reads. enzpy's derivative is then the derivative with respect to that
memory, as Enzyme's is: the shadows must overlap exactly as the arrays do,
so an adjoint that reaches a byte through either view lands in one place.
The gradient of each argument is a view of one shadow buffer; where the
views overlap they show the same numbers (the same array passed twice gets
one gradient).
"""

from __future__ import annotations

import ctypes

import numpy as np


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def byte_span(array: np.ndarray) -> tuple[int, int]:
    """[first, past the last) byte an array's elements occupy (strides may be negative)."""
    base = address(array)
    if array.size == 0:
        return base, base
    extents = [(n - 1) * s for n, s in zip(array.shape, array.strides)]
    return base + sum(e for e in extents if e < 0), base + sum(e for e in extents if e > 0) + array.itemsize


def arrays_are_distinct(values) -> bool:
    """Whether no two arrays among `values` (inside tuples too) may share memory.

    Then writes to one never change another, and the derivative code tells LLVM
    so (analysis/alias_scopes.py): the check must cover every array the kernel
    receives, shadows included.
    """
    arrays = []
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, np.ndarray):
            arrays.append(value)
        elif isinstance(value, (tuple, list)):
            pending.extend(value)
    return not any(np.may_share_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


def overlap_groups(arrays: list[np.ndarray]) -> list[list[int]]:
    """Positions of `arrays` grouped by shared memory (byte spans that meet, transitively)."""
    spans = sorted((byte_span(a), i) for i, a in enumerate(arrays))
    groups: list[list[int]] = []
    end = None
    for (start, stop), index in spans:
        if groups and start < end:
            groups[-1].append(index)
            end = max(end, stop)
        else:
            groups.append([index])
            end = stop
    return groups


def _views_into(buffer: np.ndarray, base: int, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Views of `buffer` laid out as `arrays` are around `base`; identical views give one array."""
    views: dict[tuple, np.ndarray] = {}
    for a in arrays:
        key = (address(a), a.shape, a.strides, a.dtype)
        if key not in views:
            views[key] = np.ndarray(a.shape, a.dtype, buffer=buffer, offset=address(a) - base, strides=a.strides)
    return [views[(address(a), a.shape, a.strides, a.dtype)] for a in arrays]


def shadow_like(array: np.ndarray) -> np.ndarray:
    """A zeroed array with the shape, dtype *and strides* of `array` (views included)."""
    return shadows_like([array])[0]


def shadows_like(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Zeroed shadows for `arrays` with their shapes, dtypes and strides; arrays that share
    memory get views of one zeroed buffer that overlap as the arrays do."""
    if all(a.flags.c_contiguous or a.flags.f_contiguous for a in arrays):
        # The common case, without building views: contiguous arrays whose bytes do not meet.
        spans = sorted((address(a), address(a) + a.nbytes) for a in arrays if a.size)
        if all(spans[k][1] <= spans[k + 1][0] for k in range(len(spans) - 1)):
            return [np.zeros_like(a) for a in arrays]
    shadows: list[np.ndarray | None] = [None] * len(arrays)
    for group in overlap_groups(arrays):
        members = [arrays[i] for i in group]
        if all(a.size == 0 for a in members):
            for i in group:
                shadows[i] = np.zeros_like(arrays[i])
            continue
        spans = [byte_span(a) for a in members if a.size]
        base, end = min(s for s, _ in spans), max(e for _, e in spans)
        buffer = np.zeros(end - base, dtype=np.uint8)
        for i, view in zip(group, _views_into(buffer, base, members)):
            shadows[i] = view
    return shadows


def copies_keeping_overlaps(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Copies of `arrays`; those that share memory are views of one copied buffer, overlapping
    as the originals do (a kernel that writes one of them then changes the other, as it did)."""
    copies: list[np.ndarray | None] = [None] * len(arrays)
    for group in overlap_groups(arrays):
        members = [arrays[i] for i in group]
        if len(group) == 1 or any(a.size == 0 for a in members):
            for i in group:
                copies[i] = arrays[i].copy(order="K")
            continue
        spans = [byte_span(a) for a in members]
        base, end = min(s for s, _ in spans), max(e for _, e in spans)
        # The bytes between the views lie in the one allocation the overlapping views share.
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * (end - base)).from_address(base))
        for i, view in zip(group, _views_into(raw.copy(), base, members)):
            copies[i] = view
    return copies


def overlap_alike(values: tuple[np.ndarray, np.ndarray], shadows: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether two shadows overlap as their two arrays do: the layouts of the arrays, the
    same distance between them, in one buffer."""
    (first, second), (first_shadow, second_shadow) = values, shadows
    return all(isinstance(s, np.ndarray) and s.shape == v.shape and s.strides == v.strides
               for v, s in zip(values, shadows)) \
        and address(first_shadow) - address(second_shadow) == address(first) - address(second) \
        and np.may_share_memory(first_shadow, second_shadow)
