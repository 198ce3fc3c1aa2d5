"""Integers that are never negative, and the sign tests they make foldable.

numba indexes arrays with signed integers and guards every index with a
wrap-around select, `i < 0 ? i + n : i`. Its index arithmetic carries no
`nsw`, so LLVM often cannot prove `j` in `range(i + 1, n)` non-negative:
the select stays, the address is no affine function of the loop counter,
and neither the primal nor its derivative vectorizes. Knowing that array
extents lie in [0, 2**63) (`frontend.numba.mark_array_extents`), the
structure of a counted loop proves it: `fold_sign_tests` runs on the
pre-AD IR and replaces those tests by constants.

The analysis is optimistic: every integer starts out non-negative and is
dropped when no rule below keeps it, until nothing changes.

- a constant >= 0; a parameter whose `range` starts at 0;
- `add nsw` / `mul nsw` / `or` / `sext` / `select` / `phi` of non-negatives;
- `and` with one non-negative operand; `zext`; `lshr` by a non-zero constant;
- `llvm.smax` with one non-negative operand, `llvm.smin` / `llvm.umin` as `and`/`add`;
- a loop counter `j = phi [start, entry], [j + 1, latch]` whose loop exits
  when `j + 1 == bound` (non-negative, loop-invariant) and is entered only
  when `start < bound`: then `start <= j < bound`.
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import constant_int
from ..ir.types import I1
from .loops import LoopInfo, predecessor_map

_SIGN_TESTS = {("slt", 0): False, ("sge", 0): True, ("sgt", -1): True, ("sle", -1): False}
"""(predicate, constant right operand) -> the test's value for a non-negative left operand."""


def fold_sign_tests(function: core.Function) -> int:
    """Replace sign tests of non-negative integers by constants, and selects on them; the count."""
    if not function.blocks:
        return 0
    nonnegative = nonnegative_values(function)
    folded = 0
    for instruction in list(function.instructions()):
        if isinstance(instruction, core.Compare) and instruction.opcode == "icmp":
            left, right = instruction.operands
            key = (instruction.predicate, right.value if isinstance(right, core.ConstantInt) else None)
            if key in _SIGN_TESTS and left in nonnegative:
                core.replace_all_uses(function, instruction, constant_int(I1, int(_SIGN_TESTS[key])))
                instruction.parent.instructions.remove(instruction)
                folded += 1
    for instruction in list(function.instructions()):
        if isinstance(instruction, core.Select) and isinstance(instruction.operands[0], core.ConstantInt):
            chosen = instruction.operands[1] if instruction.operands[0].value else instruction.operands[2]
            core.replace_all_uses(function, instruction, chosen)
            instruction.parent.instructions.remove(instruction)
    return folded


def nonnegative_values(function: core.Function) -> set[core.Value]:
    """The integer arguments and instructions of `function` that are never negative."""
    predecessors = predecessor_map(function.blocks)
    loops = LoopInfo(function.blocks, function.blocks[0], function.name)
    counters = {}
    for loop in loops.loops:
        for phi in loop.header.phis():
            facts = _counter_facts(loop, phi, predecessors)
            if facts is not None:
                counters[phi] = facts
    candidates = [a for a in function.arguments if a.type.is_integer and _range_starts_at_zero(a)]
    candidates += [i for i in function.instructions() if i.type.is_integer and i.type != I1]
    nonnegative = set(candidates)
    users = core.uses_of(function)
    for counter, (start, bound) in counters.items():
        for fact in (start, bound):          # a counter depends on its start and bound too
            users.setdefault(fact, []).append(counter)
    pending = list(candidates)
    while pending:
        value = pending.pop()
        if value in nonnegative and not _kept(value, nonnegative, counters):
            nonnegative.discard(value)
            pending.extend(users.get(value, ()))
    return nonnegative


def _known(value: core.Value, nonnegative: set[core.Value]) -> bool:
    if isinstance(value, core.ConstantInt):
        return value.value >= 0
    return value in nonnegative


def _kept(value: core.Value, nonnegative: set[core.Value], counters) -> bool:
    """Whether a rule shows `value` non-negative, given that `nonnegative` are."""
    if isinstance(value, core.Argument):
        return True                                   # only range-[0, ...) arguments are candidates
    known = [_known(op, nonnegative) for op in value.operands]
    if isinstance(value, core.BinaryOperator):
        flags = value.flags
        if value.opcode in ("add", "mul"):
            return "nsw" in flags and all(known)
        if value.opcode == "or":
            return all(known)
        if value.opcode == "and":
            return any(known)
        if value.opcode == "lshr":
            shift = value.operands[1]
            return isinstance(shift, core.ConstantInt) and shift.value > 0
        return False
    if isinstance(value, core.Cast):
        return value.opcode == "zext" or (value.opcode == "sext" and known[0])
    if isinstance(value, core.Select):
        return all(known[1:])
    if isinstance(value, core.Phi):
        if value in counters:
            start, bound = counters[value]
            if _known(start, nonnegative) and _known(bound, nonnegative):
                return True
        return all(known)
    if isinstance(value, core.Call):
        name = getattr(value.callee, "name", "")
        if name.startswith("llvm.smax.") or name.startswith("llvm.umin."):
            return any(known)
        if name.startswith("llvm.smin."):
            return all(known)
    return False


def _range_starts_at_zero(argument: core.Argument) -> bool:
    return any(a.startswith("range(") and a.split(",")[0].split()[-1] == "0" for a in argument.attributes)


def _counter_facts(loop, phi: core.Phi, predecessors) -> tuple[core.Value, core.Value] | None:
    """(start, bound) when `phi` counts start, start + 1, ... and the loop leaves at bound (see above)."""
    if len(loop.entries) != 1 or len(loop.latches) != 1 or len(phi.operands) != 2:
        return None
    entry, latch = loop.entries[0], loop.latches[0]
    incoming = dict(zip(phi.incoming_blocks, phi.operands))
    start, step = incoming.get(entry), incoming.get(latch)
    if not (isinstance(step, core.BinaryOperator) and step.opcode == "add" and step.operands[0] is phi
            and isinstance(step.operands[1], core.ConstantInt) and step.operands[1].value == 1):
        return None
    branch = latch.terminator
    if not (isinstance(branch, core.Branch) and len(branch.targets) == 2
            and isinstance(branch.operands[0], core.Compare)):
        return None
    test = branch.operands[0]
    if test.opcode != "icmp" or test.operands[0] is not step:
        return None
    bound = test.operands[1]
    # The loop goes on while step != bound: `eq` leaves on true, `ne` stays on true.
    stays = branch.targets[1] if test.predicate == "eq" else branch.targets[0] if test.predicate == "ne" else None
    if stays is not loop.header or _inside(bound, loop):
        return None
    if not _entered_only_below(loop, entry, start, bound, predecessors):
        return None
    return start, bound


def _inside(value: core.Value, loop) -> bool:
    return isinstance(value, core.Instruction) and value.parent in loop.blocks


def _entered_only_below(loop, entry: core.Block, start, bound, predecessors) -> bool:
    """Whether the path into the loop passes a branch taken only when start < bound."""
    block, came_from = entry, loop.header
    for _ in range(8):                       # a few straight-line blocks up from the preheader
        terminator = block.terminator
        if isinstance(terminator, core.Branch) and len(terminator.targets) == 2:
            if terminator.targets[0] is terminator.targets[1] or not isinstance(terminator.operands[0],
                                                                                core.Compare):
                return False
            return _says_below(terminator.operands[0], start, bound, taken=terminator.targets[0] is came_from)
        sources = predecessors.get(block, [])
        if len(sources) != 1:
            return False
        block, came_from = sources[0], block
    return False


_BELOW = {"slt": True, "ult": True, "sgt": False, "ugt": False}
"""Predicates of `a ? b` meaning a < b (True) or a > b (False) when both are non-negative."""
_NOT_BELOW = {"sge": "slt", "uge": "ult", "sle": "sgt", "ule": "ugt"}


def _says_below(test: core.Compare, start, bound, taken: bool) -> bool:
    """Whether `test` being `taken` (True or False) means start < bound."""
    if test.opcode != "icmp":
        return False
    predicate = test.predicate
    if not taken:
        predicate = _NOT_BELOW.get(predicate)
        if predicate is None:
            return False
    elif predicate not in _BELOW:
        return False
    left, right = test.operands
    if _BELOW[predicate]:
        return left is start and right is bound
    return left is bound and right is start
