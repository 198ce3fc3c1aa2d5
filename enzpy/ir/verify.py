"""Structural checks on enzpy IR, run before writing and in tests.

LLVM's own verifier runs when the written text is parsed; these checks catch
the mistakes a Python pass makes (a dangling operand, a phi that lost an edge,
a block without terminator) earlier, with the function and block named.
"""

from __future__ import annotations

from ..errors import EnzpyError
from . import core


class VerificationError(EnzpyError):
    """The enzpy IR is malformed."""


def verify_module(module: core.Module) -> None:
    for function in module.functions.values():
        verify_function(function, module)


def verify_function(function: core.Function, module: core.Module | None = None) -> None:
    if function.is_declaration:
        return
    where = f"function @{function.name}"
    defined: set[core.Value] = set(function.arguments)
    blocks = set(function.blocks)
    predecessors: dict[core.Block, list[core.Block]] = {b: [] for b in function.blocks}
    for block in function.blocks:
        if block.parent is not function:
            raise VerificationError(f"{where}: block {block.name!r} has the wrong parent")
        if block.terminator is None:
            raise VerificationError(f"{where}: block {block.name!r} does not end in a terminator")
        for successor in block.successors():
            if successor not in blocks:
                raise VerificationError(f"{where}: block {block.name!r} branches outside the function")
            predecessors[successor].append(block)
        seen_non_phi = False
        for index, instruction in enumerate(block.instructions):
            if instruction.parent is not block:
                raise VerificationError(f"{where}: {instruction.opcode} in {block.name!r} has the wrong parent")
            if instruction.is_terminator and index != len(block.instructions) - 1:
                raise VerificationError(f"{where}: terminator in the middle of block {block.name!r}")
            if isinstance(instruction, core.Phi):
                if seen_non_phi:
                    raise VerificationError(f"{where}: phi after other instructions in {block.name!r}")
            else:
                seen_non_phi = True
            defined.add(instruction)
    for block in function.blocks:
        for instruction in block.instructions:
            for operand in instruction.operands:
                _check_operand(operand, defined, module, f"{where}, block {block.name!r}, {instruction.opcode}")
            if isinstance(instruction, core.Phi):
                if len(instruction.incoming_blocks) != len(instruction.operands):
                    raise VerificationError(f"{where}: phi in {block.name!r} has mismatched incoming lists")
                if sorted(map(id, instruction.incoming_blocks)) != sorted(map(id, predecessors[block])):
                    raise VerificationError(f"{where}: phi in {block.name!r} does not match the predecessors")
            if isinstance(instruction, core.Call):
                _check_operand(instruction.callee, defined, module, f"{where}: callee")


def _check_operand(operand, defined, module, where: str) -> None:
    if isinstance(operand, (core.GlobalVariable, core.Function)):
        table = module.globals if isinstance(operand, core.GlobalVariable) else module.functions
        if module is not None and table.get(operand.name) is not operand:
            raise VerificationError(f"{where}: @{operand.name} is not in the module")
    elif isinstance(operand, core.Constant):
        return
    elif operand not in defined:
        raise VerificationError(f"{where}: operand {operand.name or type(operand).__name__} is not defined "
                                "in this function")
