"""The interface function: a C call's exact types around a derivative of the adapter.

The derivative takes numba's convention (result slot, primals, shadows,
adjoint outputs, seed); the interface takes the arguments the C call passes,
converts them (varargs promote floats to double), calls the derivative and
lays the derivatives out as the call's declared return type says.
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.types import I8, I32, I64, VOID, ArrayType, FunctionType, StructType, Type, VectorType
from .enzyme_features import ForeignCodeError
from .request import Request

ENTRY_POINTS = {"reverse": "autodiff", "forward": "fwddiff", "augmented": "augmentfwd", "split reverse": "reverse"}

def convert_argument(builder: Builder, value: core.Value, ty: Type, where: str) -> core.Value:
    """A C argument as the parameter takes it (varargs promote float to double and short ints to int)."""
    if value.type == ty:
        return value
    if value.type.is_float and ty.is_float:
        return builder.cast("fptrunc" if value.type.width > ty.width else "fpext", value, ty)
    if value.type.is_integer and ty.is_integer:
        return builder.cast("trunc" if value.type.width > ty.width else "sext", value, ty)
    raise ForeignCodeError(f"{where}: got a {value.type} for a parameter of type {ty}")


def start_interface(module: core.Module, request: Request, name: str) -> tuple[core.Function, Builder]:
    """`@name` with the request's exact types, and a builder in its entry block."""
    for ty in (request.return_type, request.sret_type, *request.argument_types):
        register_named_structs(module, ty)
    interface = core.Function(name, FunctionType(request.return_type, request.argument_types))
    module.add_function(interface)
    return interface, Builder(module).at_end(interface.append_block("entry"))


def interface_operands(builder: Builder, arguments, primal: core.Function, request: Request):
    """(primals, shadows, actives, outputs) from the interface's arguments (an iterator, consumed up to
    the function's parameters): each primal converted to the adapter's parameter type; shadows and
    tangents / adjoint slots, a list of `request.width` per parameter, keyed by the adapter's parameter
    index; `out` slots with their types."""
    primals, shadows, actives, outputs = [], {}, {}, []
    for index, activity in enumerate(request.activities):
        parameter = primal.arguments[index + 1]
        where = f"parameter {index} of @{request.function}"
        primals.append(convert_argument(builder, next(arguments), parameter.type, where))
        if activity in ("dup", "dupnoneed"):
            lanes = [next(arguments) for _ in range(request.width)]
            if parameter.type.is_float:
                actives[index + 1] = [convert_argument(builder, tangent, parameter.type, where + " (tangent)")
                                      for tangent in lanes]
            else:
                shadows[index + 1] = lanes
        elif activity == "out":
            if request.pointer_outputs:
                actives[index + 1] = [next(arguments)]
            else:
                slot = builder.alloca(parameter.type, f"derivative.{index}")
                builder.store(constant_float(parameter.type, 0.0), slot)
                actives[index + 1] = [slot]
                outputs.append((slot, parameter.type))
    return primals, shadows, actives, outputs


def build_interface(module: core.Module, primal: core.Function, derivative: core.Function, spec,
                    request: Request, name: str, function_type: FunctionType) -> core.Function:
    """`@name` with the request's exact types: converts, calls the derivative, lays out the results."""
    interface, builder = start_interface(module, request, name)
    arguments = iter(interface.arguments)
    sret = next(arguments) if request.sret_type is not None else None
    result_type = function_type.return_type
    result_slot = builder.alloca(result_type if result_type != VOID else I8, "result")
    primals, shadows, actives, outputs = interface_operands(builder, arguments, primal, request)
    call_arguments = [result_slot, *primals, *(s for i in spec.duplicated for s in shadows[i]),
                      *(a for i in spec.active for a in actives[i])]
    tangent_slot = None
    if spec.return_type is not None:
        if request.mode == "reverse":
            seed = next(arguments) if request.pointer_outputs else constant_float(spec.return_type, 1.0)
            call_arguments.append(seed)
        else:
            tangent_slot = builder.alloca(ArrayType(request.width, spec.return_type), "tangents")
            call_arguments.append(tangent_slot)
    builder.call(derivative, call_arguments)
    if tangent_slot is not None:
        values = [builder.load(spec.return_type, builder.gep(spec.return_type, tangent_slot, [constant_int(I64, lane)]))
                  for lane in range(request.width)]
    else:
        values = [builder.load(ty, slot) for slot, ty in outputs]
    return_values(builder, values, request, sret)
    return interface


def register_named_structs(module: core.Module, ty: Type | None) -> None:
    """Named structs of the C call's types: the optimizer dropped those only main used."""
    if isinstance(ty, StructType):
        for element in ty.elements:
            register_named_structs(module, element)
        if ty.name is not None:
            module.named_structs.setdefault(ty.name, ty)
    elif isinstance(ty, (ArrayType, VectorType)):
        register_named_structs(module, ty.element)


def _leaves(ty: Type, path=()) -> list[tuple[tuple[int, ...], Type]]:
    """The scalar fields of a (nested) struct, array or vector type with their index paths."""
    if isinstance(ty, StructType):
        return [leaf for index, element in enumerate(ty.elements) for leaf in _leaves(element, path + (index,))]
    if isinstance(ty, (ArrayType, VectorType)):
        return [leaf for index in range(ty.count) for leaf in _leaves(ty.element, path + (index,))]
    return [(path, ty)]


def return_values(builder: Builder, values: list[core.Value], request: Request, sret) -> None:
    """Return the derivatives laid out as the C call expects them (value, struct, vector or sret)."""
    result = request.return_type
    where = f"__enzyme_{ENTRY_POINTS[request.mode]} of @{request.function}"
    target = request.sret_type if sret is not None else result
    if target == VOID:
        # Declared void, the call returns nothing: the derivatives of enzyme_out parameters are
        # dropped and the shadows still filled, as Enzyme does (forward mode: the result's tangent).
        builder.ret()
        return
    leaves = _leaves(target)
    if not values and len(leaves) == 1 and leaves[0][1].is_float:
        values = [constant_float(leaves[0][1], 0.0)]
    if len(leaves) != len(values) or not all(ty.is_float for _, ty in leaves):
        raise ForeignCodeError(f"{where} returns {target}, which does not hold its {len(values)} float "
                               "derivative(s) (one per enzyme_out parameter, in order)")
    values = [convert_argument(builder, v, ty, where) for v, (_, ty) in zip(values, leaves)]
    if sret is not None:
        for value, (path, _) in zip(values, leaves):
            indices = [constant_int(I32, 0)] + [_gep_index(target, path[:k + 1]) for k in range(len(path))]
            builder.store(value, builder.gep(target, sret, indices))
        builder.ret()
    elif len(leaves) == 1 and not leaves[0][0]:
        builder.ret(values[0])
    elif isinstance(target, VectorType):
        vector: core.Value = core.Undef(target)
        for value, (path, _) in zip(values, leaves):
            vector = builder.insert(core.VectorOperation(type=target, opcode="insertelement",
                                                         operands=[vector, value, constant_int(I64, path[0])]))
        builder.ret(vector)
    else:
        aggregate: core.Value = core.Undef(target)
        for value, (path, _) in zip(values, leaves):
            aggregate = builder.insert(core.InsertValue(type=target, opcode="insertvalue", indices=path,
                                                        operands=[aggregate, value]))
        builder.ret(aggregate)


def _gep_index(ty: Type, path: tuple[int, ...]) -> core.Value:
    """GEP index for the last step of `path` into `ty`: i32 into a struct, i64 into an array."""
    for step in path[:-1]:
        ty = ty.elements[step] if isinstance(ty, StructType) else ty.element
    return constant_int(I32 if isinstance(ty, StructType) else I64, path[-1])
