"""C functions that stay calls (recursion, `noinline`) in numba's calling convention.

`ad/calls.py` differentiates across a call to a defined function (forward
mode: its tangent function; reverse mode: augmented forward and reverse
functions with a frame between them) when the callee has numba's convention:
`i32 f(ptr retptr, ptr excinfo, params...)`, the result stored through
`retptr` and a status returned. That is the machinery the numba path uses
for recursion and `noinline` callees; for C, enzpy gives every defined
function the differentiated function still calls a twin in that convention,
and calls the twin instead:

    %r = call double @f(ptr %x, i32 %n)
 ->
    %status = call i32 @enzpy.c.f(ptr %result.slot, ptr %excinfo.slot, ptr %x, i32 %n)
    %r = load double, ptr %result.slot

A twin's body is its function's body with each `ret v` a store into
`retptr` and `ret i32 0`, and its own calls redirected the same way, so a
recursive function's twin calls itself. A C function cannot raise: the status
is always 0 and `excinfo` is never written.
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.clone import clone_body
from ..ir.types import I32, PTR, VOID, FunctionType

TWIN_PREFIX = "enzpy.c."


def convert_calls_that_stay(module: core.Module, root: core.Function) -> list[core.Function]:
    """Give each defined function `root` still reaches a twin in numba's convention; redirect calls.

    Returns the twins made (empty when `root` calls no defined function).
    """
    reached, work = [], [root]
    seen = {root}
    while work:
        function = work.pop()
        for instruction in function.instructions():
            callee = instruction.callee if isinstance(instruction, core.Call) else None
            if isinstance(callee, core.Function) and not callee.is_declaration and callee not in seen \
                    and not callee.name.startswith("llvm."):
                seen.add(callee)
                reached.append(callee)
                work.append(callee)
    twins = {function: _twin(module, function) for function in reached}
    for function in [root, *twins.values()]:
        _redirect_calls(module, function, twins)
    return list(twins.values())


def _twin(module: core.Module, function: core.Function) -> core.Function:
    parameters = function.function_type.params
    twin = core.Function(TWIN_PREFIX + function.name, FunctionType(I32, (PTR, PTR, *parameters)),
                         ["retptr", "excinfo", *(a.name or f"argument.{i}" for i, a in enumerate(function.arguments))])
    twin.linkage = "internal"
    module.add_function(twin)
    value_map: dict[core.Value, core.Value] = dict(zip(function.arguments, twin.arguments[2:]))
    clone_body(function, twin, value_map)
    retptr = twin.arguments[0]
    for block in twin.blocks:
        terminator = block.terminator
        if isinstance(terminator, core.Return):
            builder = Builder(module).before_instruction(terminator)
            if terminator.operands:
                builder.store(terminator.operands[0], retptr)
            block.instructions.remove(terminator)
            Builder(module).at_end(block).ret(constant_int(I32, 0))
    return twin


def _redirect_calls(module: core.Module, function: core.Function, twins: dict) -> None:
    slots = Builder(module).before_instruction(function.entry.instructions[0])
    excinfo = None
    for block in function.blocks:
        for call in list(block.instructions):
            if not isinstance(call, core.Call) or call.callee not in twins:
                continue
            if excinfo is None:
                excinfo = slots.alloca(PTR, "excinfo.slot")
            result_type = call.function_type.return_type
            result = slots.alloca(result_type, "result.slot") if result_type != VOID else excinfo
            builder = Builder(module).before_instruction(call)
            builder.call(twins[call.callee], [result, excinfo, *call.operands], name="status")
            if result_type != VOID:
                loaded = builder.load(result_type, result, name=call.name or "result")
                core.replace_all_uses(function, call, loaded)
            block.instructions.remove(call)
