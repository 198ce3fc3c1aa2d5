"""`enzpy.autodiff(f, annotations...)`, in Python and inside `@njit` code.

In Python it is `differentiate(f).autodiff(...)`. Inside numba-compiled code
numba types the call: `Const(x)`, `Active(x)` and `Duplicated(x, dx)` are
small structs there (`AnnotationType`), and the overload of `autodiff`
compiles f's gradient (or tangent function, `mode="forward"`) for those types
when the caller is compiled, then emits a direct call of its machine code
with the arguments exploded as numba passes them: no Python on the call path.
The derivative is the one a Python call gets, compiled for overlapping
arguments (njit code cannot promise that arrays are distinct); a shadow of
another shape raises ValueError, a raising kernel RuntimeError.

    reverse: returns the tuple of the Active arguments' derivatives; Duplicated
             shadows accumulate (+=); in Python `seed` scales the result's adjoint
             (in njit code it is 1).
    forward: returns the tangent of f's float result (None for none): Active
             scalars have tangent 1, Duplicated(x, dx) tangent dx.

The compiled derivative lives in enzpy's own JIT engine as long as f's
dispatcher; its address is process-local, so callers must not be cached to
disk (`cache=True`).
"""

from __future__ import annotations

import inspect

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import lower_builtin, models, register_model, type_callable

from .api import Active, Const, Differentiable, Duplicated, differentiate
from .errors import DifferentiationError


def autodiff(f, *annotated, mode: str = "reverse", seed=1.0):
    """Enzyme-style call of f's derivative (`Differentiable.autodiff`); also inside njit code.

    `f` is an `@njit` function (or a `differentiate`d one). Inside njit code the derivative is
    compiled with the caller and called directly, `seed` is 1 and `mode` a literal string.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Const, Duplicated, autodiff
    >>> @numba.njit
    ... def loss(x, a):
    ...     return a * np.sum(x * x)
    >>> x, dx = np.array([1.0, 2.0]), np.zeros(2)
    >>> autodiff(loss, Duplicated(x, dx), Active(0.5))           # from Python
    (5.0,)
    >>> dx
    array([1., 2.])
    >>> autodiff(loss, Duplicated(x, np.array([1.0, 0.0])), Const(0.5), mode="forward")
    1.0
    >>> @numba.njit
    ... def descend(x, dx, a, rate):
    ...     dx[:] = 0.0
    ...     (da,) = autodiff(loss, Duplicated(x, dx), Active(a))   # compiled into descend
    ...     x -= rate * dx
    ...     return da
    >>> descend(x, dx, 0.5, 0.5)
    5.0
    >>> x
    array([0.5, 1. ])
    """
    kernel = f if isinstance(f, Differentiable) else differentiate(f)
    return kernel.autodiff(*annotated, mode=mode, seed=seed)


# -- the annotations as numba types

class AnnotationType(types.Type):
    """`Const(x)`, `Active(x)` or `Duplicated(x, dx)` in numba-compiled code."""

    def __init__(self, kind: str, value, shadow=None):
        self.kind, self.value, self.shadow = kind, value, shadow
        inside = f"{value}" if shadow is None else f"{value}, {shadow}"
        super().__init__(name=f"{kind}({inside})")


@register_model(AnnotationType)
class _AnnotationModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        members = [("value", fe_type.value)] + ([("shadow", fe_type.shadow)] if fe_type.shadow is not None else [])
        super().__init__(dmm, fe_type, members)


def _register_annotation(cls, kind: str, arity: int) -> None:
    @type_callable(cls)
    def typer(context):
        if arity == 1:
            return lambda value: AnnotationType(kind, value)
        return lambda value, shadow: AnnotationType(kind, value, shadow)

    @lower_builtin(cls, *([types.Any] * arity))
    def lower(context, builder, signature, arguments):
        struct = cgutils.create_struct_proxy(signature.return_type)(context, builder)
        struct.value = arguments[0]
        if arity == 2:
            struct.shadow = arguments[1]
        return impl_ret_borrowed(context, builder, signature.return_type, struct._getvalue())


_register_annotation(Const, "Const", 1)
_register_annotation(Active, "Active", 1)
_register_annotation(Duplicated, "Duplicated", 2)


# -- typing and lowering of the call
#
# A typing template, not @overload: numba binds a keyword-only `mode` after `*annotated` to the
# last positional argument when it compiles an overload's implementation. The template returns a
# signature whose Python form names each argument (f, a0, ..., mode), so numba folds the call's
# arguments and keywords correctly, and the lowering emits the call itself.

_CALLS: dict = {}
"""Signature -> the derivative call's code generator (made when the call was typed)."""


@infer_global(autodiff)
class _AutodiffTemplate(AbstractTemplate):
    prefer_literal = True             # mode="forward" arrives as a literal string

    def generic(self, args, kws):
        if not args:
            return None
        f, annotated = args[0], args[1:]
        if not isinstance(f, types.Dispatcher):
            return None
        # A `differentiate` object is typed as its dispatcher (api._register_with_numba); derivatives
        # compiled for the dispatcher are shared by every differentiate() of it with default options.
        kernel = differentiate(f.dispatcher)
        unknown = set(kws) - {"mode"}
        if unknown:
            raise DifferentiationError(f"enzpy.autodiff in njit code takes mode= only as a keyword, not "
                                       f"{', '.join(sorted(unknown))} (the seed is 1 there)")
        mode = kws.get("mode", types.Omitted("reverse"))
        mode_name = mode.literal_value if isinstance(mode, types.StringLiteral) else \
            mode.value if isinstance(mode, types.Omitted) else None
        if mode_name not in ("reverse", "forward"):
            raise DifferentiationError(f"enzpy.autodiff in njit code: mode must be 'reverse' or 'forward' as a "
                                       f"literal string, not {mode}")
        kinds = tuple({"Const": Const, "Active": Active, "Duplicated": Duplicated}[a.kind]
                      if isinstance(a, AnnotationType) else Const for a in annotated)
        primal_types = tuple(a.value if isinstance(a, AnnotationType) else a for a in annotated)
        _check_shadow_types(kernel, annotated)
        result_type, codegen = _derivative_call(kernel, mode_name, primal_types, kinds, annotated)
        parameters = [inspect.Parameter("f", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += [inspect.Parameter(f"a{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(len(annotated))]
        parameters.append(inspect.Parameter("mode", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="reverse"))
        sig = signature(result_type, f, *annotated, mode)
        _CALLS[sig.args] = codegen
        return sig.replace(pysig=inspect.Signature(parameters))


@lower_builtin(autodiff, types.VarArg(types.Any))
def _lower_autodiff(context, builder, sig, arguments):
    return _CALLS[sig.args](context, builder, sig, arguments[1:-1])


def _check_shadow_types(kernel, annotated) -> None:
    for index, annotation in enumerate(annotated):
        if isinstance(annotation, AnnotationType) and annotation.kind == "Duplicated" \
                and isinstance(annotation.value, types.Array):
            shadow = annotation.shadow
            if not isinstance(shadow, types.Array) or shadow.dtype != annotation.value.dtype \
                    or shadow.ndim != annotation.value.ndim:
                raise DifferentiationError(f"enzpy.autodiff of {kernel.__name__!r} in njit code: the shadow of "
                                           f"argument {index} is {shadow}, expected an array like "
                                           f"{annotation.value}")


def _derivative_call(kernel: Differentiable, mode: str, primal_types, kinds, annotated_types):
    """(result type, code generator) of a call of f's derivative (compiled here, once per types)."""
    if mode == "reverse":
        key = (("njit", *primal_types), tuple(k.__name__ for k in kinds), False)
        compiled = kernel._gradients.get(key)
        if compiled is None:
            compiled = kernel._gradients[key] = kernel._compile(None, kinds, False, types=primal_types)
    else:
        key = (("njit", *primal_types), tuple(k.__name__ for k in kinds), 1)
        compiled = kernel._tangents.get(key)
        if compiled is None:
            compiled = kernel._tangents[key] = kernel._compile_forward(None, kinds, 1, types=primal_types)
    convention = compiled.entry.convention
    address = compiled.entry.compiled.address(convention.entry)
    parameter_types = convention.parameter_types
    actives = [i for i, kind in enumerate(kinds) if kind is Active]
    if mode == "reverse":
        outputs = [primal_types[i] for i in actives]
        result_type = types.Tuple(tuple(outputs)) if outputs else types.Tuple(())
    else:
        result_type = convention.return_type if compiled.returns_tangent else types.none

    def codegen(context, builder, sig, values):
        parameters, shadows, tangents = [], [], []
        for index, (ty, value) in enumerate(zip(annotated_types, values)):
            primal, shadow = value, None
            if isinstance(ty, AnnotationType):
                struct = cgutils.create_struct_proxy(ty)(context, builder, value=value)
                primal = struct.value
                shadow = struct.shadow if ty.shadow is not None else None
                ty = ty.value
            if isinstance(ty, types.Array):
                array = context.make_array(ty)(context, builder, primal)
                parameters += [array.meminfo, array.parent, array.nitems, array.itemsize, array.data,
                               *cgutils.unpack_tuple(builder, array.shape),
                               *cgutils.unpack_tuple(builder, array.strides)]
                if shadow is not None:
                    shadow_array = context.make_array(annotated_types[index].shadow)(context, builder, shadow)
                    _check_same_shape(context, builder, array, shadow_array, index, kernel.__name__)
                    shadows.append(shadow_array.data)
            else:
                parameters.append(primal)
                if kinds[index] is Active:
                    tangents.append(context.get_constant(ty, 1.0))
                elif shadow is not None:
                    tangents.append(context.cast(builder, shadow, annotated_types[index].shadow, ty))
        retptr = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(8), 16))
        excinfo = cgutils.alloca_once(builder, ir.IntType(8).as_pointer())
        extra, outputs = list(shadows), []
        if mode == "reverse":
            for i in actives:
                slot = cgutils.alloca_once_value(builder, context.get_constant(primal_types[i], 0.0))
                outputs.append(slot)
                extra.append(slot)
            if compiled.seeded:
                extra.append(context.get_constant(convention.return_type, 1.0))
        else:
            extra += tangents
            if compiled.returns_tangent:
                slot = cgutils.alloca_once_value(builder, context.get_constant(convention.return_type, 0.0))
                outputs.append(slot)
                extra.append(slot)
        all_parameters = [builder.bitcast(retptr, ir.IntType(8).as_pointer()), excinfo] + parameters + extra
        all_parameters = [_as_parameter(builder, value, parameter_types[k]) for k, value in enumerate(all_parameters)]
        function_type = ir.FunctionType(ir.IntType(32), [v.type for v in all_parameters])
        function = builder.inttoptr(ir.Constant(ir.IntType(64), address), function_type.as_pointer())
        status = builder.call(function, all_parameters)
        failed = builder.and_(builder.icmp_signed("!=", status, ir.Constant(ir.IntType(32), 0)),
                              builder.icmp_signed("!=", status, ir.Constant(ir.IntType(32), -2)))
        with cgutils.if_unlikely(builder, failed):
            context.call_conv.return_user_exc(builder, RuntimeError, (
                f"enzpy.autodiff: the derivative of {kernel.__name__!r} raised (call it from Python to see "
                "the exception)",))
        loaded = [builder.load(slot) for slot in outputs]
        if mode == "reverse":
            return context.make_tuple(builder, sig.return_type, loaded)
        return loaded[0] if loaded else context.get_dummy_value()

    return result_type, codegen


def _as_parameter(builder, value, llvm_type: str):
    """Integers and floats as they are; pointers as the same bits whatever numba typed them."""
    if llvm_type == "ptr":
        return value if value.type == ir.IntType(8).as_pointer() else builder.bitcast(value, ir.IntType(8).as_pointer())
    return value


def _check_same_shape(context, builder, array, shadow, index: int, name: str) -> None:
    same = cgutils.true_bit
    for extent, shadow_extent in zip(cgutils.unpack_tuple(builder, array.shape),
                                     cgutils.unpack_tuple(builder, shadow.shape)):
        same = builder.and_(same, builder.icmp_signed("==", extent, shadow_extent))
    with cgutils.if_unlikely(builder, builder.not_(same)):
        context.call_conv.return_user_exc(builder, ValueError, (
            f"enzpy.autodiff of {name!r}: the shadow of argument {index} has another shape than the array",))
