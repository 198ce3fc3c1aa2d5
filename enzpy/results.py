"""Kernels that return arrays and tuples: `vjp`, `jvp`, `autodiff(seed=...)`, `jacobian`.

The AD drivers differentiate kernels whose result is a scalar or nothing.
A kernel with a structured result (an array, a tuple of arrays and scalars,
nested tuples) is differentiated through a generated njit function, its
*output form*, that calls the kernel and copies each leaf of the result into
an output array argument:

    def enzpy_outputs(argument0, argument1, output0, output1):
        result = kernel(argument0, argument1)
        if result[0].shape != output0.shape: raise ValueError(...)
        for i0 in range(result[0].shape[0]):    # an array leaf, copied by loops
            output0[i0] = result[0][i0]
        output1[0] = result[1]                  # a scalar leaf, in an array of one

numba inlines the kernel into it before AD, so the copy costs one pass over
the result. Then every mode is an ordinary call of the output form: the
cotangent of a leaf is the shadow of its output array (reverse mode), the
tangent of a leaf is what forward mode writes into that shadow. Integer and
boolean leaves have no derivative: their outputs are Const.

Shapes of the result are known only by running the kernel, so `vjp` and
`jvp` run the primal once (on copies of the arguments for `jvp`); `autodiff`
takes the shapes from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba.core import types as numba_types
from numba.np.numpy_support import as_dtype

from .annotations import Const, Duplicated
from .arguments import default_annotations, gradients_of
from .errors import DifferentiationError


@dataclass(frozen=True)
class Leaf:
    """One array or scalar inside a kernel's result."""

    path: tuple[int, ...]
    """Tuple indices that reach it from the result (() for the result itself)."""
    dtype: np.dtype
    """Element type (a scalar's type for a scalar leaf)."""
    ndim: int | None
    """Number of dimensions of an array leaf; None for a scalar."""

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def description(self) -> str:
        return "the result" if not self.path else "result" + "".join(f"[{i}]" for i in self.path)


@dataclass(frozen=True)
class ResultLayout:
    """How a structured result is made of leaves, read off numba's type of the result."""

    numba_type: object
    """numba's type of the result (an Array or a tuple type)."""
    leaves: tuple[Leaf, ...]
    """Every array and scalar in it, depth first."""

    def leaf_values(self, value) -> list:
        """The leaves of a value of this layout, in order."""
        found = []
        for leaf in self.leaves:
            item = value
            for index in leaf.path:
                item = item[index]
            found.append(item)
        return found

    def build(self, leaf_values: list):
        """The value of this layout with the given leaves (tuples rebuilt as tuples)."""
        return _build(self.numba_type, iter(leaf_values))

    def _tuple_length(self, path: tuple) -> int:
        numba_type = self.numba_type
        for index in path:
            numba_type = numba_type.types[index]
        return len(numba_type.types)

    def check_structure(self, value, what: str) -> list:
        """The leaves of a user-given value (cotangent, seed), checked against the layout."""
        leaves = []
        for leaf in self.leaves:
            item = value
            for depth, index in enumerate(leaf.path):
                expected = self._tuple_length(leaf.path[:depth])
                if not isinstance(item, (tuple, list)) or len(item) != expected:
                    where = Leaf(leaf.path[:depth], leaf.dtype, None).description
                    got = f"{type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) \
                        else type(item).__name__
                    raise ValueError(f"{what} must have the structure of the kernel's result: {where} is a "
                                     f"tuple of {expected}, got a {got}")
                item = item[index]
            leaves.append(item)
        return leaves


def _build(numba_type, leaves):
    if isinstance(numba_type, numba_types.BaseTuple):
        return tuple(_build(element, leaves) for element in numba_type.types)
    return next(leaves)


def result_layout(numba_type, kernel_name: str) -> ResultLayout:
    """The layout of a structured result; unsupported leaf types raise, naming them."""
    leaves: list[Leaf] = []

    def visit(ty, path):
        if isinstance(ty, numba_types.BaseTuple):
            for index, element in enumerate(ty.types):
                visit(element, path + (index,))
        elif isinstance(ty, numba_types.Array) and isinstance(ty.dtype, (numba_types.Float, numba_types.Integer,
                                                                          numba_types.Boolean)):
            leaves.append(Leaf(path, np.dtype(as_dtype(ty.dtype)), ty.ndim))
        elif isinstance(ty, (numba_types.Float, numba_types.Integer, numba_types.Boolean)):
            leaves.append(Leaf(path, np.dtype(as_dtype(ty)), None))
        else:
            where = Leaf(path, np.dtype(float), None).description
            raise DifferentiationError(f"kernel {kernel_name!r} returns {numba_type}: {where} is {ty}, which "
                                       "enzpy cannot differentiate (results are float, int and bool arrays and "
                                       "scalars, and tuples of them)")

    visit(numba_type, ())
    return ResultLayout(numba_type, tuple(leaves))


def is_structured(numba_type) -> bool:
    """Whether a kernel result of this type goes through the output form."""
    return isinstance(numba_type, (numba_types.Array, numba_types.BaseTuple))


# ---------------------------------------------------------------- the output form

_SEED_SHAPE_MESSAGE = "enzpy: the seed of "
"""How the output form's shape check starts its message (`reverse_call_keeping_arguments` names the shapes)."""


def output_form(differentiable, layout: ResultLayout, arity: int):
    """The Differentiable of `differentiable`'s output form for `layout` (made once, then cached)."""
    key = (layout.numba_type, arity)
    cached = differentiable._output_forms.get(key)
    if cached is not None:
        return cached
    from numba import njit

    outputs = [f"output{j}" for j in range(len(layout.leaves))]
    parameters = _form_parameters(differentiable, arity, reserved={"kernel", "result", *outputs,
                                                                   *(f"leaf{j}" for j in range(len(outputs)))})
    lines = [f"def enzpy_outputs({', '.join(parameters + outputs)}):",
             f"    result = kernel({', '.join(parameters)})"]
    for j, leaf in enumerate(layout.leaves):
        access = "result" + "".join(f"[{i}]" for i in leaf.path)
        if leaf.ndim is None:
            lines.append(f"    output{j}[0] = {access}")
        else:
            # Assignment would broadcast a wrong-shaped seed silently.
            lines.append(f"    if {access}.shape != output{j}.shape:")
            lines.append(f"        raise ValueError('{_SEED_SHAPE_MESSAGE}{leaf.description} does not have the "
                         "shape of the kernel result')")
            # Plain loops, not `output[...] = leaf`: numba's broadcasting assignment is far
            # more IR to optimize and differentiate for the same copy.
            lines.append(f"    leaf{j} = {access}")
            indices = [f"i{d}" for d in range(leaf.ndim)]
            for depth, index in enumerate(indices):
                lines.append(f"    {'    ' * depth}for {index} in range(leaf{j}.shape[{depth}]):")
            subscript = ", ".join(indices) if indices else "()"
            lines.append(f"    {'    ' * leaf.ndim}output{j}[{subscript}] = leaf{j}[{subscript}]")
    namespace = {"kernel": differentiable.dispatcher}
    # Compiled as if written at the kernel's `def` line of the kernel's file: when an error
    # is located, the kernel's inlined instructions keep their own lines in that file, and
    # the form's own copy loops point at the kernel.
    code = getattr(getattr(differentiable.dispatcher, "py_func", None), "__code__", None)
    filename, first_line = (code.co_filename, code.co_firstlineno) if code is not None else ("<enzpy>", 1)
    source = "\n" * (first_line - 1) + "\n".join(lines)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102  (generated from the layout only)
    namespace["enzpy_outputs"].enzpy_calls_the_kernel = True   # see frontend.numba.recapture_with_debug_info
    form = type(differentiable)(njit(namespace["enzpy_outputs"]), optimize=differentiable.optimize,
                          cache_minimization=differentiable.cache_minimization,
                          loose_types=differentiable.loose_types, cache=differentiable.cache)
    # Errors and argument names refer to the user's kernel, not to the generated function.
    form._where = differentiable._where
    leaf_names = [leaf.description for leaf in layout.leaves]
    form._argument_name = lambda index: differentiable._argument_name(index) if index < arity \
        else leaf_names[index - arity]
    differentiable._output_forms[key] = form
    return form


def _form_parameters(differentiable, arity: int, reserved: set[str]) -> list[str]:
    """The kernel's own parameter names, so that errors about an argument name it as the user wrote
    it (`argument0`, ... where a name would clash with the form's own)."""
    import inspect
    try:
        names = list(inspect.signature(differentiable.dispatcher.py_func).parameters)[:arity]
    except (AttributeError, TypeError, ValueError):
        names = []
    if len(names) != arity or any(not n.isidentifier() or n in reserved or n.startswith("i") and n[1:].isdigit()
                                  for n in names):
        return [f"argument{i}" for i in range(arity)]
    return names


def output_buffers(layout: ResultLayout, shapes: list) -> list[np.ndarray]:
    """One output array per leaf (a scalar leaf: an array of one element)."""
    return [np.empty((1,) if leaf.ndim is None else shape, dtype=leaf.dtype)
            for leaf, shape in zip(layout.leaves, shapes)]


def leaf_shapes(layout: ResultLayout, value) -> list:
    return [None if leaf.ndim is None else np.shape(item) for leaf, item in zip(layout.leaves,
                                                                                layout.leaf_values(value))]


def from_buffers(layout: ResultLayout, buffers: list):
    """A result value from its output arrays (a scalar leaf as a Python number, as numba returns it)."""
    return layout.build([buffer[0].item() if leaf.ndim is None else buffer
                         for leaf, buffer in zip(layout.leaves, buffers)])


def leaf_derivative(layout_leaf: Leaf, given, shape, what: str) -> np.ndarray | None:
    """A cotangent or seed for one leaf as the shadow of its output array (None: no derivative)."""
    if not layout_leaf.is_float:
        if given is not None and np.any(np.asarray(given) != 0):
            raise ValueError(f"{what} of {layout_leaf.description} must be None or zero: it is "
                             f"{layout_leaf.dtype}, which has no derivative")
        return None
    if layout_leaf.ndim is None:
        if given is None:
            return np.zeros(1, dtype=layout_leaf.dtype)
        if np.ndim(given) != 0 or np.asarray(given).dtype.kind not in "fiub":
            raise ValueError(f"{what} of {layout_leaf.description} must be a real number, got {given!r}")
        return np.array([given], dtype=layout_leaf.dtype)
    if given is None:
        return np.zeros(shape, dtype=layout_leaf.dtype)
    given = np.asarray(given)
    if shape is not None and given.shape != tuple(shape) or given.ndim != layout_leaf.ndim \
            or given.dtype.kind not in "fiu":
        expected = f"shape {tuple(shape)}" if shape is not None else f"{layout_leaf.ndim} dimensions"
        raise ValueError(f"{what} of {layout_leaf.description} must be a real array of {expected}, got "
                         f"{given.dtype} {given.shape}")
    return np.array(given, dtype=layout_leaf.dtype)      # a copy: reverse mode consumes it


# ---------------------------------------------------------------- the modes

def copy_arguments(args) -> list:
    """Copies of the arguments; arrays that share memory still do, the same way (`aliasing`)."""
    from .aliasing import copies_keeping_overlaps

    positions = [i for i, value in enumerate(args) if isinstance(value, np.ndarray)]
    copies = list(args)
    for i, copy in zip(positions, copies_keeping_overlaps([args[i] for i in positions])):
        copies[i] = copy
    return copies


def reverse_call(differentiable, layout: ResultLayout, annotated: list, derivative_leaves: list, shapes: list):
    """Run the output form's gradient. `annotated`: the kernel's arguments, annotated; the shadows
    of Duplicated ones accumulate. Returns the Active arguments' derivatives and the result."""

    form = output_form(differentiable, layout, len(annotated))
    buffers = output_buffers(layout, shapes)
    outputs = [Const(buffer) if shadow is None else Duplicated(buffer, shadow)
               for buffer, shadow in zip(buffers, derivative_leaves)]
    _, active = form._reverse(list(annotated) + outputs, seed=1.0)
    return active, from_buffers(layout, buffers)


def reverse_call_keeping_arguments(differentiable, layout: ResultLayout, annotated: list, derivative_leaves: list,
                                   shapes: list):
    """`reverse_call`, with the arguments' arrays put back as they were if it raises.

    A seed's shapes can only be compared with the result's once the kernel has run (and
    written into its arguments): a refused seed must not leave the user's arrays changed.
    """
    arrays = [a.value for a in annotated if isinstance(a.value, np.ndarray)]
    saved = copy_arguments(arrays)
    try:
        return reverse_call(differentiable, layout, annotated, derivative_leaves, shapes)
    except Exception as error:
        for array, copy in zip(arrays, saved):
            array[...] = copy
        if isinstance(error, ValueError) and str(error).startswith(_SEED_SHAPE_MESSAGE):
            raise ValueError(_seed_shape_mismatch(differentiable, layout, arrays, annotated, shapes)) from None
        raise


def _seed_shape_mismatch(differentiable, layout: ResultLayout, arrays, annotated, shapes) -> str:
    """Which leaf's seed has the wrong shape, and the shape the kernel's result has."""
    value = differentiable.dispatcher(*copy_arguments([a.value for a in annotated]))
    for leaf, shape, actual in zip(layout.leaves, shapes, leaf_shapes(layout, value)):
        if leaf.ndim is not None and tuple(shape) != tuple(actual):
            return f"the seed of {leaf.description} has shape {tuple(shape)}, but the kernel's {leaf.description} " \
                   f"has shape {tuple(actual)}"
    return "the seed does not have the shape of the kernel's result"


def forward_call(differentiable, layout: ResultLayout, args, kinds, lane_tangents, width: int, shapes: list):
    """Run the output form's tangent function: (value, per leaf the tangent lanes or None)."""

    form = output_form(differentiable, layout, len(args))
    buffers = output_buffers(layout, shapes)
    output_lanes = [[np.zeros_like(buffer) for _ in range(width)] if leaf.is_float else None
                    for leaf, buffer in zip(layout.leaves, buffers)]
    form._forward(tuple(args) + tuple(buffers),
                  tuple(kinds) + tuple(Duplicated if lanes is not None else Const for lanes in output_lanes),
                  list(lane_tangents) + output_lanes, width)
    return from_buffers(layout, buffers), output_lanes


def tangent_value(layout: ResultLayout, output_lanes: list, width: int | None):
    """The tangent of the result from the output lanes: the result's structure, a leading axis of
    length `width` on every leaf when given, None for leaves without derivative."""
    leaves = []
    for leaf, lanes in zip(layout.leaves, output_lanes):
        if lanes is None:
            leaves.append(None)
        elif leaf.ndim is None:
            leaves.append(lanes[0][0].item() if width is None else np.array([lane[0] for lane in lanes]))
        else:
            leaves.append(lanes[0] if width is None else np.stack(lanes))
    return layout.build(leaves)


class Pullback:
    """The `vjp` pullback: cotangent of the result -> gradients aligned with the arguments.

    It holds copies of the arguments as they were when `vjp` was called, so it
    can be called any number of times and later changes to the user's arrays
    do not change it.
    """

    def __init__(self, differentiable, layout: ResultLayout, saved_args: list, shapes: list, positions: list[int]):
        self.differentiable, self.layout = differentiable, layout
        self.saved_args, self.shapes = saved_args, shapes
        self.positions = positions
        """The arguments differentiated (`selection`); the others are constants."""

    def __call__(self, cotangent):

        layout = self.layout
        given = [cotangent] if not layout.leaves[0].path and len(layout.leaves) == 1 \
            else layout.check_structure(cotangent, "the cotangent")
        derivative_leaves = [leaf_derivative(leaf, value, shape, "the cotangent")
                             for leaf, value, shape in zip(layout.leaves, given, self.shapes)]
        annotated = default_annotations(copy_arguments(self.saved_args), self.positions)
        active, _ = reverse_call(self.differentiable, layout, annotated, derivative_leaves, self.shapes)
        return gradients_of(annotated, active)


def vjp(differentiable, args, layout: ResultLayout, positions: list[int]):
    """(value, pullback) for a structured result (see `Differentiable.vjp`)."""
    saved = copy_arguments(args)
    value = differentiable.dispatcher(*args)
    return value, Pullback(differentiable, layout, saved, leaf_shapes(layout, value), positions)


def shapes_from_seed(layout: ResultLayout, seed) -> tuple[list, list]:
    """(leaf seeds, leaf shapes) of an `autodiff` seed for a structured result."""
    given = [seed] if not layout.leaves[0].path and len(layout.leaves) == 1 \
        else layout.check_structure(seed, "the seed")
    shapes = []
    for leaf, value in zip(layout.leaves, given):
        if leaf.ndim is not None and value is None and leaf.is_float:
            raise ValueError(f"the seed of {leaf.description} must be an array (its shape is the result's)")
        if leaf.ndim is not None and not leaf.is_float and value is None:
            raise ValueError(f"the seed of {leaf.description} must be an array of the result's shape (zeros: "
                             f"it is {leaf.dtype}, which has no derivative)")
        shapes.append(None if leaf.ndim is None else np.shape(value))
    return [leaf_derivative(leaf, value, shape, "the seed")
            for leaf, value, shape in zip(layout.leaves, given, shapes)], shapes
