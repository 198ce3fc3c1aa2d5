"""Second derivatives: Hessian-vector products and Hessians of a kernel with a float result.

`hvp(args, direction)` is reverse mode applied to the code forward mode
generated: the tangent function T(x, v) computes f(x) and its directional
derivative t = grad f(x) . v, with no tape (forward mode caches nothing);
reverse mode of T with respect to x, seeded with 1 on t and 0 on f, gives
d t / d x = H v. Both are the drivers enzpy has for first derivatives, so
everything they take (loops, branches, allocations, calls that stay calls,
BLAS and LAPACK) has a second derivative too; forward over reverse would have
to differentiate the reverse sweep's tape as well. Every float argument is an
input: float arrays (x) and float scalars; arrays the kernel writes get
tangent and adjoint buffers of their own, so in-place kernels work.
`hessian(*args)` is one HVP per input element (its columns), symmetric up to
rounding; inputs are flattened and concatenated as `jacobian` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ad.reverse import ReverseSpec, build_reverse
from .aliasing import arrays_are_distinct
from .annotations import Active, Const, Duplicated
from .arguments import primal_parameters
from .results import copy_arguments
from .errors import DifferentiationError
from .driver import optimize
from .frontend.numba import capture
from .ir import write_module
from .jit import NumbaEntryPoint
from .messages import for_user


@dataclass
class _HessianVectorProduct:
    """One compiled HVP function and its parameter layout."""

    entry: NumbaEntryPoint
    arrays: tuple[int, ...]
    """Positions of the float array arguments (inputs, each with a direction)."""
    scalars: tuple[int, ...]
    """Positions of the float scalar arguments."""
    result_dtype: np.dtype
    module_text: str


def _kinds(args):

    return tuple(Duplicated if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else Active if isinstance(a, (float, np.floating)) else Const for a in args)


def compiled_hvp(differentiable, args, distinct: bool) -> _HessianVectorProduct:
    """The HVP function for these argument types (compiled once per types)."""
    key = ("hvp", tuple(differentiable._type_key(a) for a in args), distinct)
    cache = differentiable._gradients
    if key not in cache:
        cache[key] = _compile(differentiable, args, distinct)
    return cache[key]


def _compile(differentiable, args, distinct: bool) -> _HessianVectorProduct:
    if getattr(differentiable.dispatcher, "targetoptions", {}).get("parallel"):
        raise DifferentiationError(f"hvp / hessian of {differentiable.__name__!r}: second derivatives of "
                                   "prange kernels are not supported yet; compile the kernel without parallel=True")
    kinds = _kinds(args)
    captured = capture(differentiable.dispatcher, args=tuple(args))
    try:
        module, tangent, forward = differentiable.tangent_module(captured, kinds, 1)
        # The tangent function through the pre-AD pipeline too: its helpers (forward mode's mirrors
        # of reference counts and frees on shadows) inlined into plain NRT calls reverse mode knows.
        module = optimize(module, "pre_ad")
        tangent = module.functions[tangent.name]
        if forward.return_type is None:
            raise DifferentiationError(f"hvp / hessian need a kernel with a float result; "
                                       f"{differentiable.__name__!r} returns {captured.convention.return_type}")
        primal_count = len(captured.convention.parameter_types)
        tangent_pointers = tuple(range(primal_count, primal_count + len(forward.duplicated)))
        return_tangent = len(tangent.function_type.params) - 1
        spec = ReverseSpec(
            duplicated=forward.duplicated + tangent_pointers + (return_tangent,),
            active=forward.active,
            return_type=forward.return_type,
            duplicated_types=forward.duplicated_types * 2 + (forward.return_type,),
            distinct_arguments=distinct,
            minimize_cache=differentiable.cache_minimization,
            loose_types=differentiable.loose_types)
        _refuse_typed_lists(module, differentiable.__name__)
        function = build_reverse(module, tangent, spec, "enzpy.hvp." + captured.convention.entry)
    except DifferentiationError as error:
        raise DifferentiationError(for_user(str(error), differentiable._where())) from None
    text = write_module(module)
    entry = differentiable._entry_point(captured, text, function)
    arrays = tuple(i for i, kind in enumerate(kinds) if kind.__name__ == "Duplicated")
    scalars = tuple(i for i, kind in enumerate(kinds) if kind.__name__ == "Active")
    result_dtype = np.dtype(str(captured.convention.return_type))
    return _HessianVectorProduct(entry, arrays, scalars, result_dtype, text)


def _refuse_typed_lists(module, name: str) -> None:
    """Forward mode mirrors a typed list's C calls on a shadow list; reverse mode over that code is
    not built yet (it crashed): refused by name."""
    for function in module.functions.values():
        if function.name.startswith("numba_list_") and function.is_declaration:
            raise DifferentiationError(f"hvp / hessian of {name!r}: second derivatives of kernels that use "
                                       "numba.typed.List are not supported yet")


def hvp(differentiable, args, direction) -> tuple:
    """H v, aligned with `args`: an array for a float array, a float for a float scalar, None for
    the rest. `direction` is aligned with `args` too (None: zero). The arguments are not modified."""

    args = tuple(args)
    direction = tuple(direction)
    if len(direction) != len(args):
        raise ValueError(f"hvp needs one direction entry per argument ({len(args)}), got {len(direction)}")
    args = copy_arguments(args)
    kinds = _kinds(args)
    tangents = []
    for index, (value, kind, entry) in enumerate(zip(args, kinds, direction)):
        if kind.__name__ == "Duplicated":
            tangent = np.zeros_like(value) if entry is None else np.asarray(entry, dtype=value.dtype)
            if tangent.shape != value.shape:
                raise ValueError(f"direction of argument {index} ({differentiable._argument_name(index)!r}) "
                                 f"must have shape {value.shape}, got {tangent.shape}")
            tangents.append(_like(value, tangent))
        elif kind.__name__ == "Active":
            tangents.append(0.0 if entry is None else float(entry))
        elif entry is not None:
            raise TypeError(f"direction of argument {index} ({differentiable._argument_name(index)!r}) must be "
                            "None: only float arrays and float scalars are inputs")
        else:
            tangents.append(None)
    arrays = [args[i] for i in range(len(args)) if kinds[i].__name__ == "Duplicated"]
    distinct = arrays_are_distinct(arrays)
    if not distinct:
        raise DifferentiationError(f"hvp / hessian of {differentiable.__name__!r}: arguments share memory; "
                                   "pass separate copies")
    compiled = compiled_hvp(differentiable, args, distinct)
    convention = compiled.entry.convention
    parameters = primal_parameters(convention, args)
    array_tangents = [tangents[i] for i in compiled.arrays]
    for tangent in array_tangents:
        parameters.append(tangent.ctypes.data)
    for i in compiled.scalars:
        parameters.append(tangents[i])
    return_tangent = np.zeros(1, compiled.result_dtype)
    parameters.append(return_tangent.ctypes.data)
    products = [np.zeros_like(args[i]) for i in compiled.arrays]
    scratch = [np.zeros_like(args[i]) for i in compiled.arrays]
    seed = np.ones(1, compiled.result_dtype)
    parameters += [p.ctypes.data for p in products] + [s.ctypes.data for s in scratch] + [seed.ctypes.data]
    scalar_outputs = [np.zeros(1, convention.arguments[i].dtype) for i in compiled.scalars]
    parameters += [o.ctypes.data for o in scalar_outputs]
    parameters.append(0.0)                        # the seed of f itself: only t = grad f . v is seeded
    compiled.entry.call_raw(parameters)
    result = [None] * len(args)
    for i, product in zip(compiled.arrays, products):
        result[i] = product
    for i, output in zip(compiled.scalars, scalar_outputs):
        result[i] = output[0].item()
    return tuple(result)


def _like(value: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    copy = np.empty_like(value)
    copy[...] = tangent
    return copy


def hessian(differentiable, args, positions=None) -> np.ndarray:
    """The Hessian at `args`: rows and columns are the float inputs (at `positions`, default all)
    flattened in C order and concatenated in argument order (a scalar is one entry), one HVP per
    column."""
    args = tuple(args)
    kinds = _kinds(args)
    inputs = [i for i, kind in enumerate(kinds) if kind.__name__ in ("Duplicated", "Active")
              and (positions is None or i in positions)]
    sizes = [args[i].size if isinstance(args[i], np.ndarray) else 1 for i in inputs]
    total = sum(sizes)
    matrix = np.zeros((total, total))
    column = 0
    for position, size in zip(inputs, sizes):
        for element in range(size):
            direction = [None] * len(args)
            if isinstance(args[position], np.ndarray):
                unit = np.zeros(args[position].size, dtype=args[position].dtype)
                unit[element] = 1.0
                direction[position] = unit.reshape(args[position].shape)
            else:
                direction[position] = 1.0
            product = hvp(differentiable, args, direction)
            matrix[:, column] = np.concatenate([np.ravel(np.asarray(product[i], np.float64)) for i in inputs])
            column += 1
    return matrix
