"""Enzyme's split reverse mode: `__enzyme_augmentfwd`, `__enzyme_reverse`, `__enzyme_augmentsize`.

    void *tape = __enzyme_augmentfwd((void *)f, enzyme_dup, x, dx, ...);   // runs f, keeps what the
    ...                                                                      // reverse sweep needs
    __enzyme_reverse((void *)f, enzyme_dup, x, dx, ..., [d_result,] tape);  // adds into dx, frees tape

or with tape memory the program owns:

    int size = __enzyme_augmentsize((void *)f, enzyme_dup, ...);
    __enzyme_augmentfwd((void *)f, enzyme_allocated, size, enzyme_tape, buffer, enzyme_dup, x, dx, ...);
    __enzyme_reverse((void *)f, enzyme_allocated, size, enzyme_tape, buffer, enzyme_dup, x, dx, ...);

The two halves are the augmented forward function A and the reverse function
R that `ad/calls.py` makes for a call that stays a call (one combined
gradient split where its forward sweep hands over to its reverse sweep), of
the adapter `clang.py` differentiates. Both halves of one (function,
activities) pair are generated in one module piece, from one A/R pair, so
the frame A leaves is the one R reads.

The tape is a block of TAPE_BYTES: A's frame, the tape and allocation log A
and R push and pop (empty headers: A's first push allocates), the shadow of
the result slot (the reverse call stores the result's differential there
before R reads it) and the result slot itself. Without `enzyme_allocated` the
augmented call mallocs the block and returns it, and the reverse call frees
it; with it the program's memory holds the block (its size must be at least
TAPE_BYTES: `__enzyme_augmentsize` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.type_analysis import parameter_seeds
from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.types import I8, I64, PTR, VOID, Type
from .enzyme_features import ForeignCodeError

SPLIT_MARKERS = ("enzyme_allocated", "enzyme_tape")
UNKNOWN_SIZE = -1
TAPE_BYTES = 96
FRAME, TAPE, LOG, RESULT_SHADOW, RESULT = 0, 8, 32, 56, 72
"""Byte offsets in the tape block (the tapes' headers are 24 bytes; the result slots 16)."""


def entry_mode(callee_name: str) -> str:
    """What an entry point asks for: reverse, forward, augmented, split reverse or tape size."""
    for word, mode in (("augmentsize", "tape size"), ("augmentfwd", "augmented"), ("fwddiff", "forward")):
        if f"__enzyme_{word}" in callee_name:
            return mode
    return "split reverse" if "__enzyme_reverse" in callee_name else "reverse"


@dataclass(frozen=True)
class SplitCall:
    """Where a split-mode call passes what is not a parameter of the function."""

    kind: str
    """`augmented`, `split reverse` or `tape size`."""
    tape: int | None = None
    """Index of the interface argument that is the tape (None: the augmented call returns it)."""
    allocated: int | None = None
    """`enzyme_allocated`'s size (UNKNOWN_SIZE when computed): the program owns the tape's memory
    (None: enzpy mallocs it)."""
    seed: int | None = None
    """Index of the interface argument that is the differential of a float result (split reverse)."""


@dataclass
class SplitMarkers:
    """`enzyme_allocated size` / `enzyme_tape tape` pairs read from one call."""

    allocated: int | None = None
    tape_operand: int | None = None

    def take(self, position: int, operands, marker_at, argument_texts, where: str) -> int:
        """Read the pairs starting at `position`; return the position after them."""
        while position < len(operands) and marker_at(position) in SPLIT_MARKERS:
            marker = marker_at(position)
            if position + 1 >= len(operands):
                raise ForeignCodeError(f"{where}: {marker} is the last argument; it needs a value after it")
            if marker == "enzyme_allocated":
                # A size known at compile time is checked; one computed (__enzyme_augmentsize's result,
                # TAPE_BYTES at run time) is taken on trust.
                value = argument_texts[position + 1].rsplit(None, 1)[-1]
                self.allocated = int(value) if value.lstrip("-").isdigit() else UNKNOWN_SIZE
            else:
                self.tape_operand = position + 1
            position += 2
        return position


def check_allocated(split: SplitCall, where: str) -> None:
    if split.allocated is not None and split.allocated != UNKNOWN_SIZE and split.allocated < TAPE_BYTES:
        raise ForeignCodeError(f"{where}: enzyme_allocated gives {split.allocated} bytes of tape; enzpy's tape "
                               f"takes {TAPE_BYTES} (__enzyme_augmentsize says so)")
    if split.kind == "augmented" and split.tape is not None and split.allocated is None:
        raise ForeignCodeError(f"{where}: enzyme_tape without enzyme_allocated: give the tape memory's size too")
    if split.allocated is not None and split.tape is None:
        raise ForeignCodeError(f"{where}: enzyme_allocated without enzyme_tape: pass the tape memory too")


def split_pair(module: core.Module, primal: core.Function, duplicated: list[int], duplicated_types: list[Type],
               active: list[int], result: Type):
    """(A, R, duplicated, active) for the adapter `primal`: its result slot (parameter 0) is duplicated
    when the function returns a float, so that R adds the result's differential from its shadow."""
    from ..ad.calls import augmented_and_reverse

    types = dict(zip(duplicated, duplicated_types))
    if result.is_float:
        duplicated = [0, *duplicated]
    seeds = parameter_seeds(primal, types, result if result.is_float else None)
    trees = tuple((primal.arguments.index(argument), tree) for argument, tree in seeds.items())
    augmented, reverse = augmented_and_reverse(module, primal, tuple(duplicated), tuple(active), trees)
    return augmented, reverse, duplicated


def tape_block(builder: Builder, split: SplitCall, arguments: list[core.Value]) -> core.Value:
    if split.tape is not None:
        return arguments[split.tape]
    malloc = builder.declare("malloc", PTR, [I64])
    return builder.call(malloc, [constant_int(I64, TAPE_BYTES)], name="tape.block")


def field(builder: Builder, block: core.Value, offset: int) -> core.Value:
    return builder.gep(I8, block, [constant_int(I64, offset)])


def call_augmented(builder: Builder, augmented: core.Function, block: core.Value, primals, shadows: dict,
                   duplicated: list[int], result: Type) -> None:
    """Empty tapes in the block, then A with the block's result slots, frame slot and tapes."""
    for offset in (TAPE, LOG):
        for word in range(3):
            builder.store(constant_int(I64, 0), field(builder, block, offset + 8 * word))
    if result.is_float:
        builder.store(constant_float(result, 0.0), field(builder, block, RESULT_SHADOW))
        shadows = {0: [field(builder, block, RESULT_SHADOW)], **shadows}
    operands = [field(builder, block, RESULT), *primals, *(shadows[i][0] for i in duplicated),
                field(builder, block, FRAME), field(builder, block, TAPE), field(builder, block, LOG)]
    builder.call(augmented, operands)


def call_reverse(builder: Builder, reverse: core.Function, block: core.Value, outputs: list[core.Value],
                 seed: core.Value | None, result: Type, owned: bool) -> None:
    """The result's differential into its shadow, R with the frame, then the tapes' (and block's) memory freed."""
    if seed is not None:
        builder.store(seed, field(builder, block, RESULT_SHADOW))
    frame = builder.load(PTR, field(builder, block, FRAME), name="frame")
    builder.call(reverse, [frame, *outputs, field(builder, block, TAPE), field(builder, block, LOG)])
    free = builder.declare("free", VOID, [PTR])
    for offset in (TAPE, LOG):
        builder.call(free, [builder.load(PTR, field(builder, block, offset))])
    if not owned:
        builder.call(free, [block])


def returned_tape_and_result(builder: Builder, return_type: Type, block: core.Value, result: Type,
                             owned: bool, where: str):
    """What an augmented call returns, by the declared type: the tape (a pointer), the result (a
    float), both (a struct of a pointer and a float, in either order), or nothing."""
    from ..ir.types import StructType

    value = builder.load(result, field(builder, block, RESULT)) if result != VOID else None
    if return_type == VOID:
        if not owned:
            raise ForeignCodeError(f"{where} is declared void, so the tape enzpy allocates would be lost: "
                                   "declare it to return void *, or pass enzyme_allocated and enzyme_tape")
        builder.ret()
    elif return_type.is_pointer:
        builder.ret(block)
    elif return_type == result and owned:
        builder.ret(value)
    elif isinstance(return_type, StructType) and len(return_type.elements) == 2 and value is not None \
            and sorted(e.is_pointer for e in return_type.elements) == [False, True]:
        aggregate: core.Value = core.Undef(return_type)
        for index, element in enumerate(return_type.elements):
            part = block if element.is_pointer else value
            if not element.is_pointer and element != result:
                raise ForeignCodeError(f"{where} returns {return_type}; the function's result is {result}")
            aggregate = builder.insert(core.InsertValue(type=return_type, opcode="insertvalue", indices=(index,),
                                                        operands=[aggregate, part]))
        builder.ret(aggregate)
    else:
        raise ForeignCodeError(f"{where} returns {return_type}; enzpy returns the tape (void *), the result, "
                               "a struct of both, or nothing (with enzyme_allocated)")


def build_split_interfaces(module: core.Module, primal: core.Function, requests, names, function_type,
                           duplicated: list[int], duplicated_types: list[Type], active: list[int]) -> list:
    """The interface of each split-mode call in `requests` (one (function, activities) pair), from one
    A / R pair of the adapter `primal`."""
    from .interface import interface_operands, return_values, start_interface

    result = function_type.return_type
    augmented, reverse, all_duplicated = split_pair(module, primal, duplicated, duplicated_types, active, result)
    interfaces = []
    for request, name in zip(requests, names):
        where = f"__enzyme_{'augmentfwd' if request.mode == 'augmented' else 'reverse'} of @{request.function}"
        split = request.split
        interface, builder = start_interface(module, request, name)
        arguments = list(interface.arguments)
        owned = split.allocated is not None
        primals, shadows, actives, outputs = interface_operands(builder, iter(arguments), primal, request)
        if request.mode == "augmented":
            block = tape_block(builder, split, arguments)
            call_augmented(builder, augmented, block, primals, shadows, all_duplicated, result)
            returned_tape_and_result(builder, request.return_type, block, result, owned, where)
        else:
            block = arguments[split.tape]
            seed = arguments[split.seed] if split.seed is not None else None
            if seed is not None and seed.type != result:
                seed = builder.cast("fptrunc" if seed.type.width > result.width else "fpext", seed, result)
            call_reverse(builder, reverse, block, [actives[i][0] for i in active], seed, result, owned)
            return_values(builder, [builder.load(ty, slot) for slot, ty in outputs], request, None)
        interfaces.append(interface)
    return interfaces


def size_text(name: str, return_type: Type) -> str:
    """`__enzyme_augmentsize`'s replacement: a function returning TAPE_BYTES."""
    if not return_type.is_integer:
        raise ForeignCodeError(f"__enzyme_augmentsize returns {return_type}; declare it to return an integer")
    return f"\ndefine internal {return_type} @{name}() {{\n  ret {return_type} {TAPE_BYTES}\n}}\n"
