"""C and C++ through clang: Enzyme's `__enzyme_autodiff` / `__enzyme_fwddiff` on LLVM IR.

    enzpy opt IN.ll -o OUT.ll          differentiate_enzyme_calls(text)
    enzpy grad IN.ll --function f ...  add_derivative(text, "f", activities, mode)

A C program asks for derivatives the way it asks Enzyme:

    double __enzyme_autodiff(void *, ...);
    extern int enzyme_dup, enzyme_const, enzyme_out, enzyme_dupnoneed;
    double df_ds = __enzyme_autodiff((void *)f, enzyme_dup, x, dx, enzyme_const, n, s);

Each parameter of `f` takes an optional marker and then its value(s):
`enzyme_dup` / `enzyme_dupnoneed` a value and its shadow, `enzyme_const` a
value, `enzyme_out` (reverse mode, float scalars) a value whose derivative is
returned. Without a marker, pointers are `dup`, integers `const`, and float
scalars `out` in reverse mode and `dup` (value and tangent) in forward mode,
as in Enzyme. Reverse mode seeds a float result with 1.0 and returns the
`enzyme_out` derivatives in order: one float, or a struct (or small vector)
of them exactly as the call's C return type lays it out, including structs
returned through a hidden `sret` pointer; declared `void`, it drops them
(the shadows are still filled), as Enzyme does. Forward mode returns the
tangent of `f`'s result. A marker may be passed by value or by address
(`&enzyme_const`, as C++ templates pass it). Enzyme's other requests
(entry points, registrations, the gradient logger) are refused by name or
accepted in `enzyme_features`.

How (per distinct request; see DESIGN.md for the numba side):

1. the module gets an adapter `i32 @enzpy.adapted.f(ptr %retptr, f's params)`
   that calls `f` and stores its result: numba's convention, which
   `build_reverse` / `build_forward` expect;
2. `noinline`/`optnone` (clang -O0) are dropped, every other defined function
   becomes internal so that, after the pre-AD pipeline inlines `f` and its
   callees into the adapter, the rest of the program is deleted (`static`
   variables become external, so that the values the program gives them at
   run time are not folded away); vector code is scalarized (`vectors`);
3. the adapter is differentiated, an interface function with the call's exact
   parameter and result types wraps the derivative, and what the interface
   does not reach is dropped (the user's own functions and globals become
   declarations of themselves);
4. that module is optimized without vectorizing (the user's clang vectorizes
   when it compiles the result), printed, and appended to the user's text,
   whose call lines are rewritten to call the interface (`llvm_text`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import llvmlite.binding as llvm

from ..errors import EnzpyError, UnsupportedIRError
from ..ir import core, read_module, write_module
from ..ir.text import parse_type_text, unquote_name
from ..ir.types import PTR, VOID, FloatType, FunctionType, StructType, Type, \
    float_leaf_type, quote_name
from ..passes import load_pipeline
from . import llvm_text
from .c_calls import convert_calls_that_stay
from .enzyme_features import ForeignCodeError, feature_notes, marker_of_argument, refuse_unhonoured_features, \
    refuse_unknown_entry_points
from .interface import build_interface
from .module_text import ModuleText
from .progress import SILENT, Progress
from .split_mode import SPLIT_MARKERS, SplitCall, SplitMarkers, build_split_interfaces, check_allocated, \
    entry_mode, size_text
from .request import ACTIVITIES, MARKERS, Request
from .struct_arguments import StructPassing, adapter_text, byval_parameter_types, byval_type, \
    check_struct_activity, default_struct_activity, interleaved, passing_at, split_part, split_struct_group
from .vectors import scalarize_vectors

ADAPTER_PREFIX = "enzpy.adapted."
POST_AD_PIPELINE = "post_ad_foreign"
_MARKER_LOAD = re.compile(r'^(%\S+) = load (?:volatile )?i\d+, ptr @("?enzyme_[-\w$.]+"?)')


# ---------------------------------------------------------------- entry points

def differentiate_enzyme_calls(text: str, optimize: bool = True, progress: Progress = SILENT) -> str:
    """`enzpy opt`: every __enzyme_autodiff / __enzyme_fwddiff call in `text` replaced by its derivative.

    Nested calls (a function that calls __enzyme_fwddiff, itself differentiated:
    a Jacobian helper, a Hessian-vector product) are replaced innermost first:
    a round replaces the calls whose differentiated function reaches no Enzyme
    call, so the next round differentiates plain code that calls the generated
    derivative. A call to an `__enzyme_*` entry point enzpy does not implement
    is refused before anything is generated. Each round indexes the module's
    text once (`ModuleText`); each derivative costs what its function reaches.
    """
    refuse_unknown_entry_points(text)
    names: dict[Request, str] = {}
    while True:
        call_lines = llvm_text.enzyme_call_lines(text)
        if not call_lines:
            return text
        with progress.stage("index module", lambda: f"{len(index.lines)} lines, {len(index.functions)} functions"):
            index = ModuleText(text)
        with progress.stage("read Enzyme calls", lambda: f"{len(calls)} calls"), parsed(text) as module_ref:
            calls = _decode_calls(module_ref, index, call_lines)
        reaching_calls = index.reaching({caller for caller, _ in calls})
        ready = [request.function not in reaching_calls for _, (request, _, _) in calls]
        if not any(ready):
            cycle = sorted({request.function for _, (request, _, _) in calls})
            raise ForeignCodeError(f"Enzyme calls differentiate functions that reach Enzyme calls in a cycle "
                                   f"({', '.join('@' + n for n in cycle)}): recursive nested AD is not supported")
        new = list(dict.fromkeys(request for (_, (request, _, _)), is_ready in zip(calls, ready)
                                 if is_ready and request not in names))
        callers = {request: caller for caller, (request, _, _) in reversed(calls)}
        pieces, groups = [], {}
        for request in new:
            names[request] = f"enzpy.{request.mode.replace(' ', '.')}.{request.function}.{len(names)}"
            groups.setdefault(request.derivative_key, []).append(request)
        for number, group in enumerate(groups.values(), 1):
            first = group[0]
            if first.mode == "tape size":
                pieces.append(size_text(names[first], first.return_type))
                continue
            progress.note(f"[{number}/{len(groups)}] {first.derivative_key.mode} @{first.function} "
                          f"(called in @{callers[first]})")
            with progress.nested():
                pieces.append(generate_group(text, group, [names[r] for r in group], exported=False,
                                             optimize=optimize, index=index, progress=progress))
        replacements, markers = {}, set()
        for line, (_, (request, kept, used_markers)), is_ready in zip(call_lines, calls, ready):
            if not is_ready:
                continue
            markers |= used_markers
            arguments = [f"{ty} {llvm_text.argument_value(line.arguments[i], str(ty))}"
                         for i, ty in zip(kept, request.argument_types)]
            result = f"{line.result} = " if line.result else ""
            replacements[line.number] = (f"{line.indent}{result}{line.kind} {request.return_type} "
                                         f"@{quote_name(names[request])}({', '.join(arguments)}){line.suffix}")
        with progress.stage("rewrite calls and append derivatives"):
            text = llvm_text.define_marker_globals(llvm_text.replace_call_lines(text, replacements), markers)
            text = llvm_text.append_generated(text, *pieces)
        with progress.stage("verify the output"):
            check_parses(text)


def add_derivative(text: str, function: str, activities: tuple[str, ...] | None, mode: str,
                   name: str | None = None, optimize: bool = True, progress: Progress = SILENT) -> str:
    """`enzpy grad`: `text` plus an exported derivative of `function` (signature: see `grad_signature`)."""
    with parsed(text) as module_ref:
        function_type, llvm_function = _function_signature(module_ref, function)
        byval = byval_parameter_types(llvm_function, _named_structs(module_ref))
        passing = tuple(StructPassing(ty, "byval", (PTR,)) if ty is not None else None for ty in byval)
        if activities is None:
            activities = tuple(_default_activity(t, mode) for t in function_type.params)
        if len(activities) != len(function_type.params):
            raise ForeignCodeError(f"@{function} has {len(function_type.params)} parameters, got "
                                   f"{len(activities)} activities")
        for index, (activity, ty) in enumerate(zip(activities, function_type.params)):
            _check_activity(activity, ty, mode, f"parameter {index} of @{function}")
        argument_types, return_type = grad_signature(function_type, activities, mode)
        name = name or f"{function}_{mode}"
        if _has_function(module_ref, name):
            raise ForeignCodeError(f"the module already has a function @{name} (choose another with --name)")
    request = Request(function, mode, tuple(activities), argument_types, return_type,
                      passing=passing if any(passing) else (), pointer_outputs=True)
    piece = generate(text, request, name, exported=True, optimize=optimize, progress=progress)
    with progress.stage("append and verify"):
        output = llvm_text.append_generated(text, piece)
        check_parses(output)
    return output


def grad_signature(function_type: FunctionType, activities, mode: str) -> tuple[tuple[Type, ...], Type]:
    """Parameter and result types of `enzpy grad`'s function.

    Parameters follow the primal's, in order; after a `dup`/`dupnoneed`
    parameter comes its shadow (a pointer, or in forward mode for a float
    scalar its tangent value), after an `out` parameter a pointer its
    derivative is added into. Reverse mode then takes the seed of a float
    result and returns void; forward mode returns the tangent of a float
    result (void otherwise).
    """
    parameters: list[Type] = []
    for activity, ty in zip(activities, function_type.params):
        parameters.append(ty)
        if activity in ("dup", "dupnoneed"):
            parameters.append(ty if ty.is_float else PTR)
        elif activity == "out":
            parameters.append(PTR)
    result = function_type.return_type
    if mode == "reverse":
        if result.is_float:
            parameters.append(result)
        return tuple(parameters), VOID
    return tuple(parameters), result if result.is_float else VOID


@contextmanager
def parsed(text: str):
    """The module parsed by llvmlite in a context of its own (struct names stay as written)."""
    context = llvm.create_context()
    try:
        module_ref = llvm.parse_assembly(text, context=context)
    except RuntimeError as error:
        context.close()
        detail = " ".join(line.strip() for line in str(error).strip().splitlines()[1:3])
        raise UnsupportedIRError(f"LLVM cannot parse the module: {detail or error}") from None
    try:
        yield module_ref
    finally:
        module_ref.close()
        context.close()


@contextmanager
def optimized_by(pipeline: str | None, module_ref, report=None):
    """`module_ref` after a pipeline (None: as is). A stage may replace the module; the
    replacement lives in the same context and must be closed before it. `report(stage, seconds)`
    hears each stage's time."""
    module_ref.verify()
    result = load_pipeline(pipeline).run(module_ref, report=report) if pipeline else module_ref
    try:
        yield result
    finally:
        if result is not module_ref:
            result.close()


def check_parses(text: str) -> None:
    with parsed(text) as module_ref:
        try:
            module_ref.verify()
        except RuntimeError as error:
            raise UnsupportedIRError(f"enzpy produced invalid IR (a bug): {str(error).strip()}") from None


# ---------------------------------------------------------------- reading the calls

def _decode_calls(module_ref, index: ModuleText, call_lines) -> list:
    """[(caller, (Request, kept argument indices, markers used))] for each Enzyme call line, in order.

    Only the callers' instructions are visited, and markers are read from their
    text: printing an instruction through llvmlite numbers its whole function
    (and the module's globals) again, once per operand.
    """
    by_caller: dict[str, list] = {}
    for line in call_lines:
        caller = index.function_at(line.number)
        if caller is None:
            raise UnsupportedIRError(f"an Enzyme call outside a function body: line {line.number + 1}")
        by_caller.setdefault(caller, []).append(line)
    decoded = {}
    for caller, lines in by_caller.items():
        instructions = [instruction for block in module_ref.get_function(caller).blocks
                        for instruction in block.instructions
                        if instruction.opcode in ("call", "invoke") and _is_enzyme_callee(instruction)]
        if len(instructions) != len(lines):
            raise UnsupportedIRError(f"found {len(lines)} Enzyme calls in the text of @{caller} but LLVM sees "
                                     f"{len(instructions)}")
        markers = _marker_loads(index.body(caller))
        definitions = _definitions(index.body(caller))          # once per caller, for every call in it
        for line, instruction in zip(lines, instructions):
            decoded[line.number] = (caller, _decode_call(
                module_ref, caller, instruction, [marker_of_argument(a, markers) for a in line.arguments],
                index.lines, line.arguments, definitions))
    return [decoded[line.number] for line in call_lines]


def _is_enzyme_callee(instruction) -> bool:
    callee = list(instruction.operands)[-1]
    return callee.value_kind.name == "function" and bool(llvm_text.ENZYME_ENTRY_POINT.search(callee.name))


def _marker_loads(body: list[str]) -> dict[str, str]:
    """`%4` -> `enzyme_dup` for each load of a marker global in a function's text."""
    markers = {}
    for line in body:
        if "enzyme_" in line and (match := _MARKER_LOAD.match(line.strip())) is not None:
            markers[match.group(1)] = match.group(2).strip('"')
    return markers


def _function_signature(module_ref, name: str) -> tuple[FunctionType, object]:
    if not _has_function(module_ref, name):
        raise ForeignCodeError(f"the module has no function @{name}")
    function = module_ref.get_function(name)
    if function.is_declaration:
        raise ForeignCodeError(f"@{name} is only declared in this module; enzpy needs its body "
                               "(define it in the same file)")
    function_type = parse_type_text(str(function.global_value_type), _named_structs(module_ref))
    if function_type.vararg:
        raise ForeignCodeError(f"@{name} takes variable arguments, which enzpy cannot differentiate")
    for index, argument in enumerate(function.arguments):
        attributes = b" ".join(argument.attributes).decode()
        for abi in ("sret", "inalloca", "preallocated"):
            if abi + "(" in attributes or attributes.split().count(abi):
                raise ForeignCodeError(f"parameter {index} of @{name} is passed '{abi}', which enzpy does not "
                                       "support; pass a pointer instead")
    result = function_type.return_type
    if not (result == VOID or result.is_float or result.is_integer):
        raise ForeignCodeError(f"@{name} returns {result}; enzpy differentiates functions returning a float, "
                               "an integer or void")
    return function_type, function


def _has_function(module_ref, name: str) -> bool:
    try:
        module_ref.get_function(name)
    except NameError:
        return False
    return True


def _named_structs(module_ref, lines: list[str] | None = None) -> dict[str, StructType]:
    """The module's named struct types (bodies may refer to types printed after them), read from
    `lines`, the module's own text, when given (printing a large module costs more than reading it)."""
    cached = getattr(module_ref, "_enzpy_named_structs", None)
    if cached is not None:
        return cached
    named: dict[str, StructType] = {}
    module_ref._enzpy_named_structs = named
    pending = {}
    for line in lines if lines is not None else str(module_ref).split("\n"):
        if line.startswith("%") and " = type " in line:
            type_name, body = line.split(" = type ", 1)
            if body.strip() != "opaque":
                pending[unquote_name(type_name)] = body
    while pending:
        progress = False
        for name, body in list(pending.items()):
            try:
                literal = parse_type_text(body, named)
            except UnsupportedIRError:
                continue                    # refers to a type not read yet
            named[name] = StructType(literal.elements, literal.packed, name)
            del pending[name]
            progress = True
        if not progress:
            break                           # what is left is never needed or fails where it is
    return named


def _default_activity(ty: Type, mode: str) -> str:
    if ty.is_pointer:
        return "dup"
    if ty.is_float:
        return "out" if mode == "reverse" else "dup"
    return "const"


def _check_activity(activity: str, ty: Type, mode: str, where: str) -> None:
    if activity not in ACTIVITIES:
        raise ForeignCodeError(f"{where}: unknown activity {activity!r} (use {', '.join(ACTIVITIES)})")
    if activity == "out" and (mode != "reverse" or not ty.is_float):
        raise ForeignCodeError(f"{where}: enzyme_out needs a float scalar in reverse mode, got {ty} in {mode} mode")
    if activity in ("dup", "dupnoneed") and not (ty.is_pointer or (mode == "forward" and ty.is_float)):
        raise ForeignCodeError(f"{where}: enzyme_dup needs a pointer (or in forward mode a float scalar), got {ty}")
    if not (ty.is_pointer or ty.is_float or ty.is_integer):
        raise ForeignCodeError(f"{where}: parameters of type {ty} are not supported")


def _decode_call(module_ref, caller: str, call, markers: list[str | None], lines: list[str],
                 argument_texts: list[str], caller_definitions: dict[str, str] | None = None):
    """(Request, indices of the call's arguments the interface takes, marker names used).

    `markers[i]` names the marker global argument i loads (None for a value), `lines` is the module's
    text, `argument_texts` the call's arguments as written. A struct passed by value takes one marker
    for all of it (`struct_arguments`).
    """
    # An invoke's operands end with its two successor blocks, then the callee.
    operands = [o for o in list(call.operands)[:-1] if o.value_kind.name != "basic_block"]
    callee = list(call.operands)[-1]
    where = f"call to @{callee.name} in @{caller}"
    if len(markers) != len(operands):
        raise UnsupportedIRError(f"{where}: the text has {len(markers)} arguments, LLVM sees {len(operands)}")
    _marker = markers.__getitem__
    entry = entry_mode(callee.name)
    mode = "forward" if entry == "forward" else "reverse"      # split mode's halves are reverse mode
    named = _named_structs(module_ref, lines)
    kept, position, sret_type = [], 0, None
    first_parameter = next(iter(module_ref.get_function(callee.name).arguments), None)
    if first_parameter is not None:
        attributes = b" ".join(first_parameter.attributes).decode()
        if "sret(" in attributes:
            sret_type = parse_type_text(attributes.split("sret(", 1)[1].rsplit(")", 1)[0].split(")")[0], named)
            kept.append(0)
            position = 1
    if position >= len(operands) or operands[position].value_kind.name != "function":
        raise ForeignCodeError(f"{where}: the first argument must be the function to differentiate, "
                               "known at compile time")
    target = operands[position].name
    function_type, llvm_function = _function_signature(module_ref, target)
    position += 1
    if entry == "tape size":
        return _decode_tape_size(target, function_type, operands, position, _marker, call, named, where), [], \
            {m for m in markers if m is not None}
    split = SplitMarkers() if entry in ("augmented", "split reverse") else None
    width, used = 1, set()
    if position < len(operands) and _marker(position) == "enzyme_width":
        width = _vector_width(argument_texts[position + 1] if position + 1 < len(operands) else "", mode, where)
        used.add("enzyme_width")
        position += 2
    parameters = list(function_type.params)
    byval_parameters = byval_parameter_types(llvm_function, named)
    # clang marks every scalar C argument noundef and no register of a split struct.
    marks_scalars = any(" noundef " in f" {a} " for a in argument_texts)
    undef_free = [b"noundef" in argument.attributes for argument in llvm_function.arguments]
    activities, passing = [], []
    index = 0
    while index < len(parameters):
        ty = parameters[index]
        if split is not None:
            position = split.take(position, operands, _marker, argument_texts, where)
        marker = _marker(position) if position < len(operands) else None
        if marker is not None:
            if marker not in MARKERS:
                raise ForeignCodeError(f"{where}: marker {marker} is not supported (enzpy knows "
                                       f"{', '.join(MARKERS)})")
            used.add(marker)
            position += 1
        here = f"{where}, parameter {index} of @{target}"
        value_text = argument_texts[position] if position < len(operands) else ""
        struct_type = byval_type(value_text, named)
        if struct_type is not None:
            form = passing_at(struct_type, parameters, byval_parameters, index, here)
            activity = MARKERS[marker] if marker else default_struct_activity(form, mode, here)
            count = 1 + width if activity in ("dup", "dupnoneed") else 1
            check_struct_activity(activity, form, mode, argument_texts[position + 1] if count == 2 and
                                  position + 1 < len(operands) else None, here)
            _check_values(where, target, index, activity, count, position, operands, _marker)
            kept.extend(range(position, position + count))
            activities.append(activity)
            passing.append(form)
            position += count
            index += len(form.parameter_types)
            continue
        if byval_parameters[index] is not None:
            raise ForeignCodeError(f"{here}: the function takes a {byval_parameters[index]} by value (byval), "
                                   f"and the call passes {value_text or 'nothing'}")
        if marks_scalars and not ty.is_pointer and position < len(operands) and split_part(value_text) \
                and not undef_free[index]:
            if width != 1:
                raise ForeignCodeError(f"{here}: enzyme_width with a struct passed by value in registers is not "
                                       "supported; pass it by address")
            group = split_struct_group(parameters, index, position, operands, argument_texts,
                                       MARKERS[marker] if marker else None, mode,
                                       _marker, here)
            for part, activity in group.items():
                activities.append(activity if parameters[index + part].is_float else "const")
                passing.append(None)
            kept.extend(interleaved(position, len(group), 2 if marker in ("enzyme_dup", "enzyme_dupnoneed")
                                     else 1))
            position += len(group) * (2 if marker in ("enzyme_dup", "enzyme_dupnoneed") else 1)
            index += len(group)
            continue
        activity = MARKERS[marker] if marker else _default_activity(ty, mode)
        _check_activity(activity, ty, mode, here)
        count = 1 + width if activity in ("dup", "dupnoneed") else 1
        _check_values(where, target, index, activity, count, position, operands, _marker)
        kept.extend(range(position, position + count))
        activities.append(activity)
        passing.append(None)
        position += count
        index += 1
    split_call = None
    if split is not None:
        used |= {m for m in markers if m in SPLIT_MARKERS}
        split_call, position = _split_arguments(entry, split, function_type, kept, position, operands, _marker,
                                                argument_texts, sret_type, where)
    if position != len(operands):
        raise ForeignCodeError(f"{where}: {len(operands) - position} argument(s) more than @{target} takes")
    argument_types = tuple(parse_type_text(str(operands[i].type), named) for i in kept)
    pointers = [llvm_text.argument_value(argument_texts[i], "ptr") for i in kept[1 if sret_type is not None else 0:]
                if argument_texts[i].startswith("ptr ")]
    distinct = _distinct_objects(pointers, caller_definitions or {})
    request = Request(target, entry, tuple(activities), argument_types, parse_type_text(str(call.type), named),
                      sret_type, tuple(passing) if any(passing) else (), distinct, width,
                      split_call)
    return request, kept, used


_DEFINITION = re.compile(r"^\s*(%[-\w$.]+|%\"[^\"]*\") = (.*)$")
_HEAP_CALL = re.compile(r"call .*@(malloc|calloc|_Znwm|_Znam)\(")


def _definitions(body: list[str]) -> dict[str, str]:
    """`%4` -> `alloca [4 x double], align 16` for each value a function's text defines."""
    return {match.group(1): match.group(2) for line in body if (match := _DEFINITION.match(line)) is not None}


def _distinct_objects(values: list[str], definitions: dict[str, str]) -> bool:
    """Whether each pointer value (`%4`, `@x`) the call passes points into an object of its own: a
    stack array, a global or a heap block of the caller (read from its text: `definitions`), no two
    the same. C cannot say so otherwise; the function's pointer parameters are then `noalias`."""
    objects = []
    for value in values:
        found = None
        for _ in range(16):                           # through getelementptr chains
            if value.startswith("@"):
                found = value
                break
            definition = definitions.get(value, "")
            if definition.startswith("alloca ") or _HEAP_CALL.match(definition):
                found = value
                break
            if definition.startswith("getelementptr "):
                base = re.search(r"\bptr (%[-\w$.]+|@[-\w$.]+)", definition)
                if base is None:
                    break
                value = base.group(1)
                continue
            break
        if found is None:
            return False
        objects.append(found)
    return bool(objects) and len(set(objects)) == len(objects)


def _vector_width(argument: str, mode: str, where: str) -> int:
    """`enzyme_width, k`: a constant k >= 1, forward mode only (vector reverse mode is not built)."""
    value = argument.rsplit(None, 1)[-1] if argument else ""
    if not value.isdigit() or int(value) < 1:
        raise ForeignCodeError(f"{where}: enzyme_width needs a positive width known at compile time (got "
                               f"{value or 'nothing'})")
    if mode != "forward":
        raise ForeignCodeError(f"{where}: enzyme_width in reverse mode (vector reverse mode) is not supported; "
                               "use __enzyme_fwddiff with enzyme_width, or one reverse call per direction")
    return int(value)


def _split_arguments(entry, split, function_type, kept, position, operands, marker_at, argument_texts, sret_type,
                     where):
    """(SplitCall, position after it): the tape and the result's differential a split-mode call passes
    after the function's arguments; their indices are added to `kept`."""
    position = split.take(position, operands, marker_at, argument_texts, where)
    if sret_type is not None:
        raise ForeignCodeError(f"{where}: a split-mode call returning a struct through memory is not supported")
    seed = None
    if entry == "split reverse" and function_type.return_type.is_float:
        if position >= len(operands) or (position + 1 == len(operands) and split.tape_operand is None):
            raise ForeignCodeError(f"{where}: the reverse call of a function returning "
                                   f"{function_type.return_type} passes the result's differential before the tape")
        seed = len(kept)
        kept.append(position)
        position += 1
        position = split.take(position, operands, marker_at, argument_texts, where)
    if split.tape_operand is None and entry == "split reverse":
        if position >= len(operands):
            raise ForeignCodeError(f"{where}: the reverse call passes no tape (the augmented call's result, or "
                                   "enzyme_tape and the tape memory)")
        split.tape_operand = position
        position += 1
    tape = None
    if split.tape_operand is not None:
        tape = len(kept)
        kept.append(split.tape_operand)
    split_call = SplitCall(entry, tape, split.allocated, seed)
    check_allocated(split_call, where)
    return split_call, position


def _decode_tape_size(target, function_type, operands, position, marker_at, call, named, where) -> Request:
    """`__enzyme_augmentsize(f, markers...)`: enzpy's tape has one size whatever the activities."""
    if position != len(operands) and any(marker_at(i) is None for i in range(position, len(operands))):
        raise ForeignCodeError(f"{where}: __enzyme_augmentsize takes the function and markers only")
    return Request(target, "tape size", (), (), parse_type_text(str(call.type), named), split=SplitCall("tape size"))


def _check_values(where, target, index, activity, count, position, operands, marker_at) -> None:
    if position + count > len(operands):
        raise ForeignCodeError(f"{where}: too few arguments for @{target} (parameter {index}, {activity}, "
                               f"needs {count} value(s))")
    for offset in range(count):
        if marker_at(position + offset) is not None:
            raise ForeignCodeError(f"{where}: parameter {index} of @{target} ({activity}) got a marker "
                                   "where a value belongs")


# ---------------------------------------------------------------- generating one derivative

def generate(user_text: str, request: Request, name: str, exported: bool, optimize: bool = True,
             index: ModuleText | None = None, progress: Progress = SILENT) -> str:
    """LLVM text (old-LLVM spelling) defining `@name`, the interface to the requested derivative.

    Only what the differentiated function reaches goes through the pre-AD
    pipeline (`index.slice`): the rest of the program is neither inlined nor
    optimized, and the output keeps it as the user wrote it.
    """
    return generate_group(user_text, [request], [name], exported, optimize, index, progress)


def generate_group(user_text: str, requests: list[Request], names: list[str], exported: bool,
                   optimize: bool = True, index: ModuleText | None = None, progress: Progress = SILENT) -> str:
    """`generate` for requests of one derivative (`Request.derivative_key`: split mode's augmented and
    reverse calls of one function and activities), each interface named by `names`."""
    request = requests[0]
    adapter_name = ADAPTER_PREFIX + request.function
    index = index if index is not None else ModuleText(user_text)
    refuse_unhonoured_features(index, request.function, request.base_mode)
    with progress.stage("slice", lambda: f"{len(index.reach([request.function]) & index.functions.keys())} of "
                                         f"{len(index.functions)} functions, {source.count(chr(10))} lines"):
        source = llvm_text.without_global_debug_attachments(llvm_text.without_inlining_barriers(
            index.slice([request.function])))
    with parsed(source) as module_ref:
        function_type, llvm_function = _function_signature(module_ref, request.function)
        restrict = frozenset(i for i, a in enumerate(llvm_function.arguments)
                             if b"noalias" in (attributes := list(a.attributes))
                             or (request.distinct_pointers and str(a.type) == "ptr"
                                 and not any(b"byval" in x for x in attributes)))
        source += adapter_text(adapter_name, request.function, function_type, request.passing, restrict)
    user_functions, user_globals = set(index.functions), set(index.globals)
    module = None
    try:
        with parsed(source) as module_ref:
            for function in module_ref.functions:
                if not function.is_declaration and function.name != adapter_name:
                    function.linkage = "internal"          # dead after inlining: the optimizer deletes it
            for variable in module_ref.global_variables:
                if variable.name and variable.linkage.name in ("internal", "private"):
                    # With main gone, a `static` the program sets would look constant to the optimizer.
                    variable.linkage = "external"
            with optimized_by("pre_ad", module_ref, progress.pass_timer("pre-AD")) as optimized_ref:
                optimized = llvm_text.without_call_return_attributes(llvm_text.without_lifetime_markers(
                    llvm_text.expand_shufflevectors(str(optimized_ref))))
        with progress.stage("read", lambda: f"{len(module.functions)} functions"), \
                parsed(optimized) as module_ref:
            module = read_module(module_ref)
        primal = module.functions[adapter_name]
        with progress.stage(f"{request.derivative_key.mode} mode"):
            for function in (primal, *convert_calls_that_stay(module, primal)):
                scalarize_vectors(module, function)
            if request.split is not None:
                interfaces = build_split_interfaces(module, primal, requests, names, function_type,
                                                    *_activity_lists(primal, request))
            else:
                derivative, spec = _differentiate(module, primal, request, function_type)
                interfaces = [build_interface(module, primal, derivative, spec, request, names[0], function_type)]
    except EnzpyError as error:
        # Messages name the adapter (the function enzpy differentiates); the user knows `f`.
        message = str(error).replace(ADAPTER_PREFIX, "").replace("Python source", "source")
        adapter = module.functions.get(adapter_name) if module is not None else None
        heap = sorted(_heap_calls(adapter)) if adapter is not None else []
        if heap:
            message += (f"; note: @{request.function} calls {', '.join(heap)}: of the heap functions enzpy "
                        "differentiates malloc, calloc, free and C++'s new and delete (rules/heap.py)")
        message += feature_notes(index, request.function)
        raise type(error)(f"{message} [differentiating @{request.function} in {request.derivative_key.mode} "
                          "mode]") from None
    _keep_only_reachable(module, interfaces, user_functions, user_globals)
    with parsed(write_module(module)) as parsed_ref, \
            optimized_by(POST_AD_PIPELINE if optimize else None, parsed_ref, progress.pass_timer("post-AD")) \
            as module_ref:
        name = names[0]
        for function in module_ref.functions:
            if not function.is_declaration and function.name not in names:
                function.name = f"{name}.{function.name}"
        for variable in module_ref.global_variables:
            if variable.linkage.name in ("internal", "private"):
                variable.name = f"{name}.{variable.name or 'constant'}"
        if not exported:
            for interface_name in names:
                module_ref.get_function(interface_name).linkage = "internal"
        return llvm_text.for_older_llvm(str(module_ref))


_HEAP_FUNCTIONS = frozenset({"realloc", "aligned_alloc", "posix_memalign", "reallocarray", "_ZnwmSt11align_val_t",
                             "_ZnamSt11align_val_t"})
"""Heap functions without a rule: named in a failure's message."""


def _heap_calls(function: core.Function) -> set[str]:
    return {i.callee.name for i in function.instructions()
            if isinstance(i, core.Call) and getattr(i.callee, "name", "") in _HEAP_FUNCTIONS}


def _element_float_type(function: core.Function, argument: core.Argument) -> Type | None:
    """The float type behind a pointer parameter; None when only integers are read and written there."""
    from ..analysis.memory_types import memory_float_type, pointer_root

    integers_only = False
    for instruction in function.instructions():
        if isinstance(instruction, (core.Load, core.Store)):
            accessed = instruction.type if isinstance(instruction, core.Load) else instruction.operands[0].type
            address = instruction.operands[0 if isinstance(instruction, core.Load) else 1]
            if pointer_root(address) is argument:
                if accessed.is_float or accessed.is_pointer or not accessed.is_integer:
                    integers_only = False
                    break
                integers_only = True
    found = memory_float_type(function, argument, {})
    if found is None and integers_only:
        return None
    return found or FloatType("double")


def _activity_lists(primal: core.Function, request: Request):
    """(duplicated parameter indices of the adapter, their memory types, active float parameters)."""
    parameter_types = primal.function_type.params[1:]
    duplicated, duplicated_types, active = [], [], []
    for index, (activity, ty) in enumerate(zip(request.activities, parameter_types)):
        argument = primal.arguments[index + 1]
        passing = request.passing[index] if request.passing else None
        if activity in ("dup", "dupnoneed") and passing is not None:
            try:
                fields = float_leaf_type(passing.struct_type)
            except TypeError as error:               # one shadow type per memory
                raise ForeignCodeError(f"parameter {index} of @{request.function}: enzyme_dup on a struct "
                                       f"passed by value: {error}") from None
            if fields is not None:                   # the struct's fields, where they lie
                duplicated.append(index + 1)
                duplicated_types.append(passing.struct_type)
        elif activity in ("dup", "dupnoneed") and ty.is_pointer:
            element = _element_float_type(primal, argument)
            if element is not None:          # integer arrays carry no derivative: the shadow is ignored
                duplicated.append(index + 1)
                duplicated_types.append(element)
        elif activity in ("dup", "dupnoneed", "out"):
            active.append(index + 1)
    return duplicated, duplicated_types, active


def _differentiate(module: core.Module, primal: core.Function, request: Request, function_type: FunctionType):
    """(the derivative of the adapter, its ReverseSpec or ForwardSpec)."""
    duplicated, duplicated_types, active = _activity_lists(primal, request)
    result = function_type.return_type
    return_type = result if result.is_float else None
    name = f"enzpy.{request.mode}.{request.function}"
    if request.mode == "reverse":
        from ..ad.reverse import ReverseSpec, build_reverse

        spec = ReverseSpec(tuple(duplicated), tuple(active), return_type, tuple(duplicated_types),
                           private_parameters=1)
        derivative = build_reverse(module, primal, spec, name)
    else:
        from ..ad.forward import ForwardSpec, build_forward

        spec = ForwardSpec(tuple(duplicated), tuple(active), return_type, tuple(duplicated_types),
                           width=request.width, private_parameters=1)
        derivative = build_forward(module, primal, spec, name)
    derivative.linkage = "internal"
    return derivative, spec


# ---------------------------------------------------------------- pruning

def _keep_only_reachable(module: core.Module, roots: list[core.Function], user_functions: set[str],
                         user_globals: set[str]) -> None:
    """Drop what `roots` do not use; the user's functions and globals become declarations.

    The result is appended to the user's module, where they are defined (a
    declaration there binds to `static` ones too), so the derivative calls
    and reads the program's own, global state included. Globals AD added
    become internal.
    """
    functions, variables, work = set(), set(), list(roots)

    def visit(value):
        if isinstance(value, core.Function) and value not in functions:
            functions.add(value)
            work.append(value)
        elif isinstance(value, core.GlobalVariable) and value not in variables:
            variables.add(value)
            if value.initializer is not None:
                visit(value.initializer)
        elif isinstance(value, core.ConstantExpression):
            for operand in value.operands:
                visit(operand)
        elif isinstance(value, core.ConstantAggregate):
            for element in value.elements:
                visit(element)

    functions.update(roots)
    while work:
        function = work.pop()
        for instruction in function.instructions():
            for operand in instruction.operands:
                visit(operand)
            if isinstance(instruction, core.Call):
                visit(instruction.callee)
    for function in functions:
        if function.name in user_functions and function not in roots:
            function.blocks = []
            function.linkage = ""
    for variable in variables:
        if variable.name not in user_globals:
            variable.linkage = "internal"
        else:
            variable.initializer = None
            variable.linkage = ""
    module.functions = {n: f for n, f in module.functions.items() if f in functions}
    module.globals = {n: g for n, g in module.globals.items() if g in variables}
