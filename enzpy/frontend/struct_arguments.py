"""C structs passed by value to a differentiated function.

C passes a struct by value in one of three ways, and which one is decided
separately at the definition and at each call (x86-64: by the registers left):

- *in registers*: split into "eightbytes", each one an LLVM parameter
  (`{double gamma; int m}` -> `double, i32`; `{float a, b, c}` ->
  `<2 x float>, float`);
- *byval*: a pointer to a copy, `ptr byval(%struct.S)`;
- *as an aggregate*: `%struct.S %s` (other targets, other frontends).

An Enzyme call is variadic, so the call may pass a struct `byval` where the
function takes it in registers (the call has used up the integer registers
on the function pointer, the markers and the arrays before it). enzpy then
gives the adapter it differentiates (`clang.py`) one *pointer* parameter for
the struct, which it loads the registers from (or passes on `byval`, or loads
the aggregate from): the derivative sees the struct as memory, so a marker
covers the whole struct and `enzyme_dup`'s shadow is a shadow struct in
memory, added into in reverse mode like any shadow. Its shadow must then be
passed by address (`&dw`): a shadow passed by value is a copy the
derivative's additions would be lost in.

Where the call passes the struct in registers too, each register is a
parameter of its own. clang marks every scalar C argument `noundef` and no
part of a split struct, which is how a marker finds the parts it covers: it
applies to the run of un-marked parts after it, not only to the first
(Enzyme, reading LLVM parameters, gives the second field of a struct the
default activity instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..ir.text import parse_type_text
from ..ir.types import PTR, VOID, ArrayType, StructType, Type, VectorType, quote_name, size_in_bytes
from .enzyme_features import ForeignCodeError

_BYVAL = re.compile(r"\bbyval\(")


@dataclass(frozen=True)
class StructPassing:
    """How the pointer parameter the adapter takes for a struct reaches the differentiated function."""

    struct_type: Type
    """The C struct (the pointee of the call's `byval` pointer)."""
    form: str
    """`registers`, `byval` or `aggregate`: how the function takes it."""
    parameter_types: tuple[Type, ...]
    """The function's LLVM parameters the struct fills, in order."""

    @property
    def offsets(self) -> tuple[int, ...]:
        """Byte offset of each register's part: eightbytes, each register starting a new one."""
        offsets, offset = [], 0
        for ty in self.parameter_types:
            offsets.append(offset)
            offset += -(-size_in_bytes(ty) // 8) * 8
        return tuple(offsets)


def byval_type(argument: str, named: dict) -> Type | None:
    """The struct a call argument (`ptr noundef byval(%struct.W) align 8 %1`) passes by value, or None."""
    found = _BYVAL.search(argument)
    if found is None:
        return None
    depth, start = 1, found.end()
    for end in range(start, len(argument)):
        depth += {"(": 1, ")": -1}.get(argument[end], 0)
        if depth == 0:
            return parse_type_text(argument[start:end], named)
    return None


def byval_parameter_types(function, named: dict) -> list[Type | None]:
    """For each parameter of an llvmlite function: the struct it takes `byval`, or None."""
    found = []
    for argument in function.arguments:
        attributes = " ".join(a.decode() for a in argument.attributes)
        found.append(byval_type("ptr " + attributes, named) if "byval(" in attributes else None)
    return found


def passing_at(struct_type: Type, parameters: list[Type], byval_parameters: list[Type | None], position: int,
               where: str) -> StructPassing:
    """How the function takes, from parameter `position` on, the struct a call passes `byval`."""
    if byval_parameters[position] is not None:
        return StructPassing(struct_type, "byval", (PTR,))
    first = parameters[position]
    if isinstance(first, (StructType, ArrayType)):
        return StructPassing(struct_type, "aggregate", (first,))
    size, taken, covered = size_in_bytes(struct_type), [], 0
    for ty in parameters[position:]:
        if covered >= size:
            break
        if size_in_bytes(ty) > 8 or isinstance(ty, (StructType, ArrayType)):
            break
        taken.append(ty)
        covered += 8
    if not taken or covered < size:
        raise ForeignCodeError(f"{where}: the call passes a {struct_type} by value, and the function's "
                               f"parameters from {position} on ({', '.join(map(str, parameters[position:]))}) "
                               "do not take it in registers the way enzpy knows (x86-64 eightbytes)")
    if any(isinstance(ty, VectorType) for ty in taken):
        raise ForeignCodeError(f"{where}: the function takes the {struct_type} passed by value in vector "
                               f"registers ({', '.join(map(str, taken))}), which enzpy does not differentiate "
                               "through; pass a pointer to it instead")
    return StructPassing(struct_type, "registers", tuple(taken))


def has_float_field(ty: Type) -> bool:
    if isinstance(ty, StructType):
        return any(has_float_field(e) for e in ty.elements)
    if isinstance(ty, (ArrayType, VectorType)):
        return has_float_field(ty.element)
    return ty.is_float


def check_struct_activity(activity: str, passing: StructPassing, mode: str, shadow_argument: str | None,
                          where: str) -> None:
    """What a marker may ask of a struct passed by value (its shadow, when it has one, by address in reverse)."""
    if activity == "out":
        raise ForeignCodeError(f"{where}: enzyme_out on a {passing.struct_type} passed by value is not "
                               "supported; use enzyme_dup with the address of a shadow struct (&d)")
    if activity in ("dup", "dupnoneed") and mode == "reverse" and shadow_argument is not None \
            and "byval(" in shadow_argument:
        raise ForeignCodeError(f"{where}: the shadow of a {passing.struct_type} passed by value is passed by "
                               "value too, so the derivative added into it would be lost; pass its address "
                               "(&d) instead")


def default_struct_activity(passing: StructPassing, mode: str, where: str) -> str:
    if not has_float_field(passing.struct_type):
        return "const"
    raise ForeignCodeError(f"{where}: a {passing.struct_type} passed by value needs a marker (enzyme_const, "
                           "or enzyme_dup and the address of its shadow)")


def adapter_argument(index: int, passing: StructPassing | None, ty: Type,
                     restrict: bool = False) -> tuple[str, list[str], list[str]]:
    """(adapter parameter, lines before the call, the call's arguments) for parameter `index`
    (`restrict`: the function's parameter is `noalias`, and so is the adapter's)."""
    name = f"%argument.{index}"
    if passing is None:
        return f"{ty}{' noalias' if restrict else ''} {name}", [], [f"{ty} {name}"]
    if passing.form == "byval":
        return f"ptr {name}", [], [f"ptr byval({passing.struct_type}) {name}"]
    if passing.form == "aggregate":
        aggregate = passing.parameter_types[0]
        return f"ptr {name}", [f"  {name}.value = load {aggregate}, ptr {name}"], [f"{aggregate} {name}.value"]
    lines, arguments = [], []
    for part, (part_type, offset) in enumerate(zip(passing.parameter_types, passing.offsets)):
        lines += [f"  {name}.at.{part} = getelementptr i8, ptr {name}, i64 {offset}",
                  f"  {name}.part.{part} = load {part_type}, ptr {name}.at.{part}"]
        arguments.append(f"{part_type} {name}.part.{part}")
    return f"ptr {name}", lines, arguments


def adapter_text(adapter_name: str, function_name: str, function_type, passing: tuple,
                 restrict: frozenset[int] = frozenset()) -> str:
    """`i32 @adapter(ptr %retptr, params...)`: calls the function and stores its result (numba's
    convention); a struct passed by value is one pointer parameter (see the module's docstring);
    `restrict`: the function's `noalias` parameters (by LLVM parameter index)."""
    parameters, before, arguments = [], [], []
    types = iter(enumerate(function_type.params))
    for index, form in enumerate(passing or (None,) * len(function_type.params)):
        position, ty = next(types)
        for _ in range(len(form.parameter_types) - 1 if form is not None else 0):
            next(types)
        parameter, lines, call_arguments = adapter_argument(index, form, ty, position in restrict)
        parameters.append(parameter)
        before += lines
        arguments += call_arguments
    result = function_type.return_type
    call = f"call {result} @{quote_name(function_name)}({', '.join(arguments)})"
    body = [*before, f"  {call}"] if result == VOID else \
        [*before, f"  %result = {call}", f"  store {result} %result, ptr %retptr"]
    header = f"define i32 @{quote_name(adapter_name)}({', '.join(['ptr %retptr', *parameters])}) {{"
    return "\n".join(["", header, "entry:", *body, "  ret i32 0", "}", ""])


def split_part(argument: str) -> bool:
    """Whether a value argument of an Enzyme call is a register of a struct split by value (see above)."""
    return not argument.startswith("ptr") and " noundef " not in f" {argument} "


def split_struct_group(parameters, index, position, operands, argument_texts, activity, mode, marker_at,
                       where) -> dict[int, str]:
    """{part: activity} for a struct the call passes in registers, from parameter `index` and call
    argument `position` on: the marker's `activity` (None: no marker) covers the run of split
    registers after it."""
    run = 0
    while position + run < len(operands) and marker_at(position + run) is None \
            and split_part(argument_texts[position + run]):
        run += 1
    count = 2 if activity in ("dup", "dupnoneed") else 1
    size = run // count
    function_run = 0
    while index + function_run < len(parameters) and not parameters[index + function_run].is_pointer:
        function_run += 1
    size = min(size, function_run)
    if size == 0 or run % count:
        raise ForeignCodeError(f"{where}: a struct passed by value in registers: {run} register(s) after "
                               f"{activity or 'no marker'}, which does not divide into {count} copies of it")
    if activity is None:
        if mode == "forward":
            raise ForeignCodeError(f"{where}: a struct passed by value needs a marker in forward mode "
                                   "(enzyme_const, or enzyme_dup, the struct and its tangent)")
        activity = "out"
    if activity in ("dup", "dupnoneed") and mode == "reverse":
        raise ForeignCodeError(f"{where}: enzyme_dup on a struct passed by value: its shadow is passed by "
                               "value too, so the derivative added into it would be lost; pass its address "
                               "instead")
    if activity in ("dup", "dupnoneed") and not all(parameters[index + part].is_float for part in range(size)):
        raise ForeignCodeError(f"{where}: enzyme_dup on a struct passed by value in registers that holds "
                               "integer fields is not supported; pass it by address")
    return {part: activity for part in range(size)}


def interleaved(position: int, size: int, count: int) -> list[int]:
    """Call argument indices for `size` parameters: their values, then (count 2) their shadows, as the
    interface takes them (each value followed by its shadow)."""
    if count == 1:
        return list(range(position, position + size))
    return [position + offset + copy * size for offset in range(size) for copy in range(2)]
