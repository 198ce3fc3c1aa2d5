"""Interprocedural AD: calls to defined functions that stay calls.

The pre-AD pipeline inlines every callee it can (`InlineCallees`: faster);
what stays a call is recursion (self and mutual: LLVM cannot inline a
function into itself), numba's `noinline` functions and, in a debug build,
every njit callee. A call to such a function that receives differentiable
memory (numba passes results through `retptr`, so every call with a float
result does) is differentiated across the call, as Enzyme does. The functions
generated are memoized per module, callee and activity signature (which
pointer operands carry a shadow, which float operands a derivative), so a
recursive callee's derivative calls itself:

- forward mode: the *tangent function* of the callee (`ad/forward.py` on the
  callee with that signature) takes the call's operands, then the shadows of
  its shadowed pointers and the tangents of its active floats, `width` each;
  it replaces the call. Cost: the callee's tangent, as for inlined code.
- reverse mode: an *augmented forward* function A and a *reverse* function R,
  from the callee's combined gradient (`ad/reverse.py` on a copy of the
  callee) split where its forward sweep hands over to its reverse sweep
  (`split_gradient`). A runs the primal with its shadows and returns the
  status and a *frame*: a heap block with the stack slots both sweeps use and
  the forward values the reverse code reads. R takes the frame and pointers
  to accumulate the adjoints of the active float operands into, runs the
  reverse sweep and frees the frame. The caller calls A in place of the call,
  keeps the frame like any forward value (a stack slot, or the tape in loops)
  and calls R where its reverse sweep reaches the call. Both push and pop on
  the caller's tape and record into its allocation log (they nest: the tape
  stays a stack), so a call costs one primal and one reverse sweep of the
  callee plus one frame allocation; a recursion of depth d keeps d frames.

The callee cannot see what its caller does after it returns: memory it reads
may be overwritten before R runs. A copy of the callee is differentiated in
which every pointer parameter is marked written (a memset of 0 bytes) before
each return, so R re-loads nothing through its parameters but caches it, and
`ReverseSpec.caller_continues` keeps it from re-loading its own allocations
(the caller may write into an array the callee returns). Type information
flows both ways: the caller's type trees of the operands seed the callee's
analysis, and each callee's own analysis seeds its callers' operands
(`operand_seeds`: an array the caller allocates and a callee writes floats
into gets a shadow). Memory labels (scoped noalias) of parameters are dropped
in the generated functions: a parameter may point at anything of the caller.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

from ..analysis.memory_types import pointer_root
from ..errors import DifferentiationError
from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.clone import clone_body
from ..parallel.launches import is_loop_function, keep_serial, record_owned_sites, serial_reason
from ..parallel.ownership import site_count
from ..ir.types import I1, I8, I32, I64, PTR, VOID, ArrayType, FunctionType, alignment_of, size_in_bytes
from ..rules.calls import allocation_rule, is_inactive_call, is_memory_transfer, is_memset, memory_call_rule
from ..rules.registry import scalar_rule
from .tape import Tape
from ..custom_rules import has_tangent_rule, reverse_functions as custom_reverse_functions, rule_for
from ..custom_rules import tangent_function as custom_tangent_function

FRAME_ALIGNMENT = 16
"""What malloc guarantees: stack slots needing more cannot move into a frame."""


def crossing_calls(blocks, activity) -> list[core.Call]:
    """The calls in `blocks` to differentiate across: to a defined function, with shadowed operands."""
    return [i for b in blocks for i in b.instructions
            if differentiable_callee(i) is not None and any(o in activity.shadowed for o in i.operands)]


def differentiable_callee(instruction: core.Instruction) -> core.Function | None:
    """The callee of a call that would be differentiated across (if it receives shadowed memory)."""
    if not isinstance(instruction, core.Call) or not isinstance(instruction.callee, core.Function):
        return None
    callee = instruction.callee
    # numba's convention (retptr, excinfo, an i32 status); other callees (C functions, whose result
    # is no status) stay refused by the rule check.
    if callee.is_declaration or _private_parameters(callee) != 2 or is_inactive_call(instruction) \
            or scalar_rule(instruction) is not None or allocation_rule(instruction) is not None \
            or memory_call_rule(instruction) is not None or is_memset(instruction) \
            or is_memory_transfer(instruction):
        return None
    return callee


def result_slots(blocks, types, pointer_slots) -> set[core.Value]:
    """Stack slots without floats of their own that the caller passes to a callee and reaches
    floats through (an array result: the callee stores its data pointer there). They get a
    shadow, so that the callee's derivative can store the shadow pointer next to the primal."""
    return {root for b in blocks for i in b.instructions if differentiable_callee(i) is not None
            for o in i.operands if (root := pointer_root(o)) in pointer_slots and types.points_at_floats(root)}


_CALLEE_TREES: "weakref.WeakKeyDictionary[core.Function, dict]" = weakref.WeakKeyDictionary()


def operand_seeds(blocks) -> dict:
    """Type trees for the pointer operands of calls that stay calls, from each callee's own
    type analysis: what the callee does with the memory (gemv writes floats into an array
    the caller only allocated) must be known to the caller, or that memory gets no shadow."""
    seeds: dict = {}
    for block in blocks:
        for call in block.instructions:
            callee = differentiable_callee(call)
            if callee is None:
                continue
            for position, tree in _parameter_trees(callee).items():
                operand = call.operands[position]
                if isinstance(operand, core.Instruction | core.Argument):
                    seeds.setdefault(operand, {}).update(tree)
    return seeds


def _parameter_trees(callee: core.Function) -> dict[int, dict]:
    from ..analysis.type_analysis import analyze_types

    if callee in _CALLEE_TREES:
        return _CALLEE_TREES[callee]
    _CALLEE_TREES[callee] = {}               # recursion: the callee's own call sees nothing yet
    analysis = analyze_types(callee, operand_seeds(callee.blocks))
    trees = {i: analysis.tree(a) for i, a in enumerate(callee.arguments)
             if a.type.is_pointer and any(path for path in analysis.tree(a))}
    _CALLEE_TREES[callee] = trees
    return trees


def check_stored_pointers(blocks, activity, types, error) -> None:
    """In a callee's derivative: a pointer to float memory that has no shadow must not be stored
    where the caller keeps pointers that have one (it would find a null shadow there)."""
    for block in blocks:
        for instruction in block.instructions:
            if isinstance(instruction, core.Store):
                value, pointer = instruction.operands
                if value.type.is_pointer and pointer in activity.shadowed and value not in activity.shadowed \
                        and not isinstance(value, core.Constant) and types.points_at_floats(value):
                    raise error(instruction, "a pointer to float memory without a shadow is stored where the "
                                "caller expects differentiable memory (its derivative is not tracked across "
                                "the call)")


class _BlockView:
    """A block without some of its instructions (what `check_supported` should not vet)."""

    def __init__(self, block: core.Block, hidden):
        self.name = block.name
        self.instructions = [i for i in block.instructions if i not in hidden]


def without(blocks, calls) -> list:
    """`blocks` as seen without `calls`: ad/calls.py vets those itself (for `check_supported`)."""
    hidden = set(calls)
    return [_BlockView(b, hidden) if any(i in hidden for i in b.instructions) else b for b in blocks]


@dataclass(frozen=True)
class _Signature:
    """What the callee's derivative is generated for."""

    callee: core.Function
    duplicated: tuple[int, ...]
    """Positions of operands (pointers) with a shadow."""
    active: tuple[int, ...]
    """Positions of float operands that carry a derivative."""
    trees: tuple
    """(position, type tree) of operands as the caller's type analysis sees them."""

    @property
    def suffix(self) -> str:
        return "d" + "_".join(map(str, self.duplicated)) + ".a" + "_".join(map(str, self.active))


def _signature(call: core.Call, activity, types) -> _Signature:
    duplicated = tuple(i for i, o in enumerate(call.operands) if o in activity.shadowed)
    active = tuple(i for i, o in enumerate(call.operands) if o.type.is_float and activity.is_active(o))
    trees = tuple((i, dict(types.tree(o))) for i, o in enumerate(call.operands)
                  if o.type.is_pointer and types.tree(o))
    return _Signature(call.callee, duplicated, active, trees)


def _private_parameters(callee: core.Function) -> int:
    """numba's retptr and excinfo: memory only the callee and its caller's slot reach."""
    names = [a.name for a in callee.arguments[:2]]
    numba = len(names) == 2 and names[0].startswith("retptr") and names[1].startswith("excinfo")
    return 2 if numba and callee.function_type.return_type == I32 else 0


_MEMO: "weakref.WeakKeyDictionary[core.Module, dict]" = weakref.WeakKeyDictionary()


def _memo(module: core.Module) -> dict:
    return _MEMO.setdefault(module, {})


def _redirect(call: core.Call, function: core.Function, operands: list[core.Value]) -> None:
    """Make `call` call `function` with `operands`; attributes of the old callee no longer hold."""
    call.callee, call.operands = function, list(operands)
    call.function_type = function.function_type
    call.argument_attributes = [() for _ in operands]
    call.attributes, call.tail = (), ""     # a tail call may not reach the caller's stack slots


def _located(error: DifferentiationError, call: core.Call | None) -> DifferentiationError:
    if call is None:
        return error
    caller = call.parent.parent.name if call.parent is not None and call.parent.parent is not None else "?"
    return DifferentiationError(f"{error}; differentiating across the call to @{call.callee.name} "
                                f"in @{caller}")


# ---------------------------------------------------------------- forward mode

@dataclass
class TangentCall:
    """A call replaced by a call of its callee's tangent function."""

    call: core.Call
    signature: _Signature
    function: core.Function

    def forward(self, shadow_of: list[dict], tangent_of: list[dict]) -> None:
        """Pass the operands' shadows and tangents, lane by lane (forward.py's parameter order)."""
        operands = list(self.call.operands)
        for index in self.signature.duplicated:
            operands += [lane[self.call.operands[index]] for lane in shadow_of]
        for index in self.signature.active:
            operands += [lane[self.call.operands[index]] for lane in tangent_of]
        _redirect(self.call, self.function, operands)


def tangent_calls(module: core.Module, blocks, activity, types, spec, error) -> dict[core.Call, TangentCall]:
    """Forward mode: the tangent function for each call that stays a call in `blocks` (generated on
    first need); `spec` is the ForwardSpec of the function `blocks` belong to."""
    if spec.parameter_trees:                   # itself a callee's tangent
        check_stored_pointers(blocks, activity, types, error)
    return {call: TangentCall(call, signature, _tangent_function(module, call, signature, spec.width))
            for call in crossing_calls(blocks, activity) for signature in [_signature(call, activity, types)]}


def _tangent_function(module: core.Module, call: core.Call, signature: _Signature, width: int) -> core.Function:
    from .forward import ForwardSpec, build_forward

    memo = _memo(module)
    key = ("forward", signature.callee.name, signature.duplicated, signature.active, width)
    if key in memo:
        return module.functions[memo[key]]
    name = f"enzpy.tangent{'' if width == 1 else width}.{signature.callee.name}.{signature.suffix}"
    memo[key] = name        # the function exists from the start of the build on: recursion calls it
    if width == 1 and has_tangent_rule(signature.callee.name):      # the user's rule (custom_rules.py)
        parameters = list(call.callee.function_type.params) + [PTR] * len(signature.duplicated) \
            + [call.operands[i].type for i in signature.active]
        function = module.add_function(core.Function(name, FunctionType(I32, tuple(parameters))))
        function.linkage = "internal"
        try:
            custom_tangent_function(module, call, signature.duplicated, signature.active, function)
        except DifferentiationError as error:
            raise _located(error, call) from None
        return function
    spec = ForwardSpec(duplicated=signature.duplicated, active=signature.active, return_type=None, width=width,
                       private_parameters=_private_parameters(signature.callee),
                       parameter_trees=signature.trees)
    try:
        function = build_forward(module, signature.callee, spec, name)
    except DifferentiationError as error:
        raise _located(error, call) from None
    function.linkage = "internal"
    _drop_parameter_labels([function], name)
    return function


# ---------------------------------------------------------------- reverse mode

@dataclass
class ReverseCall:
    """A call replaced by its callee's augmented forward function; its reverse function runs
    where the caller's reverse sweep reaches the call."""

    call: core.Call
    signature: _Signature
    augmented: core.Function
    reverse_function: core.Function
    frame: core.Value | None = None
    """The frame A returned (a forward value of the caller)."""

    def augment(self, builder: Builder, entry_block: core.Block, caller) -> None:
        """Forward sweep of `caller` (the caller's reverse-mode builder), `builder` right after the
        call: call A with the caller's tape and allocation log, keep the frame."""
        call = self.call
        slot = Builder(builder.module).before_instruction(entry_block.terminator).alloca(PTR, "frame.slot")
        shadows = [caller.shadow_of[call.operands[i]] for i in self.signature.duplicated]
        log = caller.allocation_log.tape.pointer
        _redirect(call, self.augmented, call.operands + shadows + [slot, caller.tape.pointer, log])
        self.frame = builder.load(PTR, slot, "frame")
        # Freed if the caller raises before its reverse sweep; what A allocated is in the log already.
        caller.allocation_log.record(builder, self.frame, "free")

    def reverse(self, builder: Builder, caller) -> None:
        """Reverse sweep of `caller`: call R with the frame; its adjoints of the float operands go to theirs."""
        call, values = self.call, caller.values
        frame = values.value(builder, self.frame)
        entry = values.entry_block
        outputs = []
        for index in self.signature.active:
            slot = Builder(builder.module).before_instruction(entry.terminator).alloca(
                call.operands[index].type, "call.adjoint")
            builder.store(constant_float(call.operands[index].type, 0.0), slot)
            outputs.append(slot)
        builder.call(self.reverse_function, [frame, *outputs, caller.tape.pointer,
                                             caller.allocation_log.tape.pointer])
        for index, slot in zip(self.signature.active, outputs):
            caller._add_adjoint(builder, call.operands[index], builder.load(call.operands[index].type, slot))


def reverse_calls(module: core.Module, blocks, activity, types, caller_spec, error) -> dict[core.Call, ReverseCall]:
    """Reverse mode: the augmented and reverse functions for each call that stays a call in `blocks`
    (generated on first need); `caller_spec` is the ReverseSpec of the function `blocks` belong to."""
    if caller_spec.caller_continues:           # itself a callee's gradient
        check_stored_pointers(blocks, activity, types, error)
    found = {}
    for call in crossing_calls(blocks, activity):
        signature = _signature(call, activity, types)
        augmented, reverse = _reverse_functions(module, call, signature, caller_spec)
        found[call] = ReverseCall(call, signature, augmented, reverse)
    return found


def augmented_and_reverse(module: core.Module, callee: core.Function, duplicated: tuple[int, ...],
                          active: tuple[int, ...], parameter_trees=()) -> tuple[core.Function, core.Function]:
    """The augmented forward function A and the reverse function R of `callee` (see the module's
    docstring for their parameters), for a caller outside enzpy: C's split mode
    (`__enzyme_augmentfwd` / `__enzyme_reverse`, frontend/split_mode.py)."""
    from .reverse import ReverseSpec

    signature = _Signature(callee, tuple(duplicated), tuple(active), tuple(parameter_trees))
    return _reverse_functions(module, None, signature, ReverseSpec(duplicated=(), active=(), return_type=None))


def _reverse_functions(module: core.Module, call: core.Call | None, signature: _Signature, caller_spec):
    """A and R for `call` (None: a caller outside enzpy, which has no custom rule)."""
    from .reverse import ReverseSpec, build_reverse, reverse_report

    memo = _memo(module)
    # A prange loop's reverse function runs on several threads: it and what it calls add adjoints atomically.
    atomic = caller_spec.atomic_adjoints or is_loop_function(signature.callee)
    key = ("reverse", signature.callee.name, signature.duplicated, signature.active,
           caller_spec.minimize_cache, caller_spec.loose_types, atomic, caller_spec.thread_tapes)
    if key in memo:
        return memo[key]
    callee = signature.callee
    base = f"{callee.name}.{signature.suffix}"
    parameters = tuple(callee.function_type.params)
    lent = ["tape", "allocation.log"]          # the caller's
    names = [a.name for a in callee.arguments] + [f"shadow.{i}" for i in signature.duplicated] + ["frame.out", *lent]
    augmented = core.Function(f"enzpy.augmented.{base}", FunctionType(
        I32, parameters + (PTR,) * (len(signature.duplicated) + 3)), names)
    reverse = core.Function(f"enzpy.reverse.call.{base}", FunctionType(I32, (PTR,) * (3 + len(signature.active))),
                            ["frame"] + [f"adjoint.{i}" for i in signature.active] + lent)
    for function in (augmented, reverse):
        function.linkage = "internal"
        module.add_function(function)
    memo[key] = (augmented, reverse)       # recursion calls these while they are being built
    if call is not None and rule_for(callee.name) is not None:  # the user's rule (custom_rules.py)
        try:
            custom_reverse_functions(module, call, signature.duplicated, signature.active, augmented, reverse)
        except DifferentiationError as error:
            raise _located(error, call) from None
        return augmented, reverse
    primal = _primal_copy(module, callee, f"enzpy.primal.{base}")
    spec = ReverseSpec(duplicated=signature.duplicated, active=signature.active, return_type=None,
                       minimize_cache=caller_spec.minimize_cache, loose_types=caller_spec.loose_types,
                       private_parameters=_private_parameters(callee), parameter_trees=signature.trees,
                       caller_continues=True, atomic_adjoints=atomic, thread_tapes=caller_spec.thread_tapes)
    try:
        combined = build_reverse(module, primal, spec, f"enzpy.combined.{base}")
        serial = reverse_report(combined).non_atomic_adjoints or [
            i.callee.name for i in combined.instructions() if isinstance(i, core.Call)
            and serial_reason(module, getattr(i.callee, "name", "")) is not None]
        split_gradient(module, combined, augmented, reverse, len(parameters) + len(signature.duplicated),
                       [parameters[i] for i in signature.active])
    except DifferentiationError as error:
        raise _located(error, call) from None
    del module.functions[combined.name], module.functions[primal.name]
    _drop_parameter_labels([augmented, reverse], combined.name)
    if atomic and serial:
        keep_serial(module, reverse.name, serial[0])
    record_owned_sites(module, reverse.name, site_count(combined))
    return augmented, reverse



def _primal_copy(module: core.Module, callee: core.Function, name: str) -> core.Function:
    """A copy of `callee` that writes (0 bytes of) every pointer parameter before it returns.

    Nothing the reverse sweep re-loads may change before it runs; once the copy
    returns, its caller may write anything its parameters reach, and the
    overwrite analysis now knows it.
    """
    copy = core.Function(name, callee.function_type, [a.name for a in callee.arguments])
    copy.linkage = "internal"
    module.add_function(copy)
    clone_body(callee, copy, dict(zip(callee.arguments, copy.arguments)))
    memset = module.get_or_declare("llvm.memset.p0.i64", FunctionType(VOID, (PTR, I8, I64, I1)))
    for block in copy.blocks:
        if isinstance(block.terminator, core.Return):
            builder = Builder(module).before_instruction(block.terminator)
            for parameter in copy.arguments:
                if parameter.type.is_pointer:
                    builder.call(memset, [parameter, constant_int(I8, 0), constant_int(I64, 0),
                                          constant_int(I1, 0)])
    return copy


_PARAMETER_LABEL = re.compile(r"parameters|argument\d+")


def _drop_parameter_labels(functions, labelled_as: str) -> None:
    """A callee's parameters may point at any memory of its caller: no label may say otherwise."""
    prefix = labelled_as + "/"
    for function in functions:
        for instruction in function.instructions():
            label = getattr(instruction, "memory", None)
            if label is not None and label.startswith(prefix) and _PARAMETER_LABEL.fullmatch(label[len(prefix):]):
                instruction.memory = None


# ---------------------------------------------------------------- splitting a gradient

def split_gradient(module: core.Module, combined: core.Function, augmented: core.Function,
                   reverse: core.Function, kept: int, output_types=()) -> None:
    """Move the body of the combined gradient `combined` into `augmented` and `reverse`.

    `combined` takes (primal parameters, shadows, adjoint outputs); its forward
    sweep ends by branching to `reverse.start`. `augmented` gets the blocks
    before that (the first `kept` parameters, then a pointer to return the
    frame through), `reverse` the blocks from there on (the frame, then the
    adjoint outputs), and both the caller's tape and allocation log. The frame holds the stack slots
    both halves use, then the forward values the reverse blocks read.
    """
    entry = combined.blocks[0]
    start = [b for b in combined.blocks if b.name == "reverse.start"]
    if len(start) != 1:
        raise DifferentiationError(f"cannot split @{combined.name}: no single reverse.start")
    start = start[0]
    forward = {entry}
    pending = [entry]
    while pending:
        for successor in pending.pop().successors():
            if successor is not start and successor not in forward:
                forward.add(successor)
                pending.append(successor)
    forward_blocks = [b for b in combined.blocks if b in forward]
    reverse_blocks = [b for b in combined.blocks if b not in forward]
    uses = core.uses_of(combined)
    arguments = combined.arguments

    # Stack slots: kept in A, moved to R, or in the frame.
    in_frame, to_reverse, dropped = [], [], []
    for block in forward_blocks:
        for instruction in block.instructions:
            if isinstance(instruction, core.Alloca):
                kind, lifetimes = _slot_kind(instruction, uses, forward, entry)
                if kind != "local":
                    dropped += lifetimes          # lifetime markers need a real stack slot
                    (in_frame if kind == "frame" else to_reverse).append(instruction)
    crossing = {}
    for block in reverse_blocks:
        for instruction in block.instructions:
            for operand in instruction.operands:
                if (isinstance(operand, core.Instruction) and operand.parent in forward
                        and operand not in in_frame and operand not in to_reverse) \
                        or (isinstance(operand, core.Argument) and operand in arguments[:kept]):
                    crossing.setdefault(operand)

    # Frame layout.
    offset, offsets = 0, {}
    for slot in in_frame:
        if slot.parent not in (entry, *entry.successors()):
            raise DifferentiationError(f"a stack slot allocated inside a loop of @{combined.name} is needed by "
                                       "its reverse sweep (not supported across calls)")
        count = slot.operands[0]
        if not isinstance(count, core.ConstantInt):
            raise DifferentiationError(f"a variable-sized stack slot of @{combined.name} is needed by its "
                                       "reverse sweep (not supported across calls)")
        ty = slot.allocated_type if count.value == 1 else ArrayType(count.value, slot.allocated_type)
        align = max(alignment_of(slot.allocated_type), slot.align or 1)
        if align > FRAME_ALIGNMENT:
            raise DifferentiationError(f"a stack slot of @{combined.name} aligned to {align} bytes is needed by "
                                       "its reverse sweep (frames are aligned to 16)")
        offset = -(-offset // align) * align
        offsets[slot] = offset
        offset += size_in_bytes(ty)
    for value in crossing:
        align = alignment_of(value.type)
        offset = -(-offset // align) * align
        offsets[value] = offset
        offset += size_in_bytes(value.type)
    size = -(-offset // FRAME_ALIGNMENT) * FRAME_ALIGNMENT

    for call in dropped:
        call.parent.instructions.remove(call)
    _move_body(combined, augmented, forward_blocks,          # the primal parameters, the shadows; the lent
               {**dict(zip(arguments[:kept], augmented.arguments)), **dict(zip(arguments[-2:],
                                                                                 augmented.arguments[-2:]))})
    _move_body(combined, reverse, [], {})
    frame_out = augmented.arguments[kept]

    # A: allocate the frame first, slots become fields, the hand-over stores what R needs.
    status_slot = _status_slot(entry, combined)
    if status_slot not in in_frame:
        raise DifferentiationError(f"cannot split @{combined.name}: its status slot is not shared")
    builder = Builder(module).before_instruction(entry.instructions[0])
    malloc = module.get_or_declare("malloc", FunctionType(PTR, (I64,)))
    frame = builder.call(malloc, [constant_int(I64, size)], "frame")
    tape = Tape(module, augmented.arguments[-2])
    ignored = []                               # adjoint outputs of a reverse sweep that does not run
    for ty in output_types:
        ignored.append(builder.alloca(ty, "ignored"))
        builder.store(constant_float(ty, 0.0), ignored[-1])
    tape_size = tape.slots(builder)
    fields = {}
    for slot in in_frame:
        fields[slot] = Builder(module).before_instruction(slot).gep(
            I8, frame, [constant_int(I64, offsets[slot])], slot.name)
        slot.parent.instructions.remove(slot)
    _replace_in(forward_blocks, fields)
    handover = augmented.append_block("augmented.return")
    for block in forward_blocks:
        terminator = block.terminator
        if isinstance(terminator, core.Branch) and start in terminator.targets:
            terminator.targets = [handover if t is start else t for t in terminator.targets]
        elif isinstance(terminator, core.Switch) and start in terminator.successors():
            terminator.default = handover if terminator.default is start else terminator.default
            terminator.cases = [(v, handover if b is start else b) for v, b in terminator.cases]
    builder.at_end(handover)
    for value in crossing:
        builder.store(_in_forward(value, arguments, augmented), _field(builder, frame, offsets[value]))
    builder.store(frame, frame_out)
    status = builder.load(I32, fields[status_slot], "status")
    failed, done = augmented.append_block("augmented.failed"), augmented.append_block("augmented.done")
    builder.cond_br(builder.icmp("ne", status, constant_int(I32, 0)), failed, done)
    builder.at_end(done).ret(status)
    # The callee raised: R takes its release path (the status says so: what A recorded in the log
    # is released) and frees the frame; what A pushed onto the tape goes too.
    builder.at_end(failed)
    builder.call(reverse, [frame, *ignored, *augmented.arguments[-2:]])
    builder.store(tape_size, tape.size_field(builder))
    builder.store(core.ConstantNull(PTR), frame_out)
    builder.ret(status)

    # R: nothing for a null frame; else the frame's fields, then the reverse blocks.
    first = reverse.append_block("reverse.frame")
    body = reverse.append_block("reverse.frame.fields")
    reverse.blocks = [first, body] + [b for b in reverse.blocks if b not in (first, body)]
    nothing = reverse.append_block("reverse.frame.none")
    frame_in = reverse.arguments[0]
    builder = Builder(module).at_end(first)
    builder.cond_br(builder.icmp("eq", frame_in, core.ConstantNull(PTR)), nothing, body)
    builder.at_end(nothing).ret(constant_int(I32, 0))
    builder.at_end(body)
    for slot in to_reverse:
        slot.parent.instructions.remove(slot)
        builder.insert(slot)
        for store in [u for u in uses.get(slot, ()) if isinstance(u, core.Store) and u.parent in forward]:
            store.parent.instructions.remove(store)
            builder.insert(store)
    replacements = {}
    for slot in in_frame:
        replacements[slot] = _field(builder, frame_in, offsets[slot], slot.name)
    for value in crossing:
        replacements[value] = builder.load(value.type, _field(builder, frame_in, offsets[value]), value.name)
    replacements.update(zip(arguments[kept:], reverse.arguments[1:]))      # the outputs, the lent
    builder.br(start)
    _replace_in(reverse_blocks, replacements)
    free = module.get_or_declare("free", FunctionType(VOID, (PTR,)))
    for block in reverse_blocks:
        if isinstance(block.terminator, core.Return):
            Builder(module).before_instruction(block.terminator).call(free, [frame_in])


def _slot_kind(slot: core.Alloca, uses, forward: set, entry: core.Block):
    """("local" | "reverse" | "frame", lifetime markers): a slot only A uses stays on its stack;
    one A only initializes with constants in its entry moves to R; the others go in the frame."""
    in_reverse = forward_use = escapes = False
    lifetimes, pending, seen = [], [slot], set()
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        for user in uses.get(value, ()):
            if user.parent not in forward:
                in_reverse = True
            elif isinstance(user, core.Load) and user.operands[0] is value:
                forward_use = True
            elif isinstance(user, core.Store) and user.operands[1] is value and user.operands[0] is not value:
                if not (value is slot and user.parent is entry and isinstance(user.operands[0], core.Constant)):
                    forward_use = True
            elif isinstance(user, core.Call) and getattr(user.callee, "name", "").startswith("llvm.lifetime."):
                lifetimes.append(user)
            elif isinstance(user, core.GetElementPtr) or (isinstance(user, core.Cast) and user.type.is_pointer):
                forward_use = True
                pending.append(user)
            else:
                escapes = True                 # passed to a call, stored, merged: may be used later
    if escapes or (in_reverse and forward_use):
        return "frame", lifetimes
    return ("reverse" if in_reverse else "local"), lifetimes


def _move_body(source: core.Function, target: core.Function, blocks, arguments: dict) -> None:
    """Give `target` the `blocks` of `source` (all the others when `blocks` is empty)."""
    moved = blocks or list(source.blocks)
    source.blocks = [b for b in source.blocks if b not in moved]
    for block in moved:
        block.parent = target
        target.blocks.append(block)
    if arguments:
        _replace_in(moved, arguments)


def _replace_in(blocks, replacements: dict) -> None:
    for block in blocks:
        for instruction in block.instructions:
            instruction.operands = [replacements.get(o, o) for o in instruction.operands]


def _in_forward(value: core.Value, arguments, augmented: core.Function) -> core.Value:
    if isinstance(value, core.Argument):
        return augmented.arguments[arguments.index(value)]
    return value


def _field(builder: Builder, frame: core.Value, offset: int, name: str = "") -> core.Value:
    return builder.gep(I8, frame, [constant_int(I64, offset)], name)


def _status_slot(entry: core.Block, combined: core.Function) -> core.Alloca:
    found = [i for i in entry.instructions if isinstance(i, core.Alloca) and i.name == "status"
             and i.allocated_type == I32]
    if len(found) != 1:
        raise DifferentiationError(f"cannot split @{combined.name}: no status slot")
    return found[0]


