"""Copy a function body into another function, remapping values and blocks."""

from __future__ import annotations

import copy

from . import core


def clone_body(source: core.Function, target: core.Function,
               value_map: dict[core.Value, core.Value]) -> dict[core.Value, core.Value]:
    """Append copies of `source`'s blocks to `target`.

    `value_map` must map source arguments to target values; on return it also
    maps every source block and instruction to its copy.
    """
    for block in source.blocks:
        value_map[block] = target.append_block(block.name)
    copies = []
    for block in source.blocks:
        new_block = value_map[block]
        for instruction in block.instructions:
            duplicate = copy.copy(instruction)
            new_block.append(duplicate)
            value_map[instruction] = duplicate
            copies.append(duplicate)

    def remap(value):
        return value_map.get(value, value)

    for duplicate in copies:
        duplicate.operands = [remap(v) for v in duplicate.operands]
        if isinstance(duplicate, core.Phi):
            duplicate.incoming_blocks = [remap(b) for b in duplicate.incoming_blocks]
        elif isinstance(duplicate, core.Branch):
            duplicate.targets = [remap(b) for b in duplicate.targets]
        elif isinstance(duplicate, core.Switch):
            duplicate.default = remap(duplicate.default)
            duplicate.cases = [(value, remap(b)) for value, b in duplicate.cases]
        elif isinstance(duplicate, core.Call):
            duplicate.callee = remap(duplicate.callee)
            duplicate.argument_attributes = list(duplicate.argument_attributes)
    return value_map
